"""The training loop's typed settings, read from small YAML recipes with ``key=value`` overrides.

A recipe is flat YAML: the loop's fields (:class:`TrainConfig`) and the task's (a subclass) side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from videoflex.utils.dataclass_io import check_positive, from_dict, to_dict


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr`` (the task sets per-group
    weight decay and learning-rate scales, see :meth:`videoflex.train.task.Task.param_groups`)."""

    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 100
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        check_positive(type(self).__name__, lr=self.lr)


@dataclass(frozen=True)
class TrainConfig:
    """The settings of the training loop (:mod:`videoflex.train.loop`), common to every task; a task's
    recipe is a subclass adding its own fields (e.g. :class:`videoflex.train.tasks.tokenizer_config.
    TokenizerTrainConfig`), so a recipe stays one flat YAML file.

    model: a preset name (``videoflex presets``) or a saved model folder to start from.
    batch_size: the global batch (all processes, all accumulation micro-batches together).
    grad_accum: micro-batches per optimiser step on each process.
    precision: ``fp32`` or ``bf16`` (autocast; on devices that support it).
    activation_checkpointing: recompute the task's blocks in the backward pass (torch's checkpoint wrapper).
    parallel: ``ddp`` or ``fsdp`` (FSDP2 ``fully_shard`` per block; checkpoints sharded with
        ``torch.distributed.checkpoint``) under torchrun.
    num_workers: ``DataLoader`` worker processes per rank reading the training data (an in-memory dataset
        is read in the main process).
    eval_every: steps between the task's evaluations (and at the end), when the task has evaluation data.
    """

    out_dir: str = "runs/train"
    model: str = ""
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    ema_decay: float = 0.999
    precision: Literal["fp32", "bf16"] = "fp32"
    activation_checkpointing: bool = False
    parallel: Literal["ddp", "fsdp"] = "ddp"
    seed: int = 0
    log_every: int = 10
    save_every: int = 100
    keep_checkpoints: int = 2
    eval_every: int = 500
    num_workers: int = 2
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "log_every", "save_every", "eval_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"{type(self).__name__}: num_workers must be >= 0, got {self.num_workers}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"{type(self).__name__}: ema_decay must lie in [0, 1), got {self.ema_decay}")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to nested plain data."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return data


def merge_recipes(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: sections (mappings) merge key by key, anything else (lists too) replaces."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_recipes(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML recipe as plain data, with its ``base:`` recipe (a path relative to it) merged underneath.

    A recipe may extend one other recipe, which may extend another; a cycle is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    if path.resolve() in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path.resolve()))
        raise ValueError(f"{path}: recipes extend each other in a cycle ({chain})")
    loaded = yaml.safe_load(path.read_text())
    if loaded is not None and not isinstance(loaded, dict):
        raise ValueError(f"{path}: a training config must be a mapping")
    data = dict(loaded or {})
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ValueError(f"{path}: base must name another recipe file, got {base!r}")
    parent = read_recipe(path.parent / base, (*_seen, path.resolve()))
    return merge_recipes(parent, data)


C = TypeVar("C", bound=TrainConfig)


def load_config(cls: type[C], path: str | Path | None, overrides: list[str] = ()) -> C:
    """Read a YAML recipe into ``cls`` (or its defaults when ``path`` is None; see :func:`read_recipe` for
    ``base:``) and apply ``key=value`` overrides. Raises ValueError on unknown keys or bad values."""
    data = read_recipe(path) if path is not None else {}
    return from_dict(cls, apply_overrides(data, list(overrides)))


def config_to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
