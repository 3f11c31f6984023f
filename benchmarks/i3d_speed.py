"""I3D feature extraction speed: clips/s for batches of 16x224x224 clips; prints one JSON line.

    python benchmarks/i3d_speed.py [--batch 4] [--iters 3] [--device cpu] [--weights PATH]

Uses the Kinetics-400 weights when present (speed does not depend on them; "weights" in the output
says which were used). Peak memory: process max RSS on CPU, max allocated on CUDA.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from videoflex.eval.i3d import I3D
from videoflex.eval.i3d_weights import default_weights_path, load_i3d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224, help="input frame size (resized to 224 inside)")
    parser.add_argument("--iters", type=int, default=3, help="timed batches after one warm-up batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", default=None, help="checkpoint path (default: the cache path)")
    args = parser.parse_args()

    device = torch.device(args.device)
    path = args.weights or default_weights_path()
    try:
        model, weights = load_i3d(path, device=device), "kinetics-400"
    except FileNotFoundError:
        model, weights = I3D().eval().requires_grad_(False).to(device), "random-init"
    gen = torch.Generator().manual_seed(0)
    video = (torch.rand(args.batch, 3, args.frames, args.size, args.size, generator=gen) * 2 - 1).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        model(video)  # warm-up
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(args.iters):
            model(video)
        sync()
        elapsed = time.perf_counter() - start

    result = {
        "benchmark": "i3d_speed",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "weights": weights,
        "batch": args.batch,
        "clip": [args.frames, args.size, args.size],
        "iters": args.iters,
        "seconds_per_batch": round(elapsed / args.iters, 4),
        "clips_per_s": round(args.batch * args.iters / elapsed, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if device.type == "cuda":
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(result, allow_nan=False))


if __name__ == "__main__":
    main()
