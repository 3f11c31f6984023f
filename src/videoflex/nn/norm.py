"""RMSNorm (Zhang & Sennrich 2019) with a learned per-channel weight, as in LLaMA (Touvron et al. 2023)."""

from __future__ import annotations

import torch
from torch import nn

RMS_EPS = 1e-6
"""The epsilon of LLaMA's reference implementation (``norm_eps`` in its ``ModelArgs``)."""


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last axis ``[..., D] -> [..., D]``; computed in
    float32, returned in ``x``'s dtype. The weight starts at one."""

    def __init__(self, width: int, eps: float = RMS_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (h * self.weight.float()).to(x.dtype)
