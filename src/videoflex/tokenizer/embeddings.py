"""Patchify / unpatchify, learned factorised 3D positions, and the flow-time embedding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def patchify(latents: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B,C,t,h,w] -> [B,t,(h/p)(w/p),p*p*C]``, each patch flattened channel-fastest ``(pt ph pw c)``."""
    return rearrange(latents, "b c t (h ph) (w pw) -> b t (h w) (ph pw c)", ph=patch, pw=patch)


def unpatchify(patches: torch.Tensor, patch: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B,t,h'w',p*p*C] -> [B,C,t,h'p,w'p]``."""
    return rearrange(patches, "b t (h w) (ph pw c) -> b c t (h ph) (w pw)", h=grid[0], w=grid[1], ph=patch, pw=patch)


class PositionTable3D(nn.Module):
    """Learned factorised positions: ``pos[t, y, x] = (table_h[y] + table_w[x]) + table_t[t]``."""

    def __init__(self, steps: int, height: int, width: int, dim: int) -> None:
        super().__init__()
        self.table_t = nn.Parameter(torch.zeros(steps, dim))
        self.table_h = nn.Parameter(torch.zeros(height, dim))
        self.table_w = nn.Parameter(torch.zeros(width, dim))

    def forward(self, steps: int, height: int, width: int) -> torch.Tensor:
        """Positions of a ``steps x height x width`` grid as ``[steps, height*width, D]``."""
        for name, n, table in (("steps", steps, self.table_t), ("height", height, self.table_h), ("width", width, self.table_w)):
            if n > table.shape[0]:
                raise ValueError(f"grid {name} {n} exceeds the model's position table ({table.shape[0]})")
        pos = (self.table_h[:height, None] + self.table_w[None, :width])[None] + self.table_t[:steps, None, None]
        return pos.flatten(1, 2)


def timestep_features(s: torch.Tensor, dim: int, scale: float = 1000.0, max_period: float = 256.0) -> torch.Tensor:
    """Sinusoidal features ``[..., dim]`` of flow times ``s [...]``: ``[cos, sin]`` of ``s * f_i`` at
    frequencies ``f_i = scale * max_period ** (-i / (dim/2))``."""
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
