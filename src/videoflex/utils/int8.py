"""Row-wise int8 storage of weight tensors: a quarter of float32 on disk, dequantised while loading.

Every floating-point tensor of two or more dimensions (linear weights, embedding tables) is stored as
int8 ``q`` with one float32 scale per row (its first index) under ``name + SCALE_SUFFIX``:
``w = q * scale``, ``scale = max|row| / 127`` (symmetric, round to nearest: the error of an entry is at
most half a step, ``max|row| / 254``). One-dimensional tensors (biases, norms, tokens) stay float32.
"""

from __future__ import annotations

import torch

SCALE_SUFFIX = ".int8_scale"


def quantize_int8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict -> the stored form (int8 rows plus scales for tensors of >= 2 dims)."""
    out = {}
    for name, tensor in state.items():
        if name.endswith(SCALE_SUFFIX):
            raise ValueError(f"tensor name {name!r} ends with the reserved suffix {SCALE_SUFFIX!r}")
        if not tensor.is_floating_point() or tensor.dim() < 2:
            out[name] = tensor.float() if tensor.is_floating_point() else tensor
            continue
        rows = tensor.detach().float().reshape(tensor.shape[0], -1)
        scale = rows.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127.0
        out[name] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(tensor.shape)
        out[name + SCALE_SUFFIX] = scale
    return out


def dequantize_int8(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stored form -> float32 tensors; a dict without int8 tensors passes through unchanged.

    Raises ``ValueError`` for a scale without its int8 tensor or of the wrong length, and for an int8
    tensor without a scale.
    """
    out = {k: v for k, v in stored.items() if not k.endswith(SCALE_SUFFIX)}
    for key, scale in stored.items():
        if not key.endswith(SCALE_SUFFIX):
            continue
        name = key[: -len(SCALE_SUFFIX)]
        q = out.get(name)
        if q is None or q.dtype != torch.int8 or scale.shape != (q.shape[0],):
            found = "missing" if q is None else f"{q.dtype} {tuple(q.shape)}"
            raise ValueError(f"int8 scale {key!r} {tuple(scale.shape)} does not fit its tensor ({found})")
        out[name] = q.float() * scale.float().view(-1, *([1] * (q.dim() - 1)))
    unscaled = sorted(k for k, v in out.items() if v.dtype == torch.int8)
    if unscaled:
        raise ValueError(f"int8 tensors without a scale ({SCALE_SUFFIX}): {unscaled}")
    return out
