"""Training speed on the CPU: clips per second and peak memory of full optimiser steps.

    python benchmarks/train_speed.py [--presets tiny demo] [--batch 8] [--steps 3]

Prints one JSON object. Each (preset, precision) runs in a fresh process; a step is the trainer's
own loss (nested dropout, guidance dropout, flow loss), backward, gradient clipping and AdamW on
random clips at the preset's size (the data cache is not part of the measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _measure import peak_rss_mib, run_isolated


def measure(preset: str, precision: str, batch: int, steps: int) -> dict:
    import torch

    from videoflex import VideoFlexTok

    torch.manual_seed(0)
    model = VideoFlexTok.from_preset(preset)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    h, w = model.config.image_size
    video = torch.rand(batch, 3, model.config.chunk_frames, h, w) * 2 - 1
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        with torch.no_grad():
            latents = model.encode_video(video)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model.training_loss(latents, generator=g)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    return {"preset": preset, "precision": precision, "batch": batch, "steps": steps,
            "clips_per_s": batch * steps / elapsed, "seconds_per_step": elapsed / steps,
            "peak_rss_mib": peak_rss_mib(), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "demo"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.batch, args.steps)))
        return
    results = [run_isolated(__file__, p, prec, "--batch", str(args.batch), "--steps", str(args.steps))
               for p in args.presets for prec in args.precisions]
    print(json.dumps({"benchmark": "train_speed", "device": "cpu", "results": results}, indent=2))


if __name__ == "__main__":
    main()
