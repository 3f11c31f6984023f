"""Multi-head self-attention with optional QK-norm, rotary positions and a KV cache hook.

The tokenizers use it with QK-norm (non-affine LayerNorm per head) and the reference's scale
``8 / head_dim`` (apple/ml-videoflextok); an autoregressive model uses it with RoPE, the usual scale
``1 / sqrt(head_dim)`` and a :class:`KVCache` for sampling one position at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, rope: torch.Tensor | None = None,
                cache: KVCache | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B,S,D]`` -> ``[B,S,D]``.

        mask: bool ``[S, S_keys]`` (True = attend) or None (every key). Without a cache ``S_keys = S``;
            with one it is ``cache.max_positions``.
        rope: rotary angles ``[S, head_dim/2]`` of the S positions (:func:`videoflex.nn.rope.rope_angles`).
        cache, positions: write this call's keys and values at ``positions [S]`` of ``cache`` and attend
            over the whole cache (prefill and one-token decoding are the same call).
        """
        q, k, v = (rearrange(w(x), "b s (h d) -> b h s d", h=self.heads) for w in (self.wq, self.wk, self.wv))
        if self.qk_norm:
            q, k = layer_norm(q), layer_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        if cache is not None:
            if positions is None:
                raise ValueError("a KV cache needs the positions of the tokens being computed")
            k, v = cache.update(positions, k, v)
            k, v = k.to(q.dtype), v.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.proj(rearrange(out, "b h s d -> b s (h d)"))
