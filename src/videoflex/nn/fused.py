"""Several linear layers' weights as one matrix, so that their products with the same input are one product.

The layers keep their own parameters (checkpoints, the released-checkpoint loader and optimisers see them
unchanged); :class:`JoinedWeights` concatenates the weights it is given. While any of them may get a gradient
the concatenation is made at every call (so gradients reach each parameter); otherwise it is kept until
one of them changes: its version counter moves (``load_state_dict``, an optimizer step, any in-place
update) or it is replaced (``.to``, ``.half``, ``load_state_dict(assign=True)``).
"""

from __future__ import annotations

import weakref

import torch


class JoinedWeights:
    """A cache of ``torch.cat(weights)`` (along the output axis) for one set of linear layers.

    Not a module and not state: it holds the joined copy and weak references to the weights it was made
    from (a deep copy of the module has other weights, so it rebuilds its own).
    """

    def __init__(self) -> None:
        self._joined: torch.Tensor | None = None
        self._key: tuple | None = None

    def __call__(self, *weights: torch.Tensor) -> torch.Tensor:
        """``[w_1; w_2; ...]``, ``[sum(out_i), in]``."""
        if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
            return torch.cat(weights)
        current = tuple((w.data_ptr(), w._version, w.dtype, w.device) for w in weights)
        cached = self._key
        if cached is None or cached[1] != current or any(r() is not w for r, w in zip(cached[0], weights)):
            self._joined = torch.cat(weights).detach()
            self._key = (tuple(weakref.ref(w) for w in weights), current)
        return self._joined
