"""Attention masks as named predicates over token coordinates, evaluated once per shape.

Packed tokenizer sequences hold ``steps`` latent time steps, each a block ``[first (n_first) | second
(n_second)]`` (flex encoder: ``[patches | registers]``, flex decoder: ``[registers | patches]``). Every
token has coordinates (position, step, part, index-in-part). A predicate ``allowed(q, k) -> bool`` says
whether query q attends to key k. :func:`dense_mask` evaluates a named predicate for all pairs and caches
the boolean ``[S, S]`` tensor (``True`` = attend), as ``scaled_dot_product_attention`` expects.

Named masks (see docs/design.md, "Attention masks"):

- ``time_block_causal_last``: the flex encoder's (a step sees earlier steps; inside a step, patches see the
  step's patches, register i sees the step's patches and registers ``<= i``).
- ``time_block_causal``: a token sees every token of its own and earlier steps (flex decoder, grid models).
- ``causal``: a token sees itself and every earlier position (autoregressive models).
- ``prefix_lm``: the first ``n_first`` positions of the whole sequence (the condition) see each other;
  the rest is causal (a prefix language model: class or text prefix, then tokens).
- ``full``: every token sees every token (``dense_mask`` returns ``None``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

MaskKind = Literal["time_block_causal_last", "time_block_causal", "causal", "prefix_lm", "full"]


@dataclass(frozen=True)
class TokenCoords:
    """Coordinates of every token of a packed sequence, each ``[S]`` int64 (or broadcast views)."""

    position: torch.Tensor  # index in the whole sequence
    step: torch.Tensor
    part: torch.Tensor  # 0 = first sub-block of the step, 1 = second
    index: torch.Tensor  # position inside its sub-block


def token_coords(steps: int, n_first: int, n_second: int) -> TokenCoords:
    """Coordinates of ``steps`` blocks of ``[n_first | n_second]`` tokens."""
    per_step = n_first + n_second
    pos = torch.arange(steps * per_step)
    within = pos % per_step
    part = (within >= n_first).long()
    return TokenCoords(position=pos, step=pos // per_step, part=part,
                       index=torch.where(part == 0, within, within - n_first))


def time_block_causal(q: TokenCoords, k: TokenCoords) -> torch.Tensor:
    """A token sees every token of its own and of earlier steps."""
    return k.step <= q.step


def time_block_causal_last(q: TokenCoords, k: TokenCoords) -> torch.Tensor:
    """Encoder mask for steps laid out ``[patches | registers]``.

    A token sees every token of earlier steps. Inside a step, patches see all patches of the step;
    register i sees all patches of the step and registers ``<= i`` (causal registers: coarse-to-fine).
    """
    earlier = k.step < q.step
    same = k.step == q.step
    key_is_patch = k.part == 0
    causal_registers = (q.part == 1) & (k.part == 1) & (k.index <= q.index)
    return earlier | (same & (key_is_patch | causal_registers))


def causal(q: TokenCoords, k: TokenCoords) -> torch.Tensor:
    """A token sees itself and every earlier position."""
    return k.position <= q.position


def prefix_lm(q: TokenCoords, k: TokenCoords) -> torch.Tensor:
    """Laid out as one step ``[prefix (n_first) | tokens (n_second)]``: the prefix is bidirectional, every
    token sees the whole prefix and the tokens up to itself."""
    return (k.part == 0) | (k.position <= q.position)


PREDICATES: dict[str, Callable[[TokenCoords, TokenCoords], torch.Tensor]] = {
    "time_block_causal_last": time_block_causal_last,
    "time_block_causal": time_block_causal,
    "causal": causal,
    "prefix_lm": prefix_lm,
}


@functools.lru_cache(maxsize=64)
def dense_mask(kind: MaskKind, steps: int, n_first: int, n_second: int, device: torch.device) -> torch.Tensor | None:
    """Boolean ``[S, S]`` mask (``S = steps * (n_first + n_second)``; True = attend), or ``None`` for
    ``"full"``. Raises ``ValueError`` for an unknown kind."""
    if kind == "full":
        return None
    if kind not in PREDICATES:
        raise ValueError(f"unknown mask {kind!r}; known: {sorted(PREDICATES)} and 'full'")
    coords = token_coords(steps, n_first, n_second)
    q = TokenCoords(*(c[:, None] for c in (coords.position, coords.step, coords.part, coords.index)))
    k = TokenCoords(*(c[None, :] for c in (coords.position, coords.step, coords.part, coords.index)))
    return PREDICATES[kind](q, k).to(device)
