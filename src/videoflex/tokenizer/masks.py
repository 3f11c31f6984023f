"""Attention masks of the packed tokenizer sequences, as named predicates over token coordinates.

A packed sequence holds ``steps`` latent time steps, each a block ``[first (n_first) | second (n_second)]``
(encoder: ``[patches | registers]``, decoder: ``[registers | patches]``). Every token has coordinates
(step, part, index-in-part). A predicate ``allowed(q, k) -> bool`` says whether query q attends to key k;
``dense_mask`` evaluates it for all pairs once per shape and caches the boolean ``[S, S]`` tensor
(``True`` = attend), as ``scaled_dot_product_attention`` expects.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch

MaskKind = Literal["time_block_causal_last", "time_block_causal", "full"]


@dataclass(frozen=True)
class TokenCoords:
    """Coordinates of every token of a packed sequence, each ``[S]`` int64."""

    step: torch.Tensor
    part: torch.Tensor  # 0 = first sub-block of the step, 1 = second
    index: torch.Tensor  # position inside its sub-block


def token_coords(steps: int, n_first: int, n_second: int) -> TokenCoords:
    per_step = n_first + n_second
    pos = torch.arange(steps * per_step)
    within = pos % per_step
    part = (within >= n_first).long()
    return TokenCoords(step=pos // per_step, part=part, index=torch.where(part == 0, within, within - n_first))


def time_block_causal(q: TokenCoords, k: TokenCoords) -> torch.Tensor:
    """A token sees every token of its own and of earlier steps (decoder)."""
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


_PREDICATES = {"time_block_causal_last": time_block_causal_last, "time_block_causal": time_block_causal}


@functools.lru_cache(maxsize=64)
def dense_mask(kind: MaskKind, steps: int, n_first: int, n_second: int, device: torch.device) -> torch.Tensor | None:
    """Boolean ``[S, S]`` mask (``S = steps * (n_first + n_second)``), or ``None`` for ``"full"``."""
    if kind == "full":
        return None
    coords = token_coords(steps, n_first, n_second)
    q = TokenCoords(*(c[:, None] for c in (coords.step, coords.part, coords.index)))
    k = TokenCoords(*(c[None, :] for c in (coords.step, coords.part, coords.index)))
    return _PREDICATES[kind](q, k).to(device)
