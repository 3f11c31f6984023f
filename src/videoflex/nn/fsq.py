"""Finite scalar quantisation (FSQ; Mentzer et al., 2023, arXiv 2309.15505): a bounded scalar per channel, rounded."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FSQOutput:
    """What :class:`FSQ` gives for ``[..., d]`` inputs."""

    codes: torch.Tensor  # [..., d] float32 on the grid (straight-through gradient)
    ids: torch.Tensor  # [...] int64 in [0, codebook_size)


class FSQ(nn.Module):
    """Quantises ``[..., d]`` vectors with ``levels[i]`` values on channel i; ids in ``[0, prod(levels))``.

    Codes lie on the grid ``(j - L//2) / (L//2)``, j in [0, L). Ids are mixed-radix with the first
    channel varying fastest. Runs in float32 with autocast off; rounding uses a straight-through gradient.
    """

    def __init__(self, levels: tuple[int, ...], eps: float = 1e-3) -> None:
        super().__init__()
        self.level_counts = tuple(levels)
        self.eps = eps
        self.codebook_size = math.prod(levels)
        self.dim = len(levels)

    def _levels(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(levels, mixed-radix basis), both int64 ``[d]`` (built on the fly: nothing to load or move)."""
        levels = torch.tensor(self.level_counts, dtype=torch.int64, device=device)
        basis = torch.cumprod(torch.cat([torch.ones_like(levels[:1]), levels[:-1]]), dim=0)
        return levels, basis

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash each channel into ``(-L/2, L/2)`` (shifted by 1/2 for even L) before rounding."""
        levels, _ = self._levels(z.device)
        half = (levels.float() - 1) * (1 + self.eps) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Continuous ``[..., d]`` -> codes ``[..., d]`` on the grid (straight-through gradient)."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            bounded = self.bound(z.float())
            rounded = bounded + (torch.round(bounded) - bounded).detach()
            return rounded / (self._levels(z.device)[0] // 2)

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[..., d]`` -> int64 ids ``[...]``."""
        levels, basis = self._levels(codes.device)
        half = levels // 2
        digits = torch.round(codes.float() * half + half).long()
        return (digits * basis).sum(dim=-1)

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """int64 ids ``[...]`` -> float32 codes ``[..., d]``."""
        levels, basis = self._levels(ids.device)
        half = levels // 2
        digits = (ids[..., None] // basis) % levels
        return (digits - half).float() / half

    def forward(self, z: torch.Tensor) -> FSQOutput:
        """``z [..., d]`` -> :class:`FSQOutput` (codes ``[..., d]``, ids ``[...]``)."""
        codes = self.quantize(z)
        return FSQOutput(codes, self.codes_to_ids(codes))
