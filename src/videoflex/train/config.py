"""The training loop's typed settings, read from small YAML recipes with ``key=value`` overrides.

A recipe is flat YAML: the loop's fields (:class:`TrainConfig`) and the task's (a subclass) side by side.
Every field is checked when the config is made (``__post_init__`` raises ValueError naming the field), so
a bad value is refused before any data is read or any model built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml

from videoflex.utils.dataclass_io import from_dict, to_dict


def check_range(owner: str, name: str, value: float, low: float, high: float = math.inf,
                low_open: bool = False, high_open: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number in the range (NaN refused)."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below and math.isfinite(value)):
        lo = f"({low:g}" if low_open else f"[{low:g}"
        hi = "inf)" if high == math.inf else (f"{high:g})" if high_open else f"{high:g}]")
        raise ValueError(f"{owner}: {name} must be a finite number in {lo}, {hi}, got {value}")


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
        owner = "OptimConfig"
        check_range(owner, "lr", self.lr, 0.0, low_open=True)
        check_range(owner, "min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        check_range(owner, "weight_decay", self.weight_decay, 0.0)
        for i, beta in enumerate(self.betas):
            check_range(owner, f"betas[{i}]", beta, 0.0, 1.0, high_open=True)
        if self.warmup_steps < 0:
            raise ValueError(f"{owner}: warmup_steps must be >= 0, got {self.warmup_steps}")
        check_range(owner, "grad_clip", self.grad_clip, 0.0, low_open=True)


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

    ``--resume`` refuses a recipe that differs from the checkpoint's (:func:`recipe_changes`) except in the
    fields of ``changes_allowed_on_resume``: where and how the same computation runs (``out_dir``,
    ``device``, ``parallel``, ``grad_accum``, ``activation_checkpointing``, ``num_workers``) and what is
    logged, evaluated and kept (``log_every``, ``eval_every``, ``save_every``, ``keep_checkpoints``). A task
    adds its own (e.g. its evaluation settings).
    """

    changes_allowed_on_resume: ClassVar[frozenset[str]] = frozenset({
        "out_dir", "device", "parallel", "grad_accum", "activation_checkpointing", "num_workers",
        "log_every", "eval_every", "save_every", "keep_checkpoints"})

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
        if not 0 <= self.num_workers <= 64:
            raise ValueError(f"{type(self).__name__}: num_workers must lie in [0, 64], got {self.num_workers}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"{type(self).__name__}: ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.seed < 0:
            raise ValueError(f"{type(self).__name__}: seed must be >= 0, got {self.seed}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"{type(self).__name__}: batch_size {self.batch_size} must split evenly into "
                             f"grad_accum {self.grad_accum} micro-batches")
        if not self.out_dir:
            raise ValueError(f"{type(self).__name__}: out_dir must name a folder")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: data}


def recipe_changes(config: TrainConfig, saved_yaml: str) -> list[str]:
    """The dotted fields (e.g. ``batch_size``, ``optim.lr``, ``data.train``) in which ``config`` differs from
    the recipe ``saved_yaml`` a checkpoint was trained with, leaving out ``changes_allowed_on_resume``;
    a section's list (e.g. ``data.train``) counts as one field. Sorted."""
    saved = yaml.safe_load(saved_yaml) or {}
    ours, theirs = _flatten(to_dict(config)), _flatten(saved if isinstance(saved, dict) else {})
    missing = object()
    return sorted(key for key in set(ours) | set(theirs)
                  if key not in config.changes_allowed_on_resume
                  and ours.get(key, missing) != theirs.get(key, missing))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to nested plain data.

    Raises ValueError naming the override when it is not ``key=value`` or its value is not YAML."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"override {item!r}: its value is not valid YAML "
                             f"({getattr(e, 'problem', None) or 'syntax error'})") from None
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = parsed
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
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:  # one line: the problem and where (line, column)
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML: {problem}{where}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text file ({e.reason} at byte {e.start})") from None
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
