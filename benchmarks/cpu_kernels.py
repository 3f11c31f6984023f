"""The compiled CPU kernels and the step-by-step attention against the eager paths they replace.

    python benchmarks/cpu_kernels.py [--threads 1] [--repeats 20]

For the activation shapes of ``benchmarks/vs_reference.py``'s S and L VAE decoders (17 frames): the VAE's
channel norm + swish (``ChannelNorm.swish``: compiled kernel vs eager passes) and the temporal upsampler
(``TimeUpsample2x``, whole layer, kernel vs eager sums); and time-block-causal attention step by step
(``StepCausal``) vs one call with a dense mask, at the shapes a first-stage flex decoder of those sizes has (5
steps; S: 16 registers + 64 patches, 4 heads; L: 64 + 256, 8 heads of 32; the two guidance branches as a batch
of 2). Median milliseconds, interleaved, and
the speed-up. Freed memory is kept for reuse (``videoflex.utils.memory.keep_freed_memory``, as the
``videoflex`` command does), so that page faults on fresh allocations do not blur the comparison. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from videoflex.nn import cpu_kernels
from videoflex.nn.attention import step_causal_attention
from videoflex.nn.masks import StepCausal
from videoflex.utils.memory import keep_freed_memory
from videoflex.vae.vidtok import CHANNELS_LAST, ChannelNorm, TimeUpsample2x, swish

NORM_SHAPES = {  # [B,C,T,H,W] of the VAE decoders' norms (S: base 16 at 64x64; L: base 32 at 128x128)
    "S top level": (1, 16, 20, 64, 64), "S level 1": (1, 32, 10, 32, 32), "S level 2": (1, 64, 5, 16, 16),
    "L top level": (1, 32, 20, 128, 128), "L level 1": (1, 64, 10, 64, 64),
}
UPSAMPLE_SHAPES = {"S to 64x64": (1, 32, 10, 64, 64), "L to 128x128": (1, 64, 10, 128, 128)}
ATTENTION_SHAPES = {"S": (2, 4, 5, 80, 32), "L": (2, 8, 5, 320, 32)}  # batch, heads, steps, per step, head dim


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms of each function, called in turn ``repeats`` times after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(t) * 1e3, 3) for name, t in times.items()}


def with_kernels(on: bool, fn: Callable[[], object]) -> Callable[[], object]:
    def call() -> object:
        os.environ[cpu_kernels.ENV_SWITCH] = "1" if on else "0"
        return fn()
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory()
    if not cpu_kernels.load():
        raise SystemExit("the CPU kernels could not be built here; nothing to compare")
    gen = torch.Generator().manual_seed(0)
    results: dict[str, dict] = {"channel_norm_swish": {}, "time_upsample": {}, "step_causal_attention": {}}
    with torch.inference_mode():
        for label, shape in NORM_SHAPES.items():
            norm = ChannelNorm(shape[1])
            x = torch.randn(shape, generator=gen).contiguous(memory_format=CHANNELS_LAST)
            ms = interleaved({"kernel": with_kernels(True, lambda n=norm, x=x: n.swish(x)),
                              "eager": with_kernels(False, lambda n=norm, x=x: swish(n(x)))}, args.repeats)
            results["channel_norm_swish"][label] = {"shape": shape, **ms, "speedup": round(ms["eager"] / ms["kernel"], 2)}
        for label, shape in UPSAMPLE_SHAPES.items():
            layer = TimeUpsample2x(shape[1])
            x = torch.randn(shape, generator=gen).contiguous(memory_format=CHANNELS_LAST)
            ms = interleaved({"kernel": with_kernels(True, lambda m=layer, x=x: m(x)),
                              "eager": with_kernels(False, lambda m=layer, x=x: m(x))}, args.repeats)
            results["time_upsample"][label] = {"input": shape, **ms, "speedup": round(ms["eager"] / ms["kernel"], 2)}
        for label, (b, h, steps, per_step, d) in ATTENTION_SHAPES.items():
            q, k, v = (torch.randn(b, h, steps * per_step, d, generator=gen) for _ in range(3))
            mask = StepCausal(steps, per_step)
            dense = mask.dense()
            ms = interleaved({"step_by_step": lambda q=q, k=k, v=v, m=mask: step_causal_attention(q, k, v, m, None),
                              "dense_mask": lambda q=q, k=k, v=v, m=dense: F.scaled_dot_product_attention(
                                  q, k, v, attn_mask=m)}, args.repeats)
            results["step_causal_attention"][label] = {
                "q_shape": (b, h, steps * per_step, d), **ms, "speedup": round(ms["dense_mask"] / ms["step_by_step"], 2)}
    os.environ.pop(cpu_kernels.ENV_SWITCH, None)
    print(json.dumps({"benchmark": "cpu_kernels", "threads": torch.get_num_threads(), "repeats": args.repeats,
                      "keep_freed_memory": kept,
                      "torch": torch.__version__, **results}, indent=2))


if __name__ == "__main__":
    main()
