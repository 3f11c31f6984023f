"""Transformer building blocks: attention with QK-norm, SwiGLU, pre-norm and adaLN-zero blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """Non-affine LayerNorm over the last axis, computed in float32."""
    return F.layer_norm(x.float(), x.shape[-1:]).to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention, no biases, QK-norm (non-affine LayerNorm per head), scale 8/head_dim."""

    def __init__(self, width: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = width // head_dim, head_dim
        self.wq = nn.Linear(width, width, bias=False)
        self.wk = nn.Linear(width, width, bias=False)
        self.wv = nn.Linear(width, width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x [B,S,D]``, ``mask [S,S]`` bool (True = attend) or None -> ``[B,S,D]``."""
        q, k, v = (rearrange(w(x), "b s (h d) -> b h s d", h=self.heads) for w in (self.wq, self.wk, self.wv))
        q, k = layer_norm(q), layer_norm(k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=8.0 / self.head_dim)
        return self.proj(rearrange(out, "b h s d -> b s (h d)"))


class SwiGLU(nn.Module):
    """``fc2(silu(fc1(x)) * fc3(x))`` without biases."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, width, bias=False)
        self.fc3 = nn.Linear(width, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))


class Block(nn.Module):
    """Pre-norm transformer block (encoder)."""

    def __init__(self, width: int, head_dim: int, mlp_hidden: int) -> None:
        super().__init__()
        self.attn = Attention(width, head_dim)
        self.mlp = SwiGLU(width, mlp_hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``[B,S,D] -> [B,S,D]``."""
        x = x + self.attn(layer_norm(x), mask)
        return x + self.mlp(layer_norm(x))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class GroupModulation(nn.Module):
    """adaLN: ``SiLU -> Linear`` from the condition to ``chunks`` vectors per token group.

    The packed sequence holds several groups (registers, patches) that get their own modulation.
    ``forward(c [B,t,D], group [P]) -> chunks x [B,t,P,D]`` for a sequence viewed as ``[B,t,P,D]``
    whose position p within a step belongs to group ``group[p]``.
    """

    def __init__(self, width: int, groups: int, chunks: int) -> None:
        super().__init__()
        self.groups, self.chunks = groups, chunks
        self.linear = nn.Linear(width, groups * chunks * width)

    def forward(self, c: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mod = rearrange(self.linear(F.silu(c)), "b t (g k d) -> b t g k d", g=self.groups, k=self.chunks)
        mod = mod[:, :, group]  # [B,t,P,k,D]
        return mod.unbind(dim=3)


class AdaLNBlock(nn.Module):
    """Decoder block: two adaLN-zero gated residuals, modulated per token group.

    Modulation order per group: gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp.
    """

    def __init__(self, width: int, head_dim: int, mlp_hidden: int, groups: int) -> None:
        super().__init__()
        self.attn = Attention(width, head_dim)
        self.mlp = SwiGLU(width, mlp_hidden)
        self.modulation = GroupModulation(width, groups, chunks=6)

    def forward(self, x: torch.Tensor, c: torch.Tensor, group: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x [B,t,P,D]`` (P tokens a step), ``c [B,t|1,D]``, ``group [P]`` -> ``[B,t,P,D]``."""
        gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp = self.modulation(c, group)
        b, t, p, d = x.shape
        h = self.attn(modulate(layer_norm(x), shift_msa, scale_msa).reshape(b, t * p, d), mask)
        x = x + gate_msa * h.view(b, t, p, d)
        return x + gate_mlp * self.mlp(modulate(layer_norm(x), shift_mlp, scale_mlp))
