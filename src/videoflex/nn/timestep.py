"""The flow-time embedding: sinusoidal features, then a two-layer MLP (DiT's ``TimestepEmbedder``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_features(s: torch.Tensor, dim: int, scale: float = 1000.0, max_period: float = 256.0) -> torch.Tensor:
    """Sinusoidal features ``[..., dim]`` (float32) of flow times ``s [...]``: ``[cos, sin]`` of ``s * f_i`` at
    frequencies ``f_i = scale * max_period ** (-i / (dim/2))``. ``max_period`` 256 and the ``[cos, sin]``
    order are the reference implementation's."""
    half = dim // 2
    freqs = scale * torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=s.device) / half)
    args = s.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Flow time ``s [...] -> [..., D]``: sinusoidal features of ``s * scale`` then ``Linear, SiLU, Linear``."""

    def __init__(self, dim: int, frequency_dim: int = 256, scale: float = 1000.0) -> None:
        super().__init__()
        self.frequency_dim, self.scale = frequency_dim, scale
        self.fc1 = nn.Linear(frequency_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        features = timestep_features(s, self.frequency_dim, self.scale).to(self.fc1.weight.dtype)
        return self.fc2(F.silu(self.fc1(features)))
