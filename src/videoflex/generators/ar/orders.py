"""Token orders: a clip's ids ``[B, t, k]`` (steps x rank) as one sequence ``[B, t*k]`` and back.

- ``step_major``: the k ids of step 0, then step 1, ...: sequence position ``step * k + rank``;
- ``rank_major``: rank 0 of every step, then rank 1, ...: position ``rank * t + step``; a prefix of
  ``k' * t`` positions is the budget ``k'`` (token files store ids in this order).

Pure functions; each direction is the exact inverse of the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from videoflex.generators.ar.config import Order

ORDERS: tuple[Order, ...] = ("step_major", "rank_major")


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"unknown token order {order!r}; choose one of {ORDERS}")


def to_sequence(ids: torch.Tensor, order: Order) -> torch.Tensor:
    """``ids [B, t, k]`` (any dtype) -> ``[B, t*k]`` in ``order``."""
    _check_order(order)
    if ids.dim() != 3:
        raise ValueError(f"ids must be [B, t, k], got shape {tuple(ids.shape)}")
    b, t, k = ids.shape
    return ids.reshape(b, t * k) if order == "step_major" else ids.transpose(1, 2).reshape(b, k * t)


def from_sequence(seq: torch.Tensor, order: Order, steps: int, k: int) -> torch.Tensor:
    """``seq [B, steps*k]`` in ``order`` -> ``ids [B, steps, k]`` (the inverse of :func:`to_sequence`)."""
    _check_order(order)
    if seq.dim() != 2 or seq.shape[1] != steps * k:
        raise ValueError(f"a sequence of {steps} steps x {k} tokens must be [B, {steps * k}], "
                         f"got shape {tuple(seq.shape)}")
    b = seq.shape[0]
    return seq.reshape(b, steps, k) if order == "step_major" else seq.reshape(b, k, steps).transpose(1, 2)


@dataclass(frozen=True)
class SequenceLayout:
    """How ``steps`` latent steps of ``k`` ids each are laid out in ``order`` (``steps * k`` positions)."""

    order: Order
    steps: int
    k: int

    def __post_init__(self) -> None:
        _check_order(self.order)
        if self.steps < 1 or self.k < 1:
            raise ValueError(f"a layout needs at least one step and one token per step, got steps={self.steps}, "
                             f"k={self.k}")

    @property
    def length(self) -> int:
        return self.steps * self.k

    def coords(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(step [L], rank [L])`` int64: the latent step and rank of every sequence position."""
        grid = torch.arange(self.length, device=device).reshape(1, self.steps, self.k)
        step = to_sequence(grid // self.k, self.order)[0]
        rank = to_sequence(grid % self.k, self.order)[0]
        return step, rank

    def to_sequence(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids [B, steps, k]`` -> ``[B, L]`` (checks the shape)."""
        if ids.dim() != 3 or tuple(ids.shape[1:]) != (self.steps, self.k):
            raise ValueError(f"ids must be [B, {self.steps}, {self.k}], got shape {tuple(ids.shape)}")
        return to_sequence(ids, self.order)

    def to_ids(self, seq: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` -> ``ids [B, steps, k]``."""
        return from_sequence(seq, self.order, self.steps, self.k)
