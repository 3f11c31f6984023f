"""Weights derived from a module's parameters, kept until a parameter changes.

:class:`DerivedWeights` caches ``fn(*parameters)``: several linear layers' weights joined into one matrix
(:class:`JoinedWeights`, so that their products with the same input are one product), a convolution's kernel
rearranged or folded into the form a faster computation needs (the VAE's per-tap, sub-pixel and mixed
kernels). The modules keep their own parameters (checkpoints, the released-checkpoint loader and optimisers
see them unchanged). While any of them may get a gradient the derived weights are made at every call (so
gradients reach each parameter); otherwise they are kept until one of the parameters changes: its version
counter moves (``load_state_dict``, an optimizer step, any in-place update) or it is replaced (``.to``,
``.half``, ``load_state_dict(assign=True)``). Parameters made under ``torch.inference_mode`` have no version
counter: for them the derived weights are made at every call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

import torch

T = TypeVar("T", torch.Tensor, tuple[torch.Tensor, ...])


class DerivedWeights(Generic[T]):
    """A cache of ``fn(*weights)`` (a tensor or a tuple of tensors) for one module's weights.

    Not a module and not state: it holds the derived tensors (detached) and weak references to the weights
    they were made from (a deep copy of the module has other weights, so it rebuilds its own).
    """

    def __init__(self, fn: Callable[..., T]) -> None:
        self.fn = fn
        self._value: T | None = None
        self._key: tuple | None = None

    def __call__(self, *weights: torch.Tensor) -> T:
        if (torch.is_grad_enabled() and any(w.requires_grad for w in weights)) or any(w.is_inference() for w in weights):
            return self.fn(*weights)  # gradients must reach the weights; or they have no version counter to watch
        # a copy made under inference_mode could not be saved for backward outside it: the mode is in the key
        current = (torch.is_inference_mode_enabled(),
                   *((w.data_ptr(), w._version, w.dtype, w.device) for w in weights))
        cached = self._key
        if cached is None or cached[1] != current or any(r() is not w for r, w in zip(cached[0], weights)):
            with torch.no_grad():
                value = self.fn(*weights)
            self._value = value.detach() if isinstance(value, torch.Tensor) else tuple(v.detach() for v in value)
            self._key = (tuple(weakref.ref(w) for w in weights), current)
        return self._value


def _join(*weights: torch.Tensor) -> torch.Tensor:
    return torch.cat(weights)


class JoinedWeights(DerivedWeights[torch.Tensor]):
    """``torch.cat(weights)`` (along the output axis) for one set of linear layers: ``[w_1; w_2; ...]``,
    ``[sum(out_i), in]``."""

    def __init__(self) -> None:
        super().__init__(_join)
