"""One model identity: the kind, the config and a hash of the weights.

Token files, ``reconstruct``, ``eval recon`` and the latent cache record a :class:`ModelIdentity`; ids or
latents are accepted only by a model of the same identity (docs/design.md, "Model identity").
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass

import torch
from torch import nn

HASH_DIGITS = 16


@dataclass(frozen=True)
class ModelIdentity:
    """Who made a set of ids or latents.

    kind: the model kind (e.g. ``"flex-tokenizer"``; see :data:`videoflex.registry.KINDS`).
    name: the config's name (informational: it is not compared).
    config_hash: 16 hex digits of the SHA-256 of what in the config decides the outputs.
    weights_hash: 16 hex digits of :func:`weights_hash` of the model.
    """

    kind: str
    name: str
    config_hash: str
    weights_hash: str

    def __post_init__(self) -> None:
        for field in ("kind", "config_hash", "weights_hash"):
            if not getattr(self, field):
                raise ValueError(f"ModelIdentity: {field} must not be empty")

    def same_model(self, other: ModelIdentity) -> bool:
        """Whether both name one model: same kind, config hash and weights hash (names may differ)."""
        return (self.kind, self.config_hash, self.weights_hash) == (other.kind, other.config_hash,
                                                                    other.weights_hash)

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} (config {self.config_hash}, weights {self.weights_hash})"


@dataclass(frozen=True)
class _Entry:
    """What a cached hash was computed from: each tensor (weakly held), its storage address and version."""

    tensors: tuple[tuple[str, weakref.ref, int, int], ...]
    digest: str

    def still_valid(self, current: list[tuple[str, torch.Tensor]]) -> bool:
        if len(current) != len(self.tensors):
            return False
        for (name, tensor), (cached_name, ref, ptr, version) in zip(current, self.tensors):
            if name != cached_name or ref() is not tensor or tensor.data_ptr() != ptr \
                    or tensor._version != version:
                return False
        return True


_CACHE: weakref.WeakKeyDictionary[nn.Module, _Entry] = weakref.WeakKeyDictionary()


def _state(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The state dict's tensors themselves (parameters, not detached copies), sorted by name."""
    return sorted(module.state_dict(keep_vars=True).items())


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The raw bytes of ``tensor``'s values, read on the CPU from a contiguous copy (independent of device and
    memory layout; empty for an empty tensor)."""
    t = tensor.detach().cpu().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def weights_hash(module: nn.Module) -> str:
    """16 hex digits of a SHA-256 over every state-dict tensor: its name, dtype, shape and bytes.

    The bytes are read on the CPU from a contiguous copy, so the hash does not depend on the device or the
    memory layout; it does depend on the dtype (a bfloat16 copy of a model hashes differently). Computed
    once per model and cached: the cache is checked against each tensor's object, storage address and
    version counter, so any in-place update (an optimiser step, ``load_state_dict``, ``copy_``) or a
    replaced tensor gives a fresh hash. Works for any ``nn.Module``; meta tensors raise ``ValueError``.
    """
    current = _state(module)
    entry = _CACHE.get(module)
    if entry is not None and entry.still_valid(current):
        return entry.digest
    digest = hashlib.sha256()
    for name, tensor in current:
        if tensor.is_meta:
            raise ValueError(f"weights_hash: tensor {name!r} is on the meta device (no weights to hash)")
        digest.update(f"{name}:{str(tensor.dtype).removeprefix('torch.')}:{list(tensor.shape)}\n".encode())
        digest.update(tensor_bytes(tensor))
    result = digest.hexdigest()[:HASH_DIGITS]
    _CACHE[module] = _Entry(tuple((name, weakref.ref(t), t.data_ptr(), t._version) for name, t in current), result)
    return result
