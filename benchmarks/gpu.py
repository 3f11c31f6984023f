"""The large presets on a GPU: decoder throughput and model FLOP utilisation in bfloat16, tokenize and
detokenize clips/s, and the training step time under torchrun.

    python benchmarks/gpu.py [--presets flex-k600-d18 flex-panda-d18-d28] [--batch 8] [--steps 8]
                             [--nproc 1] [--train-steps 5] [--cpu-smoke]

Prints one JSON object. On a CUDA device the presets run at their real size with random weights. Without
one (or with ``--cpu-smoke``) every measurement runs end to end on the CPU at a reduced size (the preset's
layout, patch size and attention with width 64, depth 2, a VAE of base width 8, 32x32 frames and 8
registers; see :func:`smoke_config`), so that the script is known to work before it reaches a GPU; the
CPU figures are not GPU estimates.

- ``decoder``: one flow-step forward of the decoder on a batch of clips (``--batch`` conditional +
  ``--batch`` unconditional, as guided sampling batches them), model in bfloat16: seconds, tokens/s, and
  the model FLOPs of a forward counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products,
  attention). MFU = FLOP/s / the device's dense bf16 peak, for devices of :data:`PEAK_BF16_TFLOPS` (the
  vendor's figure); ``matmul_fraction`` divides by the bf16 matrix-product rate measured here on an
  8192x8192 (CPU: 1024) product, for any device.
- ``tokenize`` / ``detokenize``: clips/s of the model's own calls on one chunk (17 frames) per clip,
  bfloat16 weights, ``--steps`` flow steps with APG guidance 20.
- ``train``: seconds per optimiser step of the training loop (``videoflex.train.loop.train_step``, tokenizer
  task, bf16 autocast, FSDP) on random clips, run under ``torchrun --nproc_per_node --nproc``; the global
  batch is ``--batch`` per process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

PEAK_BF16_TFLOPS = {  # dense bfloat16 tensor-core peaks, vendor data sheets (no sparsity)
    "H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "A100": 312.0,
}
GUIDANCE = 20.0


def smoke_config(config: Any) -> Any:
    """The preset reduced to a CPU-sized model of the same layout (patch size, attention, prediction)."""
    from videoflex.tokenizers.flex.config import DecoderConfig, EncoderConfig

    patch = config.decoder.patch_size
    return dataclasses.replace(
        config, name=config.name + "-cpu-smoke", image_size=(16 * patch, 16 * patch), num_registers=8,
        vae=dataclasses.replace(config.vae, base_channels=8),
        encoder=EncoderConfig(width=64, depth=2, head_dim=32, patch_size=config.encoder.patch_size),
        decoder=DecoderConfig(width=64, depth=2, head_dim=32, patch_size=patch, attention=config.decoder.attention))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_rate(device: torch.device) -> float:
    """Measured bf16 matrix-product FLOP/s of an n x n x n product (n = 8192 on a GPU, 1024 on the CPU)."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    seconds = timed(lambda: a @ b, device, 5)
    return 2 * n ** 3 / seconds


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tf * 1e12 for key, tf in PEAK_BF16_TFLOPS.items() if key in name), None)


