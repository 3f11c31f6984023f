"""AR generator sampling speed on this machine (prints one JSON object).

Samples ``--tokens`` ids (every length in the list) from a random-weight preset (default ``ar-s``) for one
class, batch 1, temperature 1, once with the KV cache and once without it (the whole prefix recomputed for
every id), and reports tokens/s. With the cache it also times every id (the model call plus the draw) and
reports the mean time per id of the first and of the last 100 ids and their ratio: a preallocated cache
attends over its whole buffer at every position, so the time per id should stay flat as the sequence grows.

Lengths past one window (``max_steps * tokens_per_step``, 672 for ar-s) are sampled in one window of a
config with a larger ``max_steps`` (``--one-window``, default) or, with ``--slide``, by sliding the window
over whole steps (each new step re-prefills the previous ``max_steps - 1``).

    .venv/bin/python benchmarks/ar_sampling.py --preset ar-s --tokens 672 1024
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import platform
import time

import torch

import videoflex.generators.ar.sampling as sampling_module
from videoflex.generators.ar import ARGenerator, SamplingConfig, generate


def timed_generate(model: ARGenerator, steps: int, use_cache: bool, labels: torch.Tensor | None,
                   stamps: list[float] | None = None) -> float:
    """Seconds to sample ``steps`` steps; ``stamps`` receives the time after each id is drawn."""
    original = sampling_module.sample_ids

    def stamped(*args, **kwargs):
        out = original(*args, **kwargs)
        stamps.append(time.perf_counter())
        return out

    if stamps is not None:
        sampling_module.sample_ids = stamped
    try:
        start = time.perf_counter()
        generate(model, labels, steps, None, SamplingConfig(), torch.Generator().manual_seed(0), use_cache)
        if stamps is not None:
            stamps.insert(0, start)
        return time.perf_counter() - start
    finally:
        sampling_module.sample_ids = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="ar-s")
    parser.add_argument("--tokens", type=int, nargs="+", default=[672, 1024])
    parser.add_argument("--uncached-max", type=int, default=1024,
                        help="skip the uncached run of lengths above this (it costs O(L^2) model positions)")
    parser.add_argument("--slide", action="store_true", help="slide the window past max_steps instead")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = ARGenerator.preset_config(args.preset)
    k = config.tokens_per_step
    results = []
    for tokens in args.tokens:
        steps = math.ceil(tokens / k)
        run_config = config
        if steps > config.max_steps and not args.slide:
            run_config = dataclasses.replace(config, max_steps=steps)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = ARGenerator(run_config).eval()
        labels = torch.tensor([0]) if run_config.num_classes else None
        timed_generate(model, 1, True, labels)  # warm-up
        stamps: list[float] = []
        cached = timed_generate(model, steps, True, labels, stamps)
        per_id = [b - a for a, b in itertools.pairwise(stamps)]
        first, last = sum(per_id[:100]) / 100, sum(per_id[-100:]) / 100
        row = {"tokens": steps * k, "steps": steps, "max_steps": run_config.max_steps,
               "parameters": sum(p.numel() for p in model.parameters()),
               "cached_tokens_per_s": round(steps * k / cached, 1),
               "cached_ms_per_token_first_100": round(1e3 * first, 3),
               "cached_ms_per_token_last_100": round(1e3 * last, 3),
               "last_over_first_100": round(last / first, 3)}
        if steps * k <= args.uncached_max:
            uncached = timed_generate(model, steps, False, labels)
            row |= {"uncached_tokens_per_s": round(steps * k / uncached, 1),
                    "cache_speedup": round(uncached / cached, 2)}
        results.append(row)
    print(json.dumps({"preset": args.preset, "batch": 1, "slide": args.slide, "threads": torch.get_num_threads(),
                      "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
