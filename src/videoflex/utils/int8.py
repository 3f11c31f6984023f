"""Int8 storage of weight tensors: a quarter of float32 on disk, dequantised while loading.

Every floating-point tensor of two or more dimensions (linear weights, embedding tables) is stored as
int8 ``q`` with one float32 scale per row (its first index) under ``name + SCALE_SUFFIX``:
``w = q * scale``, ``scale = max|row| / 127`` (symmetric, round to nearest: the error of an entry is at
most half a step, ``max|row| / 254``). Where a tensor's columns (its entries per first-axis row, flattened)
differ in magnitude, a row-wise step is set by the largest columns and the small ones lose most of their
digits (a principal-component decoder, whose columns are scaled by their components' standard deviations,
lost 0.15 to 0.22 dB at its largest token budget that way); such a tensor is first divided by one float32
scale per column, ``max|column|``, stored under ``name + COLUMN_SCALE_SUFFIX`` (``w = q * scale_row *
scale_column``), whenever that gives the smaller squared error. One-dimensional tensors (biases, norms,
tokens) stay float32.
"""

from __future__ import annotations

import torch

SCALE_SUFFIX = ".int8_scale"
COLUMN_SCALE_SUFFIX = ".int8_column_scale"
TINY = torch.finfo(torch.float32).tiny


def _rows(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[R, C]`` float32 -> int8 ``[R, C]`` and one scale per row."""
    scale = matrix.abs().amax(dim=1).clamp_min(TINY) / 127.0
    return torch.round(matrix / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def quantize_int8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict -> the stored form (int8 rows plus scales for tensors of >= 2 dims)."""
    out = {}
    for name, tensor in state.items():
        if name.endswith((SCALE_SUFFIX, COLUMN_SCALE_SUFFIX)):
            raise ValueError(f"tensor name {name!r} ends with a reserved suffix ({SCALE_SUFFIX!r}, "
                             f"{COLUMN_SCALE_SUFFIX!r})")
        if not tensor.is_floating_point() or tensor.dim() < 2:
            out[name] = tensor.float() if tensor.is_floating_point() else tensor
            continue
        matrix = tensor.detach().float().reshape(tensor.shape[0], -1)
        q, scale = _rows(matrix)
        error = (q.float() * scale[:, None] - matrix).square().sum()
        columns = matrix.abs().amax(dim=0).clamp_min(TINY)
        q_col, scale_col = _rows(matrix / columns)
        if (q_col.float() * scale_col[:, None] * columns - matrix).square().sum() < error:
            q, scale = q_col, scale_col
            out[name + COLUMN_SCALE_SUFFIX] = columns
        out[name] = q.reshape(tensor.shape)
        out[name + SCALE_SUFFIX] = scale
    return out


def dequantize_int8(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stored form -> float32 tensors; a dict without int8 tensors passes through unchanged.

    Raises ``ValueError`` for a scale without its int8 tensor or of the wrong length, and for an int8
    tensor without a scale.
    """
    scales = (SCALE_SUFFIX, COLUMN_SCALE_SUFFIX)
    out = {k: v for k, v in stored.items() if not k.endswith(scales)}
    for key, scale in stored.items():
        if not key.endswith(SCALE_SUFFIX):
            continue
        name = key[: -len(SCALE_SUFFIX)]
        q = out.get(name)
        if q is None or q.dtype != torch.int8 or scale.shape != (q.shape[0],):
            found = "missing" if q is None else f"{q.dtype} {tuple(q.shape)}"
            raise ValueError(f"int8 scale {key!r} {tuple(scale.shape)} does not fit its tensor ({found})")
        value = q.float().reshape(q.shape[0], -1) * scale.float()[:, None]
        columns = stored.get(name + COLUMN_SCALE_SUFFIX)
        if columns is not None:
            if columns.shape != (value.shape[1],):
                raise ValueError(f"int8 column scale {name + COLUMN_SCALE_SUFFIX!r} {tuple(columns.shape)} does not "
                                 f"fit its tensor ({tuple(q.shape)})")
            value = value * columns.float()
        out[name] = value.reshape(q.shape)
    unscaled = sorted(k for k, v in out.items() if v.dtype == torch.int8)
    if unscaled:
        raise ValueError(f"int8 tensors without a scale ({SCALE_SUFFIX}): {unscaled}")
    stray = sorted(k for k in stored if k.endswith(COLUMN_SCALE_SUFFIX) and k[: -len(COLUMN_SCALE_SUFFIX)] + SCALE_SUFFIX
                   not in stored)
    if stray:
        raise ValueError(f"int8 column scales without a row scale ({SCALE_SUFFIX}): {stray}")
    return out
