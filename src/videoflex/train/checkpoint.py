"""Training checkpoints that survive faults: written under a temporary name, then renamed.

A checkpoint holds everything needed to continue exactly: the trained module, the EMA, optimiser and
scheduler states, the step (which fixes the data position and every random draw, both derived from
(seed, step)), the global RNG state, and the model and training configs.

Two forms, by how the run holds its weights:

* ``step_XXXXXXXX.pt`` (one process, DDP: every process holds the whole model): one file, loaded with
  ``torch.load(weights_only=True)``: tensors and plain containers only, no code. Beside it
  ``step_XXXXXXXX.pt.sha256`` holds the file's SHA-256, written before the file gets its final name;
  :func:`load_checkpoint` checks it first (a checkpoint from before the checksums: its load is the check).
* ``step_XXXXXXXX/`` (FSDP): a ``torch.distributed.checkpoint`` folder, every process writing its own
  shards (nothing is gathered), plus ``meta.json`` (step, scheduler, optimiser hyper-parameters, configs)
  and ``checksums.json`` (SHA-256 of every file, written last). DCP reads its ``.metadata`` file with
  ``pickle.load`` and non-tensor entries with ``torch.load(weights_only=False)``; so the state holds
  tensors only, and before loading, :func:`verify_sharded` checks every checksum and unpickles
  ``.metadata`` with an unpickler that admits only DCP's own metadata classes, refusing any non-tensor
  entry: a folder we did not write is refused before DCP reads it.

A checkpoint that fails its checks (truncated, empty, altered, not one at all) raises
:class:`~videoflex.train.errors.CheckpointDamaged`: a resume passes over it to the newest intact one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videoflex.train.errors import CheckpointDamaged

PATTERN = "step_{:08d}"
CHECKSUMS = "checksums.json"
META = "meta.json"
SUM_SUFFIX = ".sha256"  # step_XXXXXXXX.pt.sha256: the SHA-256 of step_XXXXXXXX.pt
_NAME = re.compile(r"step_\d{8}(\.pt)?")


@dataclass(frozen=True)
class TrainingState:
    step: int  # optimiser steps completed
    model: dict[str, torch.Tensor]  # the trained module's state (keys as in the task's ``trainable``)
    ema: dict[str, torch.Tensor]  # trained parameter name -> EMA value
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: torch.Tensor
    model_config: str  # JSON of the model config
    train_config: str  # YAML of the recipe
    model_kind: str = "flex-tokenizer"  # the model's kind (checkpoints from before kinds existed: this one)


def save_checkpoint(directory: Path, state: TrainingState, keep: int) -> Path:
    """Write ``step_XXXXXXXX.pt`` atomically, its checksum beside it first, and delete all but the newest
    ``keep`` checkpoints."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (PATTERN.format(state.step) + ".pt")
    tmp = directory / f".{path.name}.tmp"
    torch.save(state.__dict__, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    sums_tmp = directory / f".{path.name}{SUM_SUFFIX}.tmp"
    sums_tmp.write_text(_sha256(tmp) + "\n")
    sums_tmp.replace(checksum_path(path))
    tmp.replace(path)
    prune(directory, keep)
    return path


def prune(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (files or folders)."""
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
        checksum_path(old).unlink(missing_ok=True)


def checksum_path(path: Path) -> Path:
    """Where the SHA-256 of the ``.pt`` checkpoint ``path`` is kept."""
    return path.with_name(path.name + SUM_SUFFIX)


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints (``step_*.pt`` files and ``step_*`` folders), oldest first; temporary files and
    folders of an interrupted write, checksum files and anything else are ignored."""
    found = [p for p in directory.glob("step_*") if _NAME.fullmatch(p.name) and p.is_dir() == (p.suffix != ".pt")]
    return sorted(found, key=lambda p: p.name.removesuffix(".pt"))


def checkpoint_step(path: Path) -> int:
    return int(path.name.removesuffix(".pt").removeprefix("step_"))


def verify_file(path: Path) -> None:
    """Check a ``.pt`` checkpoint against its ``.sha256`` (when it has one: older checkpoints do not).

    Raises :class:`CheckpointDamaged` naming the file when the checksum differs or cannot be read."""
    sums = checksum_path(path)
    if not sums.exists():
        return
    try:
        expected = sums.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointDamaged(f"{path}: its checksum file cannot be read ({e})") from None
    if _sha256(path) != expected:
        raise CheckpointDamaged(f"{path}: checksum mismatch (a truncated or altered file)")


def load_checkpoint(path: Path) -> TrainingState:
    """A ``step_XXXXXXXX.pt`` checkpoint, checked against its checksum first (:func:`verify_file`).

    Raises :class:`CheckpointDamaged` (a ValueError) naming the file when it is damaged or not one."""
    verify_file(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch.load and its unpickler raise many error types)
        raise CheckpointDamaged(f"{path}: not a readable training checkpoint ({_one_line(e)})") from None
    try:
        return TrainingState(**data)
    except TypeError as e:
        raise CheckpointDamaged(f"{path}: not a videoflex training checkpoint ({_one_line(e)})") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


# ----------------------------------------------------------------------------------- sharded (DCP)

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sharded_tmp(directory: Path, step: int) -> Path:
    """The folder a sharded checkpoint of ``step`` is written into before :func:`finish_sharded`."""
    return directory / f".{PATTERN.format(step)}.tmp"


def finish_sharded(directory: Path, step: int, meta: dict[str, Any], keep: int) -> Path:
    """After every process's ``dcp.save`` into :func:`sharded_tmp`: write ``meta.json`` and
    ``checksums.json``, rename the folder to ``step_XXXXXXXX`` and prune (main process only)."""
    tmp = sharded_tmp(directory, step)
    (tmp / META).write_text(json.dumps(meta))
    sums = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
    (tmp / CHECKSUMS).write_text(json.dumps(sums, indent=1))
    for p in tmp.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    path = directory / PATTERN.format(step)
    tmp.replace(path)
    prune(directory, keep)
    return path


class _MetadataUnpickler(pickle.Unpickler):
    """Admits only the classes a DCP ``.metadata`` file is made of."""

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name) if module in _METADATA_MODULES or (module, name) in _METADATA_NAMES \
            or module == "torch" else None
        allowed = (
            (module in _METADATA_MODULES and isinstance(found, type))  # DCP's dataclasses and enums
            or (module, name) in _METADATA_NAMES
            or (module == "torch" and (name == "Size" or isinstance(found, torch.dtype)))
        )
        if not allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint's metadata")
        return found


_METADATA_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem")
_METADATA_NAMES = {("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
                   ("pathlib", "Path"), ("collections", "OrderedDict")}


def verify_sharded(path: Path) -> dict[str, Any]:
    """Check a sharded checkpoint before DCP reads it; returns its ``meta.json``.

    Raises :class:`CheckpointDamaged` (a ValueError) naming the folder when a checksum is missing or wrong,
    a file is unlisted, or ``.metadata`` holds anything but DCP's metadata classes and tensor entries.
    """
    from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata

    try:
        sums = json.loads((path / CHECKSUMS).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointDamaged(f"{path}: not a videoflex sharded checkpoint (no readable {CHECKSUMS}: {e})") from None
    present = {p.name for p in path.iterdir()} - {CHECKSUMS}
    if not isinstance(sums, dict) or set(sums) != present:
        raise CheckpointDamaged(f"{path}: {CHECKSUMS} does not list exactly the folder's files")
    for name, digest in sums.items():
        if _sha256(path / name) != digest:
            raise CheckpointDamaged(f"{path / name}: checksum mismatch (a changed or foreign file)")
    try:
        metadata = _MetadataUnpickler(io.BytesIO((path / ".metadata").read_bytes())).load()
    except Exception as e:  # noqa: BLE001 (an unpickler raises many error types)
        raise CheckpointDamaged(f"{path}/.metadata: refused ({e})") from None
    if not isinstance(metadata, Metadata) or not all(
            isinstance(m, TensorStorageMetadata) for m in metadata.state_dict_metadata.values()):
        raise CheckpointDamaged(f"{path}/.metadata: holds entries that are not tensors")
    try:
        return json.loads((path / META).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointDamaged(f"{path}/{META}: not readable ({e})") from None
