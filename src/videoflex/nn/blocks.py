"""Transformer blocks: pre-norm (encoders, heads, with optional cross-attention) and adaLN-zero with per-group
modulation (flow decoders)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videoflex.nn.attention import Attention, CrossAttention, CrossKV, KVCache, layer_norm
from videoflex.nn.masks import StepCausal
from videoflex.nn.mlp import SwiGLU
from videoflex.nn.norm import RMSNorm


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, [``x + cross_attn(norm(x), context)``], then
    ``x + mlp(norm(x))``.

    norm: ``"layer"``: non-affine LayerNorms, no parameters (the tokenizers); ``"rms"``: affine
        :class:`~videoflex.nn.norm.RMSNorm` s ``attn_norm``, ``cross_norm`` and ``mlp_norm`` (LLaMA-style
        generators).
    ``qk_norm`` and ``scale`` as :class:`Attention` (the tokenizers pass ``scale=8 / head_dim``, the reference
    implementation's).
    cross_dim: > 0 adds a :class:`CrossAttention` sub-layer ``cross_attn`` to a context of that width between
        self-attention and the MLP (the decoder layer of Vaswani et al. 2017); 0 (default): none.
    """

    def __init__(self, width: int, head_dim: int, mlp_hidden: int, qk_norm: bool = True,
                 scale: float | None = None, norm: Literal["layer", "rms"] = "layer", cross_dim: int = 0) -> None:
        super().__init__()
        if norm not in ("layer", "rms"):
            raise ValueError(f"Block: norm must be 'layer' or 'rms', got {norm!r}")
        if cross_dim < 0:
            raise ValueError(f"Block: cross_dim must be >= 0 (0 = no cross-attention), got {cross_dim}")
        self.attn = Attention(width, head_dim, qk_norm=qk_norm, scale=scale)
        self.mlp = SwiGLU(width, mlp_hidden)
        self.attn_norm: nn.Module | None = RMSNorm(width) if norm == "rms" else None
        self.mlp_norm: nn.Module | None = RMSNorm(width) if norm == "rms" else None
        self.cross_attn: CrossAttention | None = None
        self.cross_norm: nn.Module | None = None
        if cross_dim:
            self.cross_attn = CrossAttention(width, head_dim, cross_dim, scale=scale)
            self.cross_norm = RMSNorm(width) if norm == "rms" else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | StepCausal | None, rope: torch.Tensor | None = None,
                cache: KVCache | None = None, positions: torch.Tensor | None = None,
                cross: CrossKV | None = None) -> torch.Tensor:
        """``[B,S,D] -> [B,S,D]``; ``mask``, ``rope``, ``cache``, ``positions`` as :meth:`Attention.forward`.

        cross: the context's keys and values (``block.cross_attn.keys_values(context, mask)``); required
            by a block with cross-attention, refused (``ValueError``) by one without.
        """
        attn_norm = layer_norm if self.attn_norm is None else self.attn_norm
        mlp_norm = layer_norm if self.mlp_norm is None else self.mlp_norm
        x = x + self.attn(attn_norm(x), mask, rope, cache, positions)
        if self.cross_attn is not None:
            if cross is None:
                raise ValueError("this block has cross-attention: pass the context's keys and values (cross)")
            cross_norm = layer_norm if self.cross_norm is None else self.cross_norm
            x = x + self.cross_attn(cross_norm(x), cross)
        elif cross is not None:
            raise ValueError("this block has no cross-attention (cross_dim=0): cross must be None")
        return x + self.mlp(mlp_norm(x))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift`` in one fused pass (``addcmul``); ``shift`` and ``scale`` broadcast
    to ``x`` (one vector per group, never expanded to every token)."""
    return torch.addcmul(shift, x, 1 + scale)


# the order of a block's six modulation vectors within each group (the reference's)
GATE_MSA, GATE_MLP, SHIFT_MSA, SCALE_MSA, SHIFT_MLP, SCALE_MLP = range(6)


class GroupModulation(nn.Module):
    """adaLN: ``SiLU -> Linear`` from the condition to ``chunks`` vectors per token group.

    The packed sequence holds several groups (registers, patches) that get their own modulation.
    ``forward(c [B,t|1,D]) -> [B,t|1,G,chunks,D]``: one set of vectors per group, to be broadcast over that
    group's tokens (``mod[:, :, g, j, None]`` is ``[B,t|1,1,D]``). The linear's output is ordered
    group-major, ``(group, chunk, D)``, as the reference's weights.
    """

    def __init__(self, width: int, groups: int, chunks: int) -> None:
        super().__init__()
        self.groups, self.chunks = groups, chunks
        self.linear = nn.Linear(width, groups * chunks * width)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return rearrange(self.linear(F.silu(c)), "b t (g k d) -> b t g k d", g=self.groups, k=self.chunks)


class AdaLNBlock(nn.Module):
    """Flow-decoder block: two adaLN-zero gated residuals, modulated per token group.

    The sequence of each step is a run of contiguous groups (the decoder's: registers, then patches), held
    as one tensor per group: modulation, gates and the MLP run per group with that group's vectors
    broadcast over its tokens; only attention sees the whole sequence (one concatenation per block).
    Modulation order per group (the reference's): gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp,
    scale_mlp (:data:`GATE_MSA` ...).
    """

    def __init__(self, width: int, head_dim: int, mlp_hidden: int, groups: int) -> None:
        super().__init__()
        self.attn = Attention(width, head_dim, qk_norm=True, scale=8.0 / head_dim)
        self.mlp = SwiGLU(width, mlp_hidden)
        self.modulation = GroupModulation(width, groups, chunks=6)

    def forward(self, parts: Sequence[torch.Tensor], c: torch.Tensor, groups: Sequence[int],
                mask: torch.Tensor | StepCausal | None) -> list[torch.Tensor]:
        """``parts``: the groups of every step in sequence order, ``[B,t,P_i,D]`` each, part i in modulation
        group ``groups[i]``; ``c [B,t|1,D]``; ``mask`` over the packed ``t * sum(P_i)`` tokens (step-major).
        Returns the parts after the block, same shapes."""
        mod = self.modulation(c)  # [B,t|1,G,6,D]
        vectors = [mod[:, :, g, :, None].unbind(2) for g in groups]  # per part: 6 x [B,t|1,1,D]
        h = torch.cat([modulate(layer_norm(x), m[SHIFT_MSA], m[SCALE_MSA]) for x, m in zip(parts, vectors)], dim=2)
        b, t, p, d = h.shape
        attended = self.attn(h.view(b, t * p, d), mask).view(b, t, p, d)
        sizes = [x.shape[2] for x in parts]
        parts = [torch.addcmul(x, m[GATE_MSA], a) for x, m, a in zip(parts, vectors, attended.split(sizes, dim=2))]
        return [torch.addcmul(x, m[GATE_MLP], self.mlp(modulate(layer_norm(x), m[SHIFT_MLP], m[SCALE_MLP])))
                for x, m in zip(parts, vectors)]
