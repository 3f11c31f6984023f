"""Strict JSON out: the one way videoflex writes JSON (result files, reports).

Python's ``json`` writes ``NaN``, ``Infinity`` and ``-Infinity`` by default, which no other JSON reader
accepts; here a non-finite number is an error naming where it sits (``results[2].psnr``), so a file that
was written is always valid JSON, and a silently wrong (NaN) result cannot be saved as if it were one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any


class NonFiniteJSONError(ValueError):
    """A value to be written as JSON holds NaN or an infinity (``where`` names it, e.g. ``results[0].psnr``)."""

    def __init__(self, where: str, value: float) -> None:
        super().__init__(f"{where} is {value}: JSON has no non-finite numbers (a NaN result?)")
        self.where = where


def _non_finite(obj: Any, where: str) -> tuple[str, float] | None:
    """The first non-finite float in ``obj`` (dicts, lists, tuples) as ``(where, value)``, else ``None``."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "the value", obj)
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            found = _non_finite(value, f"{where}.{key}" if where else str(key))
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found = _non_finite(value, f"{where}[{i}]")
            if found:
                return found
    return None


def to_json_text(obj: Any, *, indent: int | None = 2, canonical: bool = False) -> str:
    """``obj`` (a dataclass instance, or dicts/lists/strings/numbers/None) as strict JSON text, ending in a
    newline when indented. ``canonical``: sorted keys, no spaces, one line (stable bytes, for hashing).

    Raises:
        NonFiniteJSONError: a number in ``obj`` is NaN or infinite (the message names the field).
        TypeError: ``obj`` holds something JSON cannot represent.
    """
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    found = _non_finite(obj, "")
    if found:
        raise NonFiniteJSONError(*found)
    if canonical:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    text = json.dumps(obj, indent=indent, allow_nan=False)
    return text + "\n" if indent is not None else text


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON (:func:`to_json_text`) to ``path`` atomically (a temporary file renamed
    when complete; the folder must exist). Nothing is written when ``obj`` is not valid JSON.

    Raises:
        NonFiniteJSONError, TypeError: as :func:`to_json_text` (checked before the file is opened).
        FileNotFoundError: the folder of ``path`` is missing.
    """
    from videoflex.io.video import atomic_output_path

    text = to_json_text(obj, indent=indent)
    path = Path(path)
    with atomic_output_path(path) as tmp:
        Path(tmp).write_text(text)
    return path
