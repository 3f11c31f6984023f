"""Multi-head self-attention with optional QK-norm, rotary positions and a KV cache hook; cross-attention.

The tokenizers use it with QK-norm (non-affine LayerNorm per head) and the reference's scale
``8 / head_dim`` (apple/ml-videoflextok); an autoregressive model uses it with RoPE, the usual scale
``1 / sqrt(head_dim)`` and a :class:`KVCache` for sampling one position at a time. :class:`CrossAttention`
lets a sequence attend to a context (text features): its keys and values depend on the context only, so
they are computed once (:meth:`CrossAttention.keys_values`) and reused for every position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videoflex.nn.fused import JoinedWeights
from videoflex.nn.masks import StepCausal
from videoflex.nn.rope import apply_rope


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """Non-affine LayerNorm over the last axis, computed in float32, returned in ``x``'s dtype."""
    return F.layer_norm(x.float(), x.shape[-1:]).to(x.dtype)


class KVCache(nn.Module):
    """Preallocated keys and values ``[B, H, S_max, head_dim]`` of one attention layer.

    :meth:`update` writes the keys and values of the positions being computed and returns the whole
    buffers; the caller's mask hides the positions not yet written. Buffers are not saved with the model.
    """

    def __init__(self, batch: int, heads: int, max_positions: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        super().__init__()
        shape = (batch, heads, max_positions, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @property
    def max_positions(self) -> int:
        return self.k.shape[2]

    def update(self, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v [B,H,S,D]`` at ``positions [S]`` (int64); return the full ``[B,H,S_max,D]`` buffers."""
        self.k[:, :, positions] = k.to(self.k.dtype)
        self.v[:, :, positions] = v.to(self.v.dtype)
        return self.k, self.v


STEP_BY_STEP_MIN_TOKENS = 64
"""Tokens per step from which :class:`videoflex.nn.masks.StepCausal` attention runs step by step. Below, the
per-call overhead of ``t`` attention calls outweighs the skipped pairs: measured on one core (5 steps, head dim
32, forward + backward), 20 tokens a step took 1.59 ms step by step against 1.38 ms with the dense mask (batch 8,
2 heads), 80 tokens a step 55 against 69 ms (batch 16, 4 heads)."""


def step_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: StepCausal,
                          scale: float | None) -> torch.Tensor:
    """Attention under :class:`videoflex.nn.masks.StepCausal`: ``q, k, v [B,H,S,d]`` with ``S = steps *
    per_step`` -> ``[B,H,S,d]``, the queries of each step over the keys and values of the steps so far.
    Raises ``ValueError`` when ``S`` does not match the mask."""
    mask.check(q.shape[2], k.shape[2])
    n = mask.per_step
    return torch.cat([F.scaled_dot_product_attention(q[:, :, i * n:(i + 1) * n], k[:, :, :(i + 1) * n],
                                                     v[:, :, :(i + 1) * n], scale=scale)
                      for i in range(mask.steps)], dim=2)


class Attention(nn.Module):
    """Multi-head self-attention without biases.

    width: model width D (a multiple of ``head_dim``).
    qk_norm: non-affine LayerNorm on every head's queries and keys (the tokenizers).
    scale: the logit scale; ``None`` is ``1 / sqrt(head_dim)``. The tokenizers use ``8 / head_dim``, the
        reference implementation's.
    """

    def __init__(self, width: int, head_dim: int, qk_norm: bool = True, scale: float | None = None) -> None:
        super().__init__()
        if width % head_dim:
            raise ValueError(f"width {width} is not a multiple of head_dim {head_dim}")
        self.heads, self.head_dim = width // head_dim, head_dim
        self.qk_norm, self.scale = qk_norm, scale
        self.wq = nn.Linear(width, width, bias=False)
        self.wk = nn.Linear(width, width, bias=False)
        self.wv = nn.Linear(width, width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.joined_qkv = JoinedWeights()  # [wq; wk; wv]: one product for the three projections

    def forward(self, x: torch.Tensor, mask: torch.Tensor | StepCausal | None, rope: torch.Tensor | None = None,
                cache: KVCache | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B,S,D]`` -> ``[B,S,D]``.

        mask: bool ``[S, S_keys]`` (True = attend), a :class:`videoflex.nn.masks.StepCausal` (step by step, no
            cache), or None (every key). Without a cache ``S_keys = S``; with one it is ``cache.max_positions``.
        rope: rotary angles ``[S, head_dim/2]`` of the S positions (:func:`videoflex.nn.rope.rope_angles`).
        cache, positions: write this call's keys and values at ``positions [S]`` of ``cache`` and attend
            over the whole cache (prefill and one-token decoding are the same call).
        """
        b, s, _ = x.shape
        qkv = F.linear(x, self.joined_qkv(self.wq.weight, self.wk.weight, self.wv.weight)).view(b, s, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B,H,S,head_dim] each
        if self.qk_norm:
            q, k = layer_norm(q), layer_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        if cache is not None:
            if positions is None:
                raise ValueError("a KV cache needs the positions of the tokens being computed")
            k, v = cache.update(positions, k, v)
            k, v = k.to(q.dtype), v.to(q.dtype)
        if isinstance(mask, StepCausal) and mask.per_step >= STEP_BY_STEP_MIN_TOKENS:
            out = step_causal_attention(q, k, v, mask, self.scale)
        else:
            if isinstance(mask, StepCausal):  # short steps: one call with the dense mask is faster
                mask.check(s, k.shape[2])
                mask = mask.dense(q.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.proj(rearrange(out, "b h s d -> b s (h d)"))


@dataclass(frozen=True)
class CrossKV:
    """The keys and values ``[B, H, L, head_dim]`` of one cross-attention layer over a context of L tokens,
    and the context's mask ``[B, L]`` (bool, True = a real token; every row has at least one)."""

    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor

    @property
    def batch(self) -> int:
        return self.k.shape[0]


class CrossAttention(nn.Module):
    """Multi-head attention of a sequence ``[B, S, width]`` to a context ``[B, L, context_dim]``, no biases.

    Queries come from the sequence, keys and values from the context (projected ``context_dim -> width``);
    no positions (the context is a set as far as this layer knows; its encoder has its own). ``scale``: as
    :class:`Attention` (None = ``1 / sqrt(head_dim)``).
    """

    def __init__(self, width: int, head_dim: int, context_dim: int, scale: float | None = None) -> None:
        super().__init__()
        if width % head_dim:
            raise ValueError(f"width {width} is not a multiple of head_dim {head_dim}")
        if context_dim < 1:
            raise ValueError(f"CrossAttention: context_dim must be >= 1, got {context_dim}")
        self.heads, self.head_dim, self.scale = width // head_dim, head_dim, scale
        self.wq = nn.Linear(width, width, bias=False)
        self.wk = nn.Linear(context_dim, width, bias=False)
        self.wv = nn.Linear(context_dim, width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def keys_values(self, context: torch.Tensor, mask: torch.Tensor) -> CrossKV:
        """``context [B, L, context_dim]`` and ``mask [B, L]`` (bool, True = attend) -> :class:`CrossKV`.

        Raises ``ValueError`` on a shape mismatch or a row with no real token (its attention is undefined).
        """
        if context.dim() != 3 or context.shape[-1] != self.wk.in_features or mask.shape != context.shape[:2]:
            raise ValueError(f"context must be [B, L, {self.wk.in_features}] with mask [B, L], got "
                             f"{tuple(context.shape)} and {tuple(mask.shape)}")
        if mask.dtype != torch.bool or not bool(mask.any(dim=1).all()):
            raise ValueError("the context mask must be bool with at least one True per row")
        context = context.to(self.wk.weight.dtype)
        k, v = (rearrange(w(context), "b l (h d) -> b h l d", h=self.heads) for w in (self.wk, self.wv))
        return CrossKV(k, v, mask)

    def forward(self, x: torch.Tensor, kv: CrossKV) -> torch.Tensor:
        """``x [B, S, width]`` attending to ``kv`` (:meth:`keys_values`, same B) -> ``[B, S, width]``."""
        if kv.batch != x.shape[0]:
            raise ValueError(f"cross-attention context has batch {kv.batch}, the sequence {x.shape[0]}")
        q = rearrange(self.wq(x), "b s (h d) -> b h s d", h=self.heads)
        out = F.scaled_dot_product_attention(q, kv.k.to(q.dtype), kv.v.to(q.dtype),
                                             attn_mask=kv.mask[:, None, None, :], scale=self.scale)
        return self.proj(rearrange(out, "b h s d -> b s (h d)"))
