"""Which clips each step trains on: a pure function of ``(seed, step, dataset length)``.

The global batch of step ``s`` is ``torch.randint(n, (G,), generator=seeded(seed, s, 0))``. Each process
handles a contiguous slice of it, one sub-slice per accumulation micro-batch (:func:`micro_batches`), and
:class:`StepBatchSampler` yields, from any step on, this process's micro-batch index lists to a
``DataLoader``. So a resumed run reads exactly the clips of an uninterrupted one, and N processes read
together exactly the clips of one process with the same global batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def seeded(seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU generator for one purpose (``stream``) at one step."""
    return torch.Generator().manual_seed(hash((seed, step, stream)) & (2**63 - 1))


def global_batch(seed: int, step: int, length: int, batch_size: int) -> torch.Tensor:
    """Dataset indices ``[batch_size]`` int64 in ``[0, length)`` of step ``step`` (drawn with replacement)."""
    return torch.randint(length, (batch_size,), generator=seeded(seed, step, 0))


def micro_batches(batch_size: int, grad_accum: int, rank: int, world_size: int) -> list[slice]:
    """Slices of the global batch one process handles, one per accumulation micro-batch.

    Raises ValueError when ``batch_size`` does not split evenly over processes and micro-batches.
    """
    per_rank, rem = divmod(batch_size, world_size)
    if rem or per_rank % grad_accum:
        raise ValueError(f"batch_size {batch_size} must split evenly over {world_size} processes "
                         f"x {grad_accum} accumulation steps")
    size = per_rank // grad_accum
    start = rank * per_rank
    return [slice(start + i * size, start + (i + 1) * size) for i in range(grad_accum)]


class StepBatchSampler(Sampler[list[int]]):
    """For steps ``start .. steps-1``: this process's micro-batches of each step, in order.

    Yields ``len(parts)`` lists of dataset indices per step (``parts``: :func:`micro_batches`); memory is
    one global batch of indices.
    """

    def __init__(self, length: int, seed: int, start: int, steps: int, batch_size: int,
                 parts: list[slice]) -> None:
        if length < 1:
            raise ValueError("the training dataset is empty")
        self.length, self.seed, self.start, self.steps = length, seed, start, steps
        self.batch_size, self.parts = batch_size, parts

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * len(self.parts)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            indices = global_batch(self.seed, step, self.length, self.batch_size)
            for part in self.parts:
                yield indices[part].tolist()
