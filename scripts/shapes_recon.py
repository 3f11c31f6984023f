"""Held-out reconstruction quality of a synthetic-shapes tokenizer (the shipped ``checkpoints/shapes``, or any
other saved at 32x32): PSNR and SSIM at each token count, as ``videoflex eval recon`` sweeps video files, on
clips of ``videoflex.data.ShapesDataset`` drawn in memory (no video codec between the clip and the model).

    python scripts/shapes_recon.py MODEL [--count 64] [--seed 2] [--keep 1,2,4,8,16] [--steps N]

Defaults: 64 clips of seed 2 (the seed of the generators' held-out evaluation data; the tokenizer recipes
train on seed 1), 17 frames at the model's size, the model's flow steps, decoder noise seed 0. Prints a table
and the model's identity; the same arguments give the same numbers.
"""

import argparse

import torch

from videoflex import load_model
from videoflex.data.shapes import ShapesConfig, ShapesDataset
from videoflex.eval.sweep import SweepSettings, default_keeps, run_sweep

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a saved tokenizer folder (model.safetensors + config.json)")
    parser.add_argument("--count", type=int, default=64, help="clips (default: 64)")
    parser.add_argument("--seed", type=int, default=2, help="seed of the clips (default: 2)")
    parser.add_argument("--frames", type=int, default=17, help="frames a clip (default: 17)")
    parser.add_argument("--keep", help="token counts, e.g. 1,2,4 (default: 1, 2, 4, ... N)")
    parser.add_argument("--steps", type=int, help="flow steps (default: the model's)")
    args = parser.parse_args()
    model = load_model(args.model).eval()
    size = model.image_size
    dataset = ShapesDataset(ShapesConfig(num_samples=args.count, num_frames=args.frames, size=size, seed=args.seed))
    clips = torch.stack([dataset[i].video for i in range(args.count)])
    n = model.layout.tokens_per_step
    keeps = tuple(int(k) for k in args.keep.split(",")) if args.keep else default_keeps(n)
    settings = SweepSettings.for_model(model, keeps, args.steps, batch_size=8)
    result = run_sweep(model, clips, settings, progress=False)
    print(f"{model.identity}: {args.count} clips of seed {args.seed}, {args.frames} frames at {size[1]}x{size[0]}, "
          f"{settings.steps} flow step(s)")
    print(f"{'k':>7}" + "".join(f"{r.keep:>7}" for r in result.results))
    print(f"{'PSNR dB':>7}" + "".join(f"{r.psnr:7.2f}" for r in result.results))
    print(f"{'SSIM':>7}" + "".join(f"{r.ssim:7.3f}" for r in result.results))
