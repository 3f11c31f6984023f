"""The linear-code baseline of ``scripts/demo_baselines.py`` (the reference the demo model's card cites)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location(
    "demo_baselines", Path(__file__).parents[1] / "scripts" / "demo_baselines.py")
baselines = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baselines)


def test_frame_groups_are_the_latent_steps() -> None:
    clips = torch.arange(2 * 3 * 9 * 2 * 2, dtype=torch.float32).reshape(2, 3, 9, 2, 2)
    first, later = baselines.frame_groups(clips, 4)
    assert first.shape == (2, 12) and later.shape == (4, 48)
    assert torch.equal(first[1], clips[1, :, 0].flatten())
    assert torch.equal(later[3], clips[1, :, 5:9].flatten())  # clip 1, frames 5..8, channel-major


def test_linear_code_gains_with_each_coefficient_and_quantises_within_half_a_step() -> None:
    g = torch.Generator().manual_seed(0)
    directions = torch.linalg.qr(torch.randn(40, 3, generator=g))[0]  # orthonormal [40, 3]
    def draw(n: int) -> torch.Tensor:
        return 0.5 + (torch.randn(n, 3, generator=g) * torch.tensor([0.3, 0.1, 0.03])).clamp(-0.6, 0.6) @ directions.T
    code = baselines.LinearCode(draw(2000), components=3, levels=(8, 8, 8))
    held = draw(200)
    errors = [float((code.reconstruct(held, m) - held).pow(2).mean()) for m in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]
    # with every component kept, what is left is the quantiser's rounding: at most half a step a coefficient
    z = (held - code.mean) @ code.basis / code.std
    inside = (z.abs() < baselines.RANGE).all(1)
    step = 2 * baselines.RANGE / 7 * code.std  # [3]
    residual = ((code.reconstruct(held, 3) - held) @ code.basis).abs()[inside]
    assert bool((residual <= step / 2 + 1e-4).all())
