"""Training speed on the CPU: clips per second and peak memory of full optimiser steps of the loop.

    python benchmarks/train_speed.py [--presets flex-tiny flex-demo] [--batch 8] [--steps 3]

Prints one JSON object. Each (preset, precision) runs in a fresh process; a step is the training loop's
own step (``videoflex.train.loop.train_step`` with the tokenizer task: VAE encoding, nested dropout,
guidance dropout, flow loss, backward, gradient clipping, AdamW and the EMA) on random clips at the
preset's size (reading data is not part of the measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _measure import peak_rss_mib, run_isolated


def measure(preset: str, precision: str, batch: int, steps: int) -> dict:
    import torch

    from videoflex.registry import PRESETS
    from videoflex.train.loop import setup, train_step
    from videoflex.train.tasks.tokenizer import TokenizerTask
    from videoflex.train.tasks.tokenizer_config import load_train_config

    config = PRESETS[preset].config()
    h, w = config.image_size
    with tempfile.TemporaryDirectory() as out:
        recipe = load_train_config(None, [f"model={preset}", f"precision={precision}", f"batch_size={batch}",
                                          f"out_dir={out}", f"data.size={h}", f"data.frames={config.chunk_frames}",
                                          "device=cpu"])
        run = setup(TokenizerTask(recipe))
    clips = torch.randint(0, 256, (batch, 3, config.chunk_frames, h, w), dtype=torch.uint8)
    train_step(run, [clips], 0)  # warm-up
    start = time.perf_counter()
    for step in range(1, steps + 1):
        train_step(run, [clips], step)
    elapsed = time.perf_counter() - start
    return {"preset": preset, "precision": precision, "batch": batch, "steps": steps,
            "clips_per_s": batch * steps / elapsed, "seconds_per_step": elapsed / steps,
            "peak_rss_mib": peak_rss_mib(), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["flex-tiny", "flex-demo"])
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
    print(json.dumps({"benchmark": "train_speed", "device": "cpu", "results": results}, indent=2, allow_nan=False))


if __name__ == "__main__":
    main()
