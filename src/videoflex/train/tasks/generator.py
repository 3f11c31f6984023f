"""The autoregressive generator task (``videoflex train generator``): next-id training on a token dataset.

The data is a token dataset (:mod:`videoflex.data.token_shards`: ids ``[t, k]`` of a tokenizer, class labels,
captions). The model's vocabulary, ids per step, steps, class names and tokenizer come from the dataset; its
size and order from the preset (:mod:`videoflex.generators.ar.presets`). The trained module
(:class:`GeneratorStep`) takes a :class:`TokenBatch` and returns the mean next-id cross-entropy; the step's
draws (:class:`GeneratorDraws`) are the clips whose condition is dropped (for classifier-free guidance) and,
with ``nested``, the step's budget. Evaluation: the next-id loss on held-out token clips (``val_loss``) and
samples decoded by the tokenizer (a PNG grid and an mp4 per evaluation under ``OUT/samples``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videoflex.data.token_shards import (
    TokenSample,
    TokenShardDataset,
    TokenShardError,
    TokenShardInfo,
    read_token_index,
)
from videoflex.generators.ar.config import ARConfig, TokenizerRef
from videoflex.generators.ar.model import ARGenerator
from videoflex.generators.text_encoder import TextEncoder, TextFeatures
from videoflex.models.identity import ModelIdentity
from videoflex.models.pretrained import PretrainedModel
from videoflex.nn.flow import nested_budgets
from videoflex.train.errors import CheckpointMismatch, RecipeError
from videoflex.train.sampler import seeded
from videoflex.train.task import StepOutput, Task, TaskModules, TrainData
from videoflex.train.tasks.generator_config import GeneratorTrainConfig
from videoflex.utils.dataclass_io import to_json

DROP_STREAM = 1  # seeded(seed, step, stream) streams of this task's draws
BUDGET_STREAM = 2


@dataclass(frozen=True)
class TokenBatch:
    """A micro-batch of token clips: ids ``[B, t, k]`` int64, labels ``[B]`` int64 (-1 = none), captions."""

    ids: torch.Tensor
    labels: torch.Tensor
    captions: tuple[str | None, ...]

    def to(self, device: torch.device) -> TokenBatch:
        return dataclasses.replace(self, ids=self.ids.to(device), labels=self.labels.to(device))


def collate_tokens(items: list[TokenSample]) -> TokenBatch:
    """Token samples (of one dataset: equal ``[t, k]``) -> a :class:`TokenBatch`."""
    return TokenBatch(torch.stack([item.ids for item in items]),
                      torch.tensor([item.label for item in items], dtype=torch.int64),
                      tuple(item.caption for item in items))


@dataclass(frozen=True)
class GeneratorDraws:
    """A step's draws: ``drop [B]`` bool, the clips whose condition becomes the null condition; ``budget``,
    the ids per step trained on at this step."""

    drop: torch.Tensor
    budget: int

    def select(self, part: slice) -> GeneratorDraws:
        return dataclasses.replace(self, drop=self.drop[part])

    def to(self, device: torch.device) -> GeneratorDraws:
        return dataclasses.replace(self, drop=self.drop.to(device))


class GeneratorStep(nn.Module):
    """What DDP/FSDP wrap: ``forward(batch, draws) -> StepOutput`` (the next-id cross-entropy of the first
    ``draws.budget`` ids of each step). The frozen text encoder (text models) is kept outside the module's
    parameters and state: it is never trained, sharded or saved."""

    CACHE_LIMIT = 65536  # captions whose features are kept (a caption dataset repeats its captions)

    def __init__(self, model: ARGenerator, text_encoder: TextEncoder | None = None) -> None:
        super().__init__()
        self.model = model
        self._text_encoder = (text_encoder,)  # a tuple: not a sub-module
        self._features: dict[str, TextFeatures] = {}

    def encode(self, captions: tuple[str | None, ...], device: torch.device) -> TextFeatures:
        """The frozen encoder's features of ``captions`` (None = the empty prompt), each caption encoded once
        and kept on the CPU (features padded to the encoder's ``max_tokens``, so rows stack)."""
        prompts = [caption or "" for caption in captions]
        new = sorted(set(prompts) - self._features.keys())
        if new:
            if len(self._features) + len(new) > self.CACHE_LIMIT:
                self._features.clear()
            encoded = self._text_encoder[0].encode(new).to("cpu")
            self._features.update((prompt, encoded[i:i + 1]) for i, prompt in enumerate(new))
        return TextFeatures.cat([self._features[prompt] for prompt in prompts]).to(device)

    def forward(self, batch: TokenBatch, draws: GeneratorDraws) -> StepOutput:
        c = self.model.config
        ids = batch.ids[:, :, :draws.budget]
        labels = batch.labels if c.num_classes else None
        text = self.encode(batch.captions, ids.device) if self._text_encoder[0] is not None else None
        return StepOutput(self.model.training_loss(ids, labels, text=text, drop=draws.drop))


class GeneratorTask(Task):
    """The generator's training (see the module docstring)."""

    config: GeneratorTrainConfig

    def __init__(self, config: GeneratorTrainConfig) -> None:
        super().__init__(config)
        self.model: ARGenerator | None = None
        self.text_encoder: TextEncoder | None = None
        self._info: TokenShardInfo | None = None
        self._tokenizer: PretrainedModel | None = None

    # ------------------------------------------------------------------------------------------ build

    def data_info(self) -> TokenShardInfo:
        """The training token dataset's index (read once); :class:`RecipeError` if it is missing or broken."""
        if self._info is None:
            if not self.config.data:
                raise RecipeError("nothing to train on: data must name a token dataset (videoflex "
                                  "tokenize-dataset -o DIR)")
            try:
                self._info = read_token_index(self.config.data)
            except (TokenShardError, ValueError, FileNotFoundError) as err:
                raise RecipeError(f"data: {err}") from None
        return self._info

    def budget(self, info: TokenShardInfo) -> int:
        budget = self.config.budget or info.tokens_per_step
        if budget > info.tokens_per_step:
            raise RecipeError(f"budget={budget}: the token dataset has {info.tokens_per_step} ids per step")
        return budget

    def model_config_for(self) -> tuple[ARConfig, Path | None]:
        """The generator's config (the preset's size with the data's vocabulary, budget, steps, classes and
        tokenizer; or a saved generator's) and the folder to start from. Raises RecipeError."""
        from videoflex.registry import PRESETS

        config, info = self.config, self.data_info()
        tokenizer = TokenizerRef.from_identity(info.tokenizer, config.tokenizer)
        if config.model in PRESETS:
            preset = PRESETS[config.model]
            if preset.kind.model_class is not ARGenerator:
                raise RecipeError(f"model: {config.model} is a preset of kind {preset.kind.name!r}; this task "
                                  f"trains {ARGenerator.kind!r} models")
            base: ARConfig = preset.config()
            classes = info.class_names or () if config.condition == "class" else ()
            if config.condition == "class" and not classes:
                raise RecipeError(f"condition class: the token dataset {config.data} has no class names "
                                  "(choose condition: none or text, or a labelled source)")
            changes: dict[str, Any] = {
                "vocab_size": info.codebook_size, "tokens_per_step": self.budget(info),
                "max_steps": info.token_steps, "num_classes": len(classes), "class_names": tuple(classes),
                "tokenizer": tokenizer, "text_encoder": "", "text_dim": 0, "fps": info.fps}
            if config.condition == "text":
                changes.update(text_encoder=config.text_encoder, text_dim=self.load_text_encoder(
                    config.text_encoder, base.text_max_tokens).dim)
            if config.order:
                changes["order"] = config.order
            if config.guidance_dropout >= 0:
                changes["guidance_dropout"] = config.guidance_dropout
            try:
                return dataclasses.replace(base, **changes), None
            except ValueError as err:
                raise RecipeError(f"model: {err}") from None
        source = Path(config.model)
        if not source.exists():
            raise RecipeError(f"model: {config.model}: neither a preset ({', '.join(PRESETS)}) nor a saved model")
        try:
            saved = ARGenerator.read_config(source)
        except ValueError as err:
            raise RecipeError(f"model: {err}") from None
        if saved.tokenizer.identity is not None and not saved.tokenizer.identity.same_model(info.tokenizer):
            raise RecipeError(f"model: {source} was trained on ids of {saved.tokenizer.identity}; the data holds "
                              f"ids of {info.tokenizer}")
        if saved.vocab_size != info.codebook_size or saved.tokens_per_step < self.budget(info) \
                or saved.max_steps < info.token_steps:
            raise RecipeError(f"model: {source} models {saved.max_steps} steps x {saved.tokens_per_step} ids of "
                              f"{saved.vocab_size} codes; the data has {info.token_steps} x "
                              f"{info.tokens_per_step} of {info.codebook_size}")
        return saved, source

    def load_text_encoder(self, spec: str, max_tokens: int) -> TextEncoder:
        """The frozen text encoder ``spec`` giving ``max_tokens`` features per prompt (loaded once)."""
        current = self.text_encoder
        if current is None or (current.spec, current.max_tokens) != (spec, max_tokens):
            try:
                self.text_encoder = TextEncoder.load(spec, max_tokens=max_tokens)
            except (ValueError, FileNotFoundError, ImportError) as err:
                raise RecipeError(f"text_encoder: {err}") from None
        return self.text_encoder

    def check(self) -> None:
        """A readable, complete token dataset made by ``tokenizer`` (when given); a preset or saved generator
        that fits it; labels or captions for the condition. Raises RecipeError."""
        config = self.config
        info = self.data_info()
        if not info.complete:
            raise RecipeError(f"data: {config.data} is incomplete ({info.clips_done} of {info.num_clips} clips); "
                              "finish it with videoflex tokenize-dataset --resume")
        if config.tokenizer:
            identity = self.tokenizer_identity()
            if not identity.same_model(info.tokenizer):
                raise RecipeError(f"tokenizer: {config.tokenizer} is {identity}; the token dataset {config.data} "
                                  f"was made by {info.tokenizer}")
        if config.eval_data:
            try:
                held = read_token_index(config.eval_data)
            except (TokenShardError, ValueError, FileNotFoundError) as err:
                raise RecipeError(f"eval_data: {err}") from None
            if not held.tokenizer.same_model(info.tokenizer) or held.token_steps != info.token_steps:
                raise RecipeError(f"eval_data: {config.eval_data} holds {held.token_steps} steps of ids of "
                                  f"{held.tokenizer}; data holds {info.token_steps} of {info.tokenizer}")
        self.model_config_for()

    def tokenizer_identity(self) -> ModelIdentity:
        return self.load_tokenizer().identity

    def load_tokenizer(self) -> PretrainedModel:
        """The recipe's tokenizer (a saved model folder or preset), on the CPU; RecipeError if unreadable."""
        from videoflex.registry import load_model

        try:
            return load_model(self.config.tokenizer)
        except (ValueError, FileNotFoundError) as err:
            raise RecipeError(f"tokenizer: {err}") from None

    def build(self, device: torch.device) -> TaskModules:
        model_config, source = self.model_config_for()
        model = ARGenerator(model_config)
        if source is not None:
            try:
                model.load_state_dict(ARGenerator.from_pretrained(source).state_dict())
            except (ValueError, FileNotFoundError) as err:
                raise RecipeError(f"model: {err}") from None
        model = model.to(device)
        encoder = None
        if model_config.text_encoder:
            encoder = self.load_text_encoder(model_config.text_encoder, model_config.text_max_tokens).to(device)
        self.model = model
        return TaskModules(model, GeneratorStep(model, encoder), list(model.blocks))

    def model_config(self) -> str:
        return to_json(self.model.config)

    def check_checkpoint(self, keys: set[str], source: Path) -> None:
        theirs = {key for key in keys if key.startswith("model.")}
        ours = {f"model.{key}" for key in self.model.state_dict()}
        if theirs != ours:
            raise CheckpointMismatch(f"{source}: its generator has other parameters than this run's "
                                     f"({len(theirs ^ ours)} differ)")

    def param_groups(self, named: list[tuple[str, nn.Parameter]]) -> list[dict[str, Any]]:
        """AdamW groups: weight decay on matrices of linear layers only (not on embeddings or norms)."""
        o = self.config.optim
        linear = {id(m.weight) for m in self.model.modules() if isinstance(m, nn.Linear)}
        decay = [p for _, p in named if id(p) in linear]
        rest = [p for _, p in named if id(p) not in linear]
        return [group for group in ({"params": decay, "weight_decay": o.weight_decay},
                                    {"params": rest, "weight_decay": 0.0}) if group["params"]]

    # ------------------------------------------------------------------------------------------- data

    def dataset(self, root: str) -> TokenShardDataset:
        try:
            return TokenShardDataset(root, tokenizer_identity=self.data_info().tokenizer)
        except (TokenShardError, ValueError) as err:
            raise RecipeError(f"{root}: {err}") from None

    def train_data(self, progress: bool) -> TrainData:
        return TrainData(self.dataset(self.config.data), collate_tokens)

    def draws(self, step: int, batch_size: int) -> GeneratorDraws:
        c = self.model.config
        drop = torch.rand(batch_size, generator=seeded(self.config.seed, step, DROP_STREAM)) < c.guidance_dropout
        budget = c.tokens_per_step
        if self.config.nested:
            choices = nested_budgets(budget)
            pick = torch.randint(len(choices), (1,), generator=seeded(self.config.seed, step, BUDGET_STREAM))
            budget = choices[int(pick)]
        return GeneratorDraws(drop, budget)

    # ------------------------------------------------------------------------------------ export, eval

    def export(self, weights: dict[str, torch.Tensor]) -> ARGenerator:
        model = ARGenerator(self.model.config)
        model.load_state_dict({key.removeprefix("model."): value for key, value in weights.items()
                               if key.startswith("model.")})
        return model.eval()

    @property
    def has_eval(self) -> bool:
        return bool(self.config.eval_data) or (bool(self.config.tokenizer) and self.config.eval_samples > 0)

    @torch.no_grad()
    def validation_loss(self, model: ARGenerator, batch_size: int = 64) -> float:
        """Mean next-id cross-entropy (nats) over every clip of ``eval_data``, no condition dropped."""
        dataset = self.dataset(self.config.eval_data)
        step = GeneratorStep(model, self.text_encoder if model.config.text_encoder else None)
        total, count = 0.0, 0
        for start in range(0, len(dataset), batch_size):
            batch = collate_tokens([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            draws = GeneratorDraws(torch.zeros(len(batch.captions), dtype=torch.bool), model.config.tokens_per_step)
            loss = step(batch, draws).loss
            total += float(loss) * len(batch.captions)
            count += len(batch.captions)
        return total / count

    def sample_conditions(self, model: ARGenerator) -> list:
        """The conditions evaluation samples: the first classes, or the first distinct captions of
        ``eval_data`` (else ``data``); none for an unconditional model."""
        from videoflex.eval.generation import Condition

        c, n = model.config, self.config.eval_samples
        if c.num_classes:
            names = c.class_names or tuple(str(i) for i in range(c.num_classes))
            return [Condition(names[i], label=i) for i in range(min(n, c.num_classes))]
        if not c.has_text:
            return []
        dataset = self.dataset(self.config.eval_data or self.config.data)
        prompts: list[str] = []
        for i in range(len(dataset)):
            caption = dataset[i].caption
            if caption and caption not in prompts:
                prompts.append(caption)
                if len(prompts) == n:
                    break
        return [Condition(prompt, prompt=prompt) for prompt in prompts]

    def write_samples(self, model: ARGenerator, step: int, out: Path) -> Path | None:
        """Sample ``eval_samples`` clips (seeded by the recipe's seed), decode them with ``tokenizer`` and write
        ``out/samples/step_*.png`` (one row per condition); None when there is nothing to sample."""
        from videoflex.eval.generation import generate_set, save_sample_grid
        from videoflex.generators.ar.sampling import SamplingConfig

        conditions = self.sample_conditions(model)
        if not conditions or not self.config.tokenizer:
            return None
        if self._tokenizer is None:
            self._tokenizer = self.load_tokenizer().eval()
        c = model.config
        sampling = SamplingConfig(temperature=self.config.eval_temperature, top_k=self.config.eval_top_k,
                                  cfg_scale=self.config.eval_cfg)
        encode = None
        if c.has_text:
            encoder = self.load_text_encoder(c.text_encoder, c.text_max_tokens)
            encode = encoder.encode
        per = max(1, self.config.eval_samples // len(conditions))
        generated = generate_set(model, self._tokenizer, conditions, per, c.max_steps, c.tokens_per_step, sampling,
                                 self.config.seed, encode)
        (out / "samples").mkdir(parents=True, exist_ok=True)
        return save_sample_grid(out / "samples" / f"step_{step:08d}.png", generated, samples=min(per, 2),
                                title=f"{c.name} at step {step}, CFG {self.config.eval_cfg:g}")

    def evaluate(self, model: ARGenerator, step: int, out: Path) -> dict[str, float]:
        """``val_loss`` on ``eval_data`` (when given) and a grid of samples (when ``tokenizer`` is given)."""
        results: dict[str, float] = {}
        if self.config.eval_data:
            results["val_loss"] = self.validation_loss(model)
        self.write_samples(model, step, out)
        return results


def train_generator(config: GeneratorTrainConfig, resume: bool = False, progress: bool = True,
                    allow_recipe_change: bool = False) -> Path:
    """Train (or continue) an autoregressive generator; returns the folder of the exported EMA model (see
    :func:`videoflex.train.loop.train` for ``allow_recipe_change`` and the errors raised)."""
    from videoflex.train.loop import train

    return train(GeneratorTask(config), resume=resume, progress=progress, allow_recipe_change=allow_recipe_change)
