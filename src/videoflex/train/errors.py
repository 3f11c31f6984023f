"""The errors a training run stops with (the CLI prints them as one line)."""

from __future__ import annotations


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class CheckpointMismatch(ValueError):
    """A checkpoint belongs to another model configuration or run, or cannot be trusted."""
