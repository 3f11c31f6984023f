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

:func:`attention_mask` is what models pass to attention: the dense mask, except for ``time_block_causal``,
which it gives as its structure (:class:`StepCausal`): attention then runs step by step over the keys of the
steps so far, without a mask, and skips the pairs a dense mask would throw away (40% of them at 5 steps).
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


@dataclass(frozen=True)
class StepCausal:
    """``time_block_causal`` over ``steps`` blocks of ``per_step`` tokens (step-major), as structure rather
    than a dense mask: the queries of step i attend to the keys of steps ``0..i``, a contiguous prefix.

    :class:`videoflex.nn.attention.Attention` computes it as one unmasked attention per step over that
    prefix (from :data:`videoflex.nn.attention.STEP_BY_STEP_MIN_TOKENS` tokens a step; shorter steps take the
    dense mask): ``t (t + 1) / 2`` instead of ``t^2`` step pairs (60% at 5 steps), and no mask to apply. Measured
    with ``torch.nn.functional.scaled_dot_product_attention`` on one core of an AMD EPYC, 5 steps of 80 tokens,
    2 x 4 heads of 32: 1.71 ms split against 2.66 ms masked; 5 steps of 320 tokens, 2 x 8 heads: 48.8 against
    92.8 ms. The same attention up to float rounding."""

    steps: int
    per_step: int

    def check(self, queries: int, keys: int) -> None:
        """Raise ``ValueError`` unless ``queries`` and ``keys`` are both ``steps * per_step`` (a KV cache's keys
        are not)."""
        if queries != self.steps * self.per_step or keys != queries:
            raise ValueError(f"a StepCausal mask of {self.steps} steps x {self.per_step} tokens does not fit "
                             f"{queries} queries and {keys} keys")

    def dense(self, device: torch.device | None = None) -> torch.Tensor:
        """The equivalent boolean ``[S, S]`` mask (True = attend)."""
        return dense_mask("time_block_causal", self.steps, self.per_step, 0, device or torch.device("cpu"))


def attention_mask(kind: MaskKind, steps: int, n_first: int, n_second: int,
                   device: torch.device) -> torch.Tensor | StepCausal | None:
    """The mask to hand to attention: :class:`StepCausal` for ``time_block_causal``, else :func:`dense_mask`
    (``None`` for ``"full"``). Raises ``ValueError`` for an unknown kind."""
    if kind == "time_block_causal":
        return StepCausal(steps, n_first + n_second)
    return dense_mask(kind, steps, n_first, n_second, device)
