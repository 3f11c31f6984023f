"""Training checkpoints that survive faults: written to a temporary file, then renamed.

A checkpoint holds everything needed to continue exactly: model, EMA, optimiser and scheduler
states, the step (which fixes the data position and every random draw, both derived from
(seed, step)), the global RNG state, and the model and training configs. Files are loaded with
``torch.load(weights_only=True)``: tensors and plain containers only, no code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

PATTERN = "step_{:08d}.pt"


@dataclass(frozen=True)
class TrainingState:
    step: int  # optimiser steps completed
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: torch.Tensor
    model_config: str  # JSON of the TokenizerConfig
    train_config: str  # YAML of the TrainConfig


def save_checkpoint(directory: Path, state: TrainingState, keep: int) -> Path:
    """Write ``step_XXXXXXXX.pt`` atomically and delete all but the newest ``keep`` checkpoints."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PATTERN.format(state.step)
    tmp = directory / f".{path.name}.tmp"
    torch.save(state.__dict__, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink()
    return path


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary files of an interrupted write are ignored)."""
    return sorted(directory.glob("step_*.pt"))


def load_checkpoint(path: Path) -> TrainingState:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch.load and its unpickler raise many error types)
        raise ValueError(f"{path}: not a readable training checkpoint ({e})") from None
    try:
        return TrainingState(**data)
    except TypeError as e:
        raise ValueError(f"{path}: not a videoflex training checkpoint ({e})") from None
