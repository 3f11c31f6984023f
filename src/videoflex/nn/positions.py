"""Patchify / unpatchify of latent grids and learned factorised 3D position tables."""

from __future__ import annotations

import torch
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
