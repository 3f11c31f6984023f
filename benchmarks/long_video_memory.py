"""Tokenizer memory against video length: peak RSS of ``tokenize`` with the shipped demo model.

    python benchmarks/long_video_memory.py [--frames 17 513 4097] [--chunk-batch N]

For each length, a fresh process loads ``checkpoints/demo`` through ``videoflex.load_model``, builds a
float32 ``[1, 3, T, 64, 64]`` video (a moving gradient with noise, filled in place so that building it
never holds a second copy), then tokenizes it on the CPU. It prints one JSON object with, per length,
the process's peak resident memory (``peak_rss_mib``), the input video's size (``input_mib``), and
``peak_rss_beyond_input_mib = peak_rss_mib - input_mib``: what tokenizing needs besides holding its
input (the interpreter, torch, the model and the working set). The input itself is the caller's and
grows with T (201 MiB at 4,097 frames of 64x64); the acceptance (issue 18, item 7) is that the memory
beyond it stays within 15% from 17 to 4,097 frames (``within_15_percent``). Before chunks were encoded in
micro-batches (``chunk_batch``), every chunk went through the VAE and encoder at once: 2.1 GB at 4,097
frames against 428 MB at 17.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _measure import peak_rss_mib, run_isolated

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "checkpoints" / "demo"


def make_video(frames: int, size: int):
    """A float32 ``[1, 3, frames, size, size]`` clip in [-1, 1], written in place one block of frames at a time."""
    import torch

    video = torch.empty(1, 3, frames, size, size)
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-0.8, 0.8, size)
    for start in range(0, frames, 64):
        n = min(64, frames - start)
        shift = torch.arange(start, start + n).float()[:, None, None] * 0.01
        block = (ramp[None, None, :] + shift).remainder(1.6).sub(0.8).expand(n, size, size)
        for c in range(3):
            noise = torch.rand(n, size, size, generator=g).mul_(0.4).sub_(0.2)
            video[0, c, start:start + n] = (block + noise).clamp_(-1, 1)
    return video


def measure(frames: int, chunk_batch: int | None) -> dict:
    import torch

    import videoflex

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model = videoflex.load_model(DEMO).eval()
    size = model.image_size[0]
    video = make_video(frames, size)
    input_mib = video.numel() * video.element_size() / 2**20
    before = peak_rss_mib()
    start = time.perf_counter()
    ids = model.tokenize(video, chunk_batch=chunk_batch)
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    return {"frames": frames, "token_steps": ids.shape[1], "chunks": len(model.plan(frames).chunks),
            "seconds": round(seconds, 2), "input_mib": round(input_mib, 1),
            "peak_rss_before_tokenize_mib": round(before, 1), "peak_rss_mib": round(peak, 1),
            "peak_rss_beyond_input_mib": round(peak - input_mib, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", nargs="+", type=int, default=[17, 513, 4097])
    parser.add_argument("--chunk-batch", type=int, default=None,
                        help="chunks encoded at once (default: the tokenizer's default)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.chunk_batch)))
        return
    extra = [] if args.chunk_batch is None else ["--chunk-batch", str(args.chunk_batch)]
    results = [run_isolated(__file__, str(frames), *extra) for frames in args.frames]
    beyond = [r["peak_rss_beyond_input_mib"] for r in results]
    from videoflex.tokenizers.base import DEFAULT_CHUNK_BATCH

    print(json.dumps({"benchmark": "long_video_memory", "model": "checkpoints/demo", "device": "cpu",
                      "chunk_batch": args.chunk_batch or DEFAULT_CHUNK_BATCH, "results": results,
                      "beyond_input_ratio": round(max(beyond) / min(beyond), 3),
                      "within_15_percent": max(beyond) / min(beyond) < 1.15}, indent=2))


if __name__ == "__main__":
    main()
