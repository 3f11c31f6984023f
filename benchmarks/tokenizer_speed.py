"""Tokenizer speed on the CPU: encode and decode clips per second, and peak memory.

    python benchmarks/tokenizer_speed.py [--presets flex-tiny flex-ablation-d12] [--batch 2] [--steps 4]

Prints one JSON object. Each (preset, operation) runs in a fresh process so that its peak memory is
its own. Models have random weights (speed does not depend on them). Decoding runs ``--steps`` flow
steps with guidance (two decoder passes a step, batched as one); ``decode_s_per_step`` gives the cost
of one flow step, so a 30-step decode costs about 30x that plus the VAE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _measure import peak_rss_mib, run_isolated


def measure(preset: str, op: str, batch: int, steps: int, repeats: int) -> dict:
    import torch

    from videoflex import VideoFlexTok

    torch.manual_seed(0)
    model = VideoFlexTok.from_preset(preset).eval()
    h, w = model.image_size
    frames = model.clip_frames
    video = torch.rand(batch, 3, frames, h, w) * 2 - 1
    ids = model.tokenize(video)  # warm-up, and the input of decode
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        if op == "encode":
            model.tokenize(video)
        else:
            model.detokenize(ids, steps=steps, guidance=3.0, generator=torch.Generator().manual_seed(0))
        times.append(time.perf_counter() - start)
    best = min(times)
    result = {"preset": preset, "op": op, "batch": batch, "frames": frames, "size": [h, w],
              "clips_per_s": batch / best, "seconds_per_batch": best, "peak_rss_mib": peak_rss_mib(),
              "threads": torch.get_num_threads()}
    if op == "decode":
        result.update(steps=steps, guidance=3.0, decode_s_per_step=best / steps)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["flex-tiny", "flex-ablation-d12"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="flow steps when decoding")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "OP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.batch, args.steps, args.repeats)))
        return
    results = [run_isolated(__file__, p, op, "--batch", str(args.batch), "--steps", str(args.steps),
                            "--repeats", str(args.repeats))
               for p in args.presets for op in ("encode", "decode")]
    print(json.dumps({"benchmark": "tokenizer_speed", "device": "cpu", "results": results}, indent=2, allow_nan=False))


if __name__ == "__main__":
    main()
