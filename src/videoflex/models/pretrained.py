"""Saving, loading and presets for every model kind (:class:`PretrainedModel`).

A saved model is a folder with two files:

- ``model.safetensors``: the state dict, with string metadata ``format`` = ``"videoflex-model"``,
  ``kind`` (e.g. ``"flex-tokenizer"``) and ``config`` (the config dataclass as canonical JSON);
- ``config.json``: ``{"format", "kind", "config"}``, the same, for people and tools (never read back).

Files of the earlier tokenizer-only format (metadata ``format`` = ``"videoflex-tokenizer"`` and
``config``, no ``kind``; e.g. ``checkpoints/demo``) are read as kind ``"flex-tokenizer"``.
Loading builds the model on the meta device from the stored config and assigns the weights (as
float32), so no memory is spent on a random initialisation; missing, unexpected or mis-shaped tensors
are refused by name. A file of another kind is refused (:func:`videoflex.load_model` picks the class
from the file). Only safetensors files are read: no pickle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from videoflex.io.safetensors_file import save_safetensors
from videoflex.models.identity import ModelIdentity, weights_hash
from videoflex.utils.dataclass_io import config_hash, from_dict, to_dict, to_json
from videoflex.utils.int8 import dequantize_int8, quantize_int8
from videoflex.utils.json_io import to_json_text

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
MODEL_FORMAT = "videoflex-model"
LEGACY_FORMATS = {"videoflex-tokenizer": "flex-tokenizer"}  # format name -> the kind it held
FOREIGN_HINT = ("a released apple/ml-videoflextok checkpoint is read by videoflex.load_model or converted "
                "by 'videoflex convert'")

M = TypeVar("M", bound="PretrainedModel")


@dataclass(frozen=True)
class SavedModel:
    """What a saved model file declares, read without its tensors (:func:`read_saved_model`).

    file: the ``model.safetensors`` file. kind: the model kind. config: the config as plain JSON data.
    legacy: whether it is in the earlier ``videoflex-tokenizer`` format.
    """

    file: Path
    kind: str
    config: dict[str, Any]
    legacy: bool = False


@dataclass(frozen=True)
class PartCount:
    """Parameters of one part of a model (``videoflex presets`` and ``inspect`` print them)."""

    name: str
    parameters: int


def weights_file(path: str | Path) -> Path:
    """The ``model.safetensors`` of a saved-model folder, or ``path`` itself when it is a file."""
    path = Path(path)
    return path / WEIGHTS_NAME if path.is_dir() else path


def read_saved_model(path: str | Path) -> SavedModel:
    """Read the kind and config of a saved model (a folder or its ``model.safetensors``).

    Raises ``FileNotFoundError`` if there is no such file and ``ValueError`` (naming the file) if it is not
    safetensors or holds no videoflex model.
    """
    file = weights_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no {WEIGHTS_NAME} found" if Path(path).is_dir()
                                else f"{path}: no such file")
    try:
        with safe_open(str(file), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 (safetensors raises its own error types for non-safetensors input)
        raise ValueError(f"{file}: not a safetensors file ({e})") from None
    fmt = metadata.get("format")
    if fmt == MODEL_FORMAT and "kind" in metadata:
        kind, legacy = metadata["kind"], False
    elif fmt in LEGACY_FORMATS:
        kind, legacy = LEGACY_FORMATS[fmt], True
    else:
        raise ValueError(f"{file}: not a videoflex model (no videoflex format and config in its metadata); "
                         f"{FOREIGN_HINT}")
    if "config" not in metadata:
        raise ValueError(f"{file}: a videoflex model file without its config in the metadata")
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: the stored config is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{file}: the stored config is not a JSON object")
    return SavedModel(file, kind, config, legacy)


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: object) -> None:
    """Raise ``ValueError`` (prefixed with ``source``) naming every missing, unexpected or mis-shaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                    if k in state and state[k].shape != v.shape)
    problems = [f"{label} {items}" for label, items in (("missing", missing), ("unexpected", unexpected),
                                                        ("mis-shaped (file vs model)", shapes)) if items]
    if problems:
        raise ValueError(f"{source}: weights do not fit the model: " + "; ".join(problems))


