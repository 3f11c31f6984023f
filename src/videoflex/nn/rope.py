"""Rotary position embedding (RoPE, Su et al. 2021) as pure functions on angle tables."""

from __future__ import annotations

import torch


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """Rotation angles ``[S, head_dim/2]`` (float32) of integer ``positions [S]``:
    ``angle[p, i] = p * base ** (-2i / head_dim)``. ``head_dim`` must be even."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    freqs = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    return positions.float()[:, None] * freqs[None, :]


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs ``(x[2i], x[2i+1])`` of ``x [..., S, head_dim]`` by ``angles [S, head_dim/2]``;
    computed in float32, returned in ``x``'s dtype."""
    pairs = x.float().unflatten(-1, (-1, 2))  # [..., S, D/2, 2]
    cos, sin = angles.cos(), angles.sin()
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2).to(x.dtype)
