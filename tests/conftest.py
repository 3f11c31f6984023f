"""Shared fixtures: a tiny tokenizer with every parameter random (so no zero-init head hides a bug)."""

from __future__ import annotations

import pytest
import torch

from videoflex import VideoFlexTok


def randomize_(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter (zero-initialised heads and adaLN included) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.fixture(scope="session")
def tiny_model() -> VideoFlexTok:
    return randomize_(VideoFlexTok.from_preset("flex-tiny")).eval()


@pytest.fixture
def video() -> torch.Tensor:
    """A random clip ``[2,3,17,32,32]`` in [-1,1] (the tiny model's size)."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 17, 32, 32, generator=g) * 2 - 1
