"""Typed (de)serialisation of nested config dataclasses to and from plain JSON dicts.

Configs are stored beside weights (safetensors metadata, ``config.json``) and read back into the same
dataclasses. Unknown or missing keys are errors: a checkpoint never half-loads a config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import types
import typing
from typing import Any, TypeVar

from videoflex.utils.json_io import to_json_text

_EXPONENT_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")

T = TypeVar("T")


def check_positive(owner: str, **values: float) -> None:
    """Raise ``ValueError`` naming the first value that is not > 0 (NaN included)."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{owner}: {name} must be > 0, got {value}")


HASH_SINCE = "hash_since"
"""Field metadata key for a field added to a config after models with that config were published (the value:
when, for the reader). :func:`config_hash` leaves such a field out while it holds its default, so that every
model made before the field existed keeps its identity (the identities recorded in generators, token shards
and model cards stay valid); any other value enters the hash."""


def to_dict(obj: Any, for_hash: bool = False) -> Any:
    """A dataclass (possibly nested, with tuples/lists) as JSON-ready plain data; ``for_hash``: without the
    :data:`HASH_SINCE` fields that hold their defaults (what :func:`config_hash` hashes)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name), for_hash) for f in dataclasses.fields(obj)
                if not (for_hash and HASH_SINCE in f.metadata and f.default is not dataclasses.MISSING
                        and getattr(obj, f.name) == f.default)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v, for_hash) for v in obj]
    return obj


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, where) for a, v in zip(args, value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value):
        return float(value)  # YAML 1.1 (PyYAML) reads 1e-3 (no dot) as text
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ValueError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Any, where: str | None = None) -> T:
    """Build dataclass ``cls`` from plain data, checking keys and types (raises ``ValueError``)."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # missing required fields
        raise ValueError(f"{where}: {e}") from None


def to_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): stable across runs."""
    return to_json_text(to_dict(obj), canonical=True)


def config_hash(obj: Any) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON of a config (without the :data:`HASH_SINCE`
    fields at their defaults)."""
    return hashlib.sha256(to_json_text(to_dict(obj, for_hash=True), canonical=True).encode()).hexdigest()[:16]
