"""Byte-reproducible safetensors files: the same tensors and metadata give the same bytes in every process.

``safetensors.torch.save_file`` writes the string metadata from a Rust hash map, whose order changes from
one process to the next, so two runs that write identical tensors write files that differ. This module
serialises the same format itself with a fixed order: the header is compact JSON with ``__metadata__``
first (keys sorted), then the tensors in name order, each with its dtype, shape and byte offsets; the
header is padded with spaces to a multiple of 8 bytes; the data follows in the same order. Every
safetensors reader (``safe_open``, ``load_file``) reads these files.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

# safetensors dtype names (those of safetensors 0.4+)
_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL", torch.complex64: "C64",
    **{getattr(torch, name): code for name, code in (("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64"),
                                                     ("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"))
       if hasattr(torch, name)},
}


def safetensors_bytes(tensors: Mapping[str, torch.Tensor | np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` (torch tensors or numpy arrays, any device)
    and the string ``metadata``; the same arguments give the same bytes.

    Raises:
        ValueError: a metadata key or value is not a string, a name is ``"__metadata__"``, or a dtype
            has no safetensors name.
    """
    header: dict[str, object] = {}
    if metadata:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"safetensors metadata must map str to str, got {key!r}: {type(value).__name__}")
        header["__metadata__"] = {key: metadata[key] for key in sorted(metadata)}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("a tensor cannot be named '__metadata__'")
        tensor = tensors[name]
        if isinstance(tensor, np.ndarray):
            tensor = torch.from_numpy(np.ascontiguousarray(tensor))
        tensor = tensor.detach().cpu().contiguous()
        if tensor.dtype not in _DTYPES:
            raise ValueError(f"tensor {name!r}: dtype {tensor.dtype} cannot be stored in safetensors")
        data = tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def save_safetensors(tensors: Mapping[str, torch.Tensor | np.ndarray], path: str | os.PathLike,
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write :func:`safetensors_bytes` to ``path`` (not atomically: write to a temporary name, e.g. with
    :func:`videoflex.io.video.atomic_output_path`, where readers may look). Raises ``OSError``, ``ValueError``."""
    path = Path(path)
    path.write_bytes(safetensors_bytes(tensors, metadata))
    return path
