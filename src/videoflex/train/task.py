"""The interface between the one training loop (:mod:`videoflex.train.loop`) and a model family.

A task builds the model and the module the loop trains, names its blocks, supplies the training data, the
random draws of each step, the optimiser's parameter groups, evaluation and the exported model. The loop
does everything else (processes, optimiser, schedule, EMA, clipping, accumulation, bf16, checkpoints,
signals, resume, NaN stop, logs). A new model family adds one file under ``videoflex/train/tasks/``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from videoflex.models.pretrained import PretrainedModel
from videoflex.train.config import TrainConfig


@dataclass(frozen=True)
class StepOutput:
    """What the trained module's forward returns for one micro-batch.

    loss: float32 scalar, the objective (mean over the micro-batch), differentiable.
    logged: extra detached float scalars for the log (averaged over micro-batches and processes), by name.
    """

    loss: torch.Tensor
    logged: dict[str, torch.Tensor] = field(default_factory=dict)


class Draws(Protocol):
    """The random choices of one step for the whole global batch (drawn up front, so that any split over
    processes and micro-batches sees exactly the draws of one process)."""

    def select(self, part: slice) -> Draws:
        """The draws of the clips ``part`` of the global batch."""

    def to(self, device: torch.device) -> Draws:
        """The same draws on ``device``."""


@dataclass
class TaskModules:
    """model: the network the task exports and evaluates (a model kind: it has ``kind`` and ``save_pretrained``;
        its state-dict keys are ``model.*`` in ``trainable``).
    trainable: what DDP/FSDP wrap: ``forward(batch, draws) -> StepOutput``; it holds ``model`` as
        ``trainable.model`` and any training-only parts (e.g. a REPA head) beside it.
    blocks: the repeated blocks: FSDP units and the units of activation checkpointing.
    """

    model: PretrainedModel
    trainable: nn.Module
    blocks: list[nn.Module]


@dataclass
class TrainData:
    """dataset: map-style, ``len(dataset)`` items; the loop picks indices (:mod:`videoflex.train.sampler`).
    collate: a list of items -> one micro-batch (anything with ``.to(device)``, e.g. a tensor).
    in_memory: the dataset is held in memory: read in the main process, no ``DataLoader`` workers.
    """

    dataset: Dataset[Any]
    collate: Callable[[list[Any]], Any]
    in_memory: bool = False


class Exportable(Protocol):
    """A model the loop can export (``OUT/model``)."""

    def save_pretrained(self, folder: str | Path) -> Any: ...


class Task(ABC):
    """One model family's part of training (see the module docstring). ``config`` is the run's recipe."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def check(self) -> None:
        """Refuse a recipe this task cannot train, before anything is built, read or written: raise
        :class:`~videoflex.train.errors.RecipeError` naming the field (e.g. no training data, a model
        name that is neither a preset nor a saved model). Cheap: no model is built."""

    @abstractmethod
    def build(self, device: torch.device) -> TaskModules:
        """Build the model (from its preset or saved folder) and the trained module, on ``device``; the loop
        seeds torch with ``config.seed`` just before. Raises :class:`~videoflex.train.errors.RecipeError`
        when the saved model's weights do not fit its config."""

    def prepare_data(self, progress: bool) -> None:
        """Run once in the main process before any process reads data (e.g. build an in-memory cache)."""

    @abstractmethod
    def train_data(self, progress: bool) -> TrainData:
        """The training data (every process calls this, after :meth:`prepare_data`)."""

    @abstractmethod
    def draws(self, step: int, batch_size: int) -> Draws:
        """The random choices of step ``step`` for the global batch (a pure function of seed and step)."""

    @abstractmethod
    def param_groups(self, named: list[tuple[str, nn.Parameter]]) -> list[dict[str, Any]]:
        """AdamW parameter groups of the trained parameters ``named`` (names as in ``trainable``): dicts
        with ``params`` and optionally ``lr`` and ``weight_decay``; every parameter in exactly one group."""

    @abstractmethod
    def model_config(self) -> str:
        """JSON of the model's configuration: a checkpoint made with another one is refused."""

    def check_checkpoint(self, keys: set[str], source: Path) -> None:
        """Refuse (:class:`~videoflex.train.errors.CheckpointMismatch`) a checkpoint whose ``trainable``
        state-dict ``keys`` this run cannot continue from (beyond the config check)."""

    @abstractmethod
    def export(self, weights: dict[str, torch.Tensor]) -> Exportable:
        """The model to save as ``OUT/model`` from the full ``trainable`` state (EMA values for the trained
        parameters), on the CPU, in eval mode."""

    @property
    def has_eval(self) -> bool:
        """Whether :meth:`evaluate` has data to run on."""
        return False

    def evaluate(self, model: Any, step: int, out: Path) -> dict[str, float]:
        """Evaluate the exported model ``model`` at step ``step`` (main process; may write files under
        ``out``); returns named floats for the log."""
        return {}
