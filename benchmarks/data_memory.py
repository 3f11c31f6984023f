"""Trainer memory against dataset size: peak RSS of 50 training steps streamed from webdataset shards.

    python benchmarks/data_memory.py [--sizes 1000 10000] [--steps 50]

Writes webdataset shards of each size (one encoded flex-tiny clip's bytes written many times, so
writing is fast), then trains ``flex-tiny`` for ``--steps`` steps from each in a fresh process
(``data.in_memory: false``: indexed shards read through two ``DataLoader`` workers) and prints one JSON
object: the peak resident memory of the training process and of its largest worker for each size, and
the ratio largest/smallest of their sum. The acceptance (issue 15) is a difference under 10%.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _measure import run_isolated

PER_SHARD = 256


def write_repeated_shards(folder: Path, count: int) -> None:
    """``count`` copies of one encoded 17-frame 32x32 clip, ``PER_SHARD`` to a tar (the shard format of
    :mod:`videoflex.data.shards`)."""
    from videoflex.data.shapes import ShapesConfig, ShapesDataset
    from videoflex.io.video import encode_mp4

    sample = ShapesDataset(ShapesConfig(num_samples=1, num_frames=17, size=32))[0]
    video = encode_mp4(sample.video, sample.fps, crf=12)
    meta = json.dumps({"label": None, "caption": None, "source": "shapes", "fps": sample.fps, "num_frames": 17,
                       "height": 32, "width": 32}).encode()
    folder.mkdir(parents=True)
    for shard in range(-(-count // PER_SHARD)):
        with tarfile.open(folder / f"shard-{shard:06d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for n in range(shard * PER_SHARD, min(count, (shard + 1) * PER_SHARD)):
                for name, data in ((f"{n:09d}.mp4", video), (f"{n:09d}.json", meta)):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def measure(shards: str, count: int, steps: int) -> dict:
    import resource

    from videoflex.train.tasks.tokenizer import train_tokenizer
    from videoflex.train.tasks.tokenizer_config import load_train_config

    with tempfile.TemporaryDirectory() as out:
        config = load_train_config(None, [
            "model=flex-tiny", f"steps={steps}", "batch_size=8", f"save_every={steps}", f"log_every={steps}",
            f"out_dir={out}", "data.size=32", "data.in_memory=false", "num_workers=2", "device=cpu",
            f"data.train=[{{kind: shards, path: {shards}, count: {count}}}]"])
        start = time.perf_counter()
        train_tokenizer(config, progress=False)
        seconds = time.perf_counter() - start
    main_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"clips": count, "steps": steps, "seconds": seconds, "peak_rss_main_mib": main_mib,
            "peak_rss_worker_mib": worker_mib, "peak_rss_mib": main_mib + worker_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--one", nargs=2, metavar=("SHARDS", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.steps)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for count in args.sizes:
            folder = Path(tmp) / f"shards_{count}"
            write_repeated_shards(folder, count)
            size_mib = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
            results.append({**run_isolated(__file__, str(folder), str(count), "--steps", str(args.steps)),
                            "shards_mib": size_mib})
    peaks = [r["peak_rss_mib"] for r in results]
    print(json.dumps({"benchmark": "data_memory", "device": "cpu", "results": results,
                      "peak_rss_ratio": max(peaks) / min(peaks),
                      "within_10_percent": max(peaks) / min(peaks) < 1.10}, indent=2, allow_nan=False))


if __name__ == "__main__":
    main()
