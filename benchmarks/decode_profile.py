"""Where videoflex's decoding spends its time: shares per part and per kind of operator (torch.profiler).

    python benchmarks/decode_profile.py [--size S] [--frames 17] [--steps 8] [--top 15]

Decodes one video of the benchmark size (``benchmarks/vs_reference.py``'s :data:`SIZES`, random weights,
APG guidance 20) under ``torch.profiler`` after one warm-up call. Parts: the decoder transformer (every flow
step's forward), the VAE decoder, the VAE encoder (the overlap frames of later chunks), and the rest
(sampler, guidance, token embedding); the VAE decoder's time is split further by its modules
(:data:`VAE_PARTS`; the rest is its input and output convolutions and norm). Operator kinds, from each
operator's self CPU time: matrix products, attention, convolutions, norms, element-wise, copies and layout
(``copy_``, ``cat``, ``index``, ...), videoflex's compiled CPU kernels, other. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, os.path.dirname(__file__))
from vs_reference import SIZES, load_pair

PARTS = ("decoder transformer", "VAE decode", "VAE encode")
VAE_PARTS = {  # the VidTok decoder's modules, by class name (none nested in another)
    "MidBlock": "middle", "SpatialResBlock": "spatial blocks", "TemporalResBlock": "temporal blocks",
    "Upsample2D": "spatial upsampling", "TimeUpsample2x": "temporal upsampling",
}
KINDS: dict[str, tuple[str, ...]] = {  # operator name fragments (aten::...), first match wins
    "matmul": ("addmm", "::mm", "bmm", "baddbmm", "matmul", "linear"),
    "attention": ("scaled_dot_product", "_flash_attention", "_efficient_attention", "flex_attention"),
    "convolution": ("conv", "mkldnn_convolution", "_convolution"),
    "norm": ("layer_norm", "rms_norm", "group_norm", "native_layer_norm"),
    "copy/layout": ("copy_", "::cat", "index", "clone", "contiguous", "repeat", "expand", "gather", "stack",
                    "constant_pad", "pad", "upsample", "permute", "transpose", "view", "reshape", "_to_copy",
                    "::to", "unbind", "split", "chunk", "slice", "select", "empty", "zeros", "fill_"),
    "element-wise": ("add", "mul", "sub", "div", "sigmoid", "silu", "exp", "pow", "clamp", "where", "neg",
                     "cos", "sin", "rsqrt", "sqrt", "avg_pool", "norm", "sum", "mean", "lerp", "addcmul"),
}


def kind_of(op: str) -> str:
    if op.startswith("videoflex::"):  # the compiled CPU kernels (videoflex.nn.cpu_kernels)
        return "compiled kernels"
    for kind, fragments in KINDS.items():
        if any(f in op for f in fragments):
            return kind
    return "other"


def marked(fn: Callable, label: str) -> Callable:
    def call(*args, **kwargs):
        with record_function(label):
            return fn(*args, **kwargs)
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="S")
    parser.add_argument("--frames", type=int, default=17, choices=(17, 33))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--top", type=int, default=15, help="operators listed by self time")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        model = load_pair(SIZES[args.size], None, Path(folder)).ours
    size = SIZES[args.size]
    video = torch.rand(1, 3, 33, size.image, size.image, generator=torch.Generator().manual_seed(123)) * 2 - 1
    ids = model.tokenize(video)[:, : 1 + (args.frames - 1) // 4]
    model.decoder.forward = marked(model.decoder.forward, PARTS[0])
    model.vae.decoder.forward = marked(model.vae.decoder.forward, PARTS[1])
    model.vae.encoder.forward = marked(model.vae.encoder.forward, PARTS[2])
    for module in model.vae.decoder.modules():
        if type(module).__name__ in VAE_PARTS:
            module.forward = marked(module.forward, f"VAE decode: {VAE_PARTS[type(module).__name__]}")

    def decode() -> torch.Tensor:
        return model.detokenize(ids, steps=args.steps, guidance=20.0, generator=torch.Generator().manual_seed(0))

    decode()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof, record_function("total"):
        decode()
    events = prof.key_averages()
    total = next(e.cpu_time_total for e in events if e.key == "total")
    parts = {p: next((e.cpu_time_total for e in events if e.key == p), 0.0) / total for p in PARTS}
    parts["other"] = 1.0 - sum(parts.values())
    vae_total = parts[PARTS[1]] * total
    vae_parts = {p: sum(e.cpu_time_total for e in events if e.key == f"VAE decode: {p}") / vae_total
                 for p in VAE_PARTS.values()}
    vae_parts["input/output convolutions and norm"] = 1.0 - sum(vae_parts.values())
    kinds: dict[str, float] = defaultdict(float)
    ops = [e for e in events if e.key.startswith(("aten::", "videoflex::"))]
    for e in ops:
        kinds[kind_of(e.key)] += e.self_cpu_time_total / total
    top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[: args.top]
    print(json.dumps({
        "benchmark": "decode_profile", "size": args.size, "frames": args.frames, "steps": args.steps,
        "threads": torch.get_num_threads(), "total_s": total / 1e6,
        "part_shares": {k: round(v, 4) for k, v in parts.items()},
        "vae_decode_shares": {k: round(v, 4) for k, v in vae_parts.items()},
        "operator_kind_shares": {k: round(v, 4) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "top_operators": [{"op": e.key, "self_share": round(e.self_cpu_time_total / total, 4), "calls": e.count}
                          for e in top],
    }, indent=2))


if __name__ == "__main__":
    main()
