"""The flex tokenizer task's recipe: the loop's settings plus stage, data, REPA and evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from videoflex.data.config import DataConfig
from videoflex.train.config import OptimConfig, TrainConfig, check_range, load_config


@dataclass(frozen=True)
class TokenizerOptimConfig(OptimConfig):
    """:class:`~videoflex.train.config.OptimConfig` plus the encoder's learning-rate scale.

    encoder_lr_scale: the encoder's learning rate is ``lr * encoder_lr_scale`` (on the same schedule).
        Probes of the CPU demo model memorised four clips faster with the encoder slower than the
        decoder (0.3: 24.5 dB after 200 steps, against 21.7 at 1.0), and at 3x the rate its output
        became the same for every clip (see ``checkpoints/demo/README.md``).
    """

    encoder_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("OptimConfig", "encoder_lr_scale", self.encoder_lr_scale, 0.0, low_open=True)


@dataclass(frozen=True)
class RepaConfig:
    """REPA (docs/design.md, "REPA"): the decoder's patch features after block ``block`` go through a small
    time-causal transformer head (``head_depth`` blocks) that must predict a frozen teacher's features of
    the same clip; ``weight`` times ``1 - cosine`` joins the flow loss. ``weight: 0`` (the default) is off.

    teacher: ``i3d`` (the Kinetics-400 I3D, its Mixed_4f feature map; ``teacher_weights`` is its weights
        file, by default the one ``videoflex fetch i3d-weights`` stores). From Python, any
        frozen module can be the teacher: ``train(config, teacher=module)``.
    """

    weight: float = 0.0
    teacher: Literal["i3d"] = "i3d"
    teacher_weights: str = ""
    block: int = 1
    head_depth: int = 2

    def __post_init__(self) -> None:
        check_range("RepaConfig", "weight", self.weight, 0.0)
        if self.block < 1 or self.head_depth < 1:
            raise ValueError(f"RepaConfig: block and head_depth must be >= 1, got {self.block}, {self.head_depth}")


@dataclass(frozen=True)
class TokenizerTrainConfig(TrainConfig):
    """A flex tokenizer training run (``videoflex train tokenizer``): :class:`~videoflex.train.config.
    TrainConfig` plus:

    stage: ``tokenizer`` trains encoder and decoder; ``decoder`` freezes the encoder and fine-tunes the
        decoder with full attention and first-frame conditioning (``prefix_prob``), from ``model``.
    data: the training and evaluation clips (:class:`~videoflex.data.config.DataConfig`).
    repa: the optional representation-alignment loss (off by default; see :class:`RepaConfig`).
    eval_clips, eval_keep, eval_steps, eval_guidance: evaluation every ``eval_every`` steps: PSNR/SSIM of
        the first ``eval_clips`` eval clips at each token count in ``eval_keep``, decoded in ``eval_steps``
        flow steps at guidance ``eval_guidance``.
    time_mean, time_std: the flow-time distribution of the decoder's loss (``LossConfig``; ``None`` keeps the
        model's). A decoder trained only near pure noise (the CPU presets' ``time_mean: 6``) is a regression
        decoder that decodes in one step; a decoder fine-tuned over all times (``0`` and ``1``, the paper's
        logit-normal) samples detail in several steps.
    decode_steps: the flow steps the trained model decodes with by default (its ``SamplerConfig.steps``, what
        ``detokenize`` and the generators use; ``None`` keeps the model's).
    linear_code_clips: start the preset's linear paths from principal components of this many training clips
        (a seeded random choice of the in-memory cache; :func:`videoflex.tokenizers.flex.pca.fit_linear_paths`:
        the model starts as a linear code of its budget and its transformers learn what that code misses).
        0: off. Needs a flex preset whose decoder's linear path reads codes and ``data.in_memory``. The fit
        (about a minute for 2,000 64x64 clips here) reruns on ``--resume`` before the checkpoint replaces it.

    On ``--resume`` the evaluation settings (``eval_*``, ``data.eval``) and the clip cache's folder
    (``data.cache_dir``) may change too: they do not change the trained weights.
    """

    changes_allowed_on_resume: ClassVar[frozenset[str]] = TrainConfig.changes_allowed_on_resume | {
        "eval_clips", "eval_keep", "eval_steps", "eval_guidance", "data.eval", "data.cache_dir"}

    out_dir: str = "runs/tokenizer"
    model: str = "flex-tiny"
    optim: TokenizerOptimConfig = field(default_factory=TokenizerOptimConfig)
    stage: Literal["tokenizer", "decoder"] = "tokenizer"
    prefix_prob: float = 0.5
    data: DataConfig = field(default_factory=DataConfig)
    repa: RepaConfig = field(default_factory=RepaConfig)
    eval_clips: int = 4
    eval_keep: tuple[int, ...] = (1, 4, 16)
    eval_steps: int = 10
    eval_guidance: float = 1.0
    time_mean: float | None = None
    time_std: float | None = None
    decode_steps: int | None = None
    linear_code_clips: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("TrainConfig", "prefix_prob", self.prefix_prob, 0.0, 1.0)
        check_range("TrainConfig", "eval_guidance", self.eval_guidance, 0.0)
        for name in ("eval_clips", "eval_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig: {name} must be >= 1, got {getattr(self, name)}")
        if not self.eval_keep or min(self.eval_keep) < 1:
            raise ValueError(f"TrainConfig: eval_keep must list token counts >= 1, got {list(self.eval_keep)}")
        if self.time_mean is not None:
            check_range("TrainConfig", "time_mean", self.time_mean, -math.inf)
        if self.time_std is not None:
            check_range("TrainConfig", "time_std", self.time_std, 0.0, low_open=True)
        if self.linear_code_clips < 0 or self.linear_code_clips == 1:
            raise ValueError(f"TrainConfig: linear_code_clips must be 0 (off) or >= 2, got {self.linear_code_clips}")
        if self.linear_code_clips and not self.data.in_memory:
            raise ValueError("TrainConfig: linear_code_clips reads the in-memory clip cache; set data.in_memory: true")
        if self.decode_steps is not None and self.decode_steps < 1:
            raise ValueError(f"TrainConfig: decode_steps must be >= 1, got {self.decode_steps}")
        if not self.model:
            raise ValueError("TrainConfig: model must name a preset or a saved model folder")
        if self.repa.weight > 0 and self.data.latents:
            raise ValueError("TrainConfig: REPA's teacher reads the pixel clips; it cannot train from a latent "
                             "cache (data.latents)")


def load_train_config(path: str | Path | None, overrides: list[str] = ()) -> TokenizerTrainConfig:
    """A tokenizer recipe (YAML, ``base:`` inheritance, ``key=value`` overrides); see
    :func:`videoflex.train.config.load_config`."""
    return load_config(TokenizerTrainConfig, path, overrides)