class PretrainedModel(nn.Module):
    """Base of every model kind: presets, identity, ``save_pretrained`` / ``from_pretrained``.

    A kind sets the class variables and builds itself from one config dataclass (``cls(config)``; the
    config has a ``name`` field). Hooks a kind may override: :meth:`identity_config` (what of the config
    the identity hashes) and :meth:`parameter_parts` (the parts ``videoflex presets`` counts).
    """

    kind: ClassVar[str]
    config_class: ClassVar[type]
    presets: ClassVar[Mapping[str, Callable[[], Any]]]
    config: Any

    # ------------------------------------------------------------------------------------ identity

    @classmethod
    def identity_config(cls, config: Any) -> Any:
        """The part of ``config`` that decides what the model computes (default: all of it)."""
        return config

    @classmethod
    def hash_config(cls, config: Any) -> str:
        """16 hex digits of the SHA-256 of :meth:`identity_config` as canonical JSON."""
        return config_hash(cls.identity_config(config))

    @property
    def config_hash(self) -> str:
        return self.hash_config(self.config)

    @property
    def identity(self) -> ModelIdentity:
        """(kind, config name, config hash, weights hash); the weights hash is cached until a weight changes."""
        return ModelIdentity(self.kind, self.config.name, self.config_hash, weights_hash(self))

    def parameter_parts(self) -> tuple[PartCount, ...]:
        """Parameter counts by part (default: one per child module); works on the meta device."""
        return tuple(PartCount(name, sum(p.numel() for p in child.parameters()))
                     for name, child in self.named_children())

    # ------------------------------------------------------------------------------------ presets

    @classmethod
    def preset_config(cls, name: str) -> Any:
        """The config of preset ``name`` of this kind (``ValueError`` naming the presets if unknown)."""
        if name not in cls.presets:
            raise ValueError(f"unknown {cls.kind} preset {name!r}; choose one of {sorted(cls.presets)}")
        return cls.presets[name]()

    @classmethod
    def from_preset(cls, name: str, device: torch.device | str | None = None, seed: int = 0) -> Self:
        """A preset with random weights drawn from ``seed``: the same preset and seed give the same weights
        (hence the same :attr:`identity`) in every process and on every device. The model is built on the
        CPU with its own random stream (the global one is left untouched), then moved to ``device``."""
        config = cls.preset_config(name)
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            with torch.device("cpu"):
                model = cls(config)
        return model.to(device or "cpu")

    # ------------------------------------------------------------------------------------ files

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write ``model.safetensors`` (kind and config in its metadata) and ``config.json``; atomic renames.

        dtype: store floating-point tensors in this type (e.g. ``torch.bfloat16`` halves the file);
            ``torch.int8`` stores every tensor of two or more dimensions as int8 rows with a float32 scale
            each (a quarter of float32; see :mod:`videoflex.utils.int8`). :meth:`from_pretrained` loads
            them back as float32.
        Returns the folder.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        if dtype == torch.int8:
            state = quantize_int8(state)
        elif dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        state = {k: v.contiguous() for k, v in state.items()}
        tmp = directory / f".{WEIGHTS_NAME}.tmp"
        save_safetensors(state, tmp, metadata={"format": MODEL_FORMAT, "kind": self.kind,
                                             "config": to_json(self.config)})
        tmp.replace(directory / WEIGHTS_NAME)
        tmp = directory / f".{CONFIG_NAME}.tmp"
        described = {"format": MODEL_FORMAT, "kind": self.kind, "config": to_dict(self.config)}
        tmp.write_text(to_json_text(described))
        tmp.replace(directory / CONFIG_NAME)
        return directory

    @classmethod
    def read_config(cls, path: str | Path) -> Any:
        """The config stored in a saved model of this kind (``ValueError`` for another kind or a bad file)."""
        saved = read_saved_model(path)
        if saved.kind != cls.kind:
            raise ValueError(f"{saved.file}: holds a model of kind {saved.kind!r}, not {cls.kind!r} "
                             f"(videoflex.load_model loads any kind)")
        return from_dict(cls.config_class, saved.config)

    @classmethod
    def from_state_dict(cls, config: Any, state: Mapping[str, torch.Tensor], source: object) -> Self:
        """Build on the meta device and assign ``state`` (checked by :func:`check_state_dict`); eval mode."""
        with torch.device("meta"):
            model = cls(config)
        check_state_dict(model, state, source)
        model.load_state_dict(dict(state), strict=True, assign=True)
        return model.eval()

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu") -> Self:
        """Load a model saved by :meth:`save_pretrained` (a folder or its ``model.safetensors``) as float32.

        Raises ``FileNotFoundError`` if there is no file, ``ValueError`` (naming the file) for a file that is
        not a videoflex model of this kind (a released checkpoint included: see :data:`FOREIGN_HINT`) or whose
        tensors do not fit the stored config.
        """
        config = cls.read_config(path)
        file = weights_file(path)
        try:
            stored = dequantize_int8(load_file(str(file), device=str(device)))
        except ValueError as err:
            raise ValueError(f"{file}: {err}") from None
        state = {k: v.float() if v.is_floating_point() else v for k, v in stored.items()}
        return cls.from_state_dict(config, state, file)