def measure_model(config: Any, device: torch.device, batch: int, steps: int, repeats: int) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    from videoflex import SamplerConfig, VideoFlexTok

    torch.manual_seed(0)
    model = VideoFlexTok(config).to(device).eval()
    h, w = config.image_size
    video = torch.rand(batch, 3, config.chunk_frames, h, w, device=device) * 2 - 1
    with torch.no_grad():
        latents = model.vae.encode(video)
    model = model.to(torch.bfloat16)
    lat = latents.to(torch.bfloat16)
    b, t = lat.shape[0], lat.shape[2]
    registers = torch.randn(2 * b, t, config.num_registers, config.decoder.width, device=device, dtype=torch.bfloat16)
    x = torch.cat([lat, lat])
    s = torch.full((2 * b,), 0.5, device=device)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model.decoder(x, s, registers).velocity

    counter = FlopCounterMode(display=False)
    with counter:
        forward()
    flops = counter.get_total_flops()
    seconds = timed(forward, device, repeats)
    grid = (lat.shape[3] // config.decoder.patch_size) * (lat.shape[4] // config.decoder.patch_size)
    tokens = 2 * b * t * (config.num_registers + grid)
    peak, rate = peak_flops(device), matmul_rate(device)
    decoder = {"batch": 2 * b, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
               "model_flops": flops, "flops_per_s": flops / seconds,
               "mfu": flops / seconds / peak if peak else None, "peak_bf16_flops": peak,
               "measured_matmul_bf16_flops": rate, "matmul_fraction": flops / seconds / rate}
    sampler = SamplerConfig(steps=steps, guidance=GUIDANCE)
    ids = model.tokenize(video)
    tokenize_s = timed(lambda: model.tokenize(video), device, repeats)
    detokenize_s = timed(lambda: model.detokenize(ids, sampler=sampler, generator=torch.Generator(device).manual_seed(0)),
                         device, repeats)
    return {"decoder_forward_bf16": decoder,
            "tokenize": {"batch": batch, "seconds": tokenize_s, "clips_per_s": batch / tokenize_s},
            "detokenize": {"batch": batch, "steps": steps, "guidance": GUIDANCE, "seconds": detokenize_s,
                           "clips_per_s": batch / detokenize_s}}


def train_one(model_dir: str, device: str, batch: int, steps: int) -> None:
    """One torchrun process: ``steps`` timed optimiser steps after a warm-up; rank 0 prints JSON."""
    from videoflex import VideoFlexTok
    from videoflex.train.loop import setup, train_step
    from videoflex.train.tasks.tokenizer import TokenizerTask
    from videoflex.train.tasks.tokenizer_config import load_train_config

    config = VideoFlexTok.read_config(model_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    h, w = config.image_size
    with tempfile.TemporaryDirectory() as out:
        recipe = load_train_config(None, [f"model={model_dir}", "precision=bf16", f"batch_size={batch * world}",
                                          f"out_dir={out}", f"data.size={h}", f"data.frames={config.chunk_frames}",
                                          f"device={device}", "parallel=fsdp"])
        run = setup(TokenizerTask(recipe))
    clips = torch.randint(0, 256, (batch, 3, config.chunk_frames, h, w), dtype=torch.uint8)
    dev = run.ctx.device
    train_step(run, [clips], 0)  # warm-up
    synchronize(dev)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        train_step(run, [clips], step)
    synchronize(dev)
    seconds = (time.perf_counter() - start) / steps
    if run.ctx.rank == 0:
        print(json.dumps({"processes": world, "batch_per_process": batch, "global_batch": batch * world,
                          "seconds_per_step": seconds, "clips_per_s": batch * world / seconds}))


def measure_train(config: Any, device: str, nproc: int, batch: int, steps: int) -> dict[str, Any]:
    """The training step under ``torchrun --standalone --nproc_per_node nproc`` (a fresh model folder)."""
    from videoflex import VideoFlexTok

    with tempfile.TemporaryDirectory() as folder:
        VideoFlexTok(config).save_pretrained(Path(folder) / "model")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   __file__, "--train-one", str(Path(folder) / "model"), device, str(batch), str(steps)]
        out = subprocess.run(command, check=False, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"torchrun failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["flex-k600-d18", "flex-panda-d18-d28"])
    parser.add_argument("--batch", type=int, default=8, help="clips per call (and per process in training)")
    parser.add_argument("--steps", type=int, default=8, help="flow steps of detokenize")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nproc", type=int, default=None, help="torchrun processes (default: GPUs, CPU: 2)")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--cpu-smoke", action="store_true", help="reduced sizes on the CPU (automatic without CUDA)")
    parser.add_argument("--train-one", nargs=4, metavar=("MODEL", "DEVICE", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_one:
        model_dir, device, batch, steps = args.train_one
        train_one(model_dir, device, int(batch), int(steps))
        return
    from videoflex.tokenizers.flex.presets import get_preset

    smoke = args.cpu_smoke or not torch.cuda.is_available()
    device = torch.device("cpu" if smoke else "cuda")
    batch = min(args.batch, 2) if smoke else args.batch
    nproc = args.nproc or (2 if smoke else torch.cuda.device_count())
    results = []
    for name in args.presets:
        config = smoke_config(get_preset(name)) if smoke else get_preset(name)
        result = {"preset": name, "config": config.name, "image_size": list(config.image_size),
                  **measure_model(config, device, batch, args.steps, args.repeats),
                  "train": measure_train(config, device.type, nproc, batch, args.train_steps)}
        results.append(result)
    print(json.dumps({"benchmark": "gpu", "device": torch.cuda.get_device_name() if not smoke else "cpu",
                      "cpu_smoke": smoke, "torch": torch.__version__, "results": results}, indent=2))


if __name__ == "__main__":
    main()
