"""The errors a training run stops with (the CLI prints them as one line)."""

from __future__ import annotations


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class CheckpointMismatch(ValueError):
    """A checkpoint belongs to another model configuration or run, or cannot be trusted."""


class CheckpointDamaged(CheckpointMismatch):
    """A checkpoint is truncated, empty, altered or not one at all (its checksum or its load fails): a resume
    passes over it to the newest intact one."""


class RecipeChanged(CheckpointMismatch):
    """``resume`` with a recipe that differs from the checkpoint's in fields that change the result; the
    message names them."""


class RecipeError(ValueError):
    """A recipe that cannot be trained as it stands (no training data, a device that is not there, a saved
    model whose weights do not fit its config); found before any data is read or any file written."""


class RunLocked(RuntimeError):
    """Another trainer holds the run folder's lock (``OUT/.lock``)."""
