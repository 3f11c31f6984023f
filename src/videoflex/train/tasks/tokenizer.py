"""The tokenizer task (``videoflex train tokenizer``): today's draws, flow loss, REPA and evaluation.

It trains any flow tokenizer kind (:class:`~videoflex.tokenizers.chunked.ChunkedFlowTokenizer`: the flex
tokenizer, the grid tokenizer), whichever the recipe's ``model`` (a preset or a saved model) is. The trained
module (:class:`TokenizerStep`) takes a micro-batch of clips (uint8 ``[B,3,T,H,W]``) or of
cached VAE latents (``[B,C,t,h,w]``), encodes clips with the frozen VAE, and returns the flow loss of
the model's ``training_forward`` (plus ``repa.weight`` times the REPA loss of the decoder's patch
features, :mod:`videoflex.train.repa`, when REPA is on). Evaluation: PSNR/SSIM at a few token counts on
held-out clips and a comparison video and strip (a grid tokenizer, whose prefixes do not decode, at N only).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videoflex.data.config import DataConfig
from videoflex.tokenizers.chunked import ChunkedFlowTokenizer
from videoflex.tokenizers.training import TrainingDraws, draw_training
from videoflex.train.errors import CheckpointMismatch, RecipeError
from videoflex.train.repa import RepaHead, build_teacher, repa_loss, teacher_targets, teacher_width
from videoflex.train.sampler import seeded
from videoflex.train.task import StepOutput, Task, TaskModules, TrainData
from videoflex.train.tasks.tokenizer_config import RepaConfig, TokenizerTrainConfig
from videoflex.utils.dataclass_io import to_json


@dataclass(frozen=True)
class TokenizerDraws:
    """A step's draws: :class:`TrainingDraws` of the clips, and the seed of the VAE's posterior noise of
    each micro-batch (used only when the model samples the posterior)."""

    training: TrainingDraws
    seed: int
    step: int
    micro: int = 0  # the micro-batch's position in the global batch

    def select(self, part: slice) -> TokenizerDraws:
        size = part.stop - part.start
        return dataclasses.replace(self, training=self.training[part], micro=part.start // max(size, 1))

    def to(self, device: torch.device) -> TokenizerDraws:
        moved = TrainingDraws(*(getattr(self.training, f.name).to(device)
                                for f in dataclasses.fields(TrainingDraws)))
        return dataclasses.replace(self, training=moved)

    def posterior_generator(self) -> torch.Generator:
        return seeded(self.seed, self.step, 2 + self.micro)


class TokenizerStep(nn.Module):
    """What DDP/FSDP wrap: ``forward(batch, draws) -> StepOutput`` (``logged["repa"]``: the REPA loss).

    batch: uint8 clips ``[B,3,T,H,W]`` (``latents=False``) or float latents ``[B,C,t,h,w]``.
    With ``repa`` (and the teacher's width) it holds the REPA head; the frozen teacher is kept outside the
    module's parameters and state (it is never trained, sharded or saved).
    """

    def __init__(self, model: ChunkedFlowTokenizer, latents: bool, repa: RepaConfig | None = None,
                 teacher: nn.Module | None = None, teacher_channels: int = 0) -> None:
        super().__init__()
        self.model = model
        self.latents = latents
        self.repa = repa if repa is not None and repa.weight > 0 else None
        self._teacher = (teacher,)  # a tuple: not a sub-module
        if self.repa is not None:
            dec = model.config.decoder
            if self.repa.block > dec.depth:
                raise ValueError(f"repa.block {self.repa.block} > the decoder's {dec.depth} blocks")
            self.repa_head = RepaHead(dec.width, dec.head_dim, dec.mlp_hidden, self.repa.head_depth,
                                      teacher_channels)

    def forward(self, batch: torch.Tensor, draws: TokenizerDraws) -> StepOutput:
        video = None
        if self.latents:
            latents = batch.float()
        else:
            video = batch.float() / 127.5 - 1.0
            with torch.no_grad(), torch.autocast(video.device.type, enabled=False):
                latents = self.model.encode_video(video, draws.posterior_generator())
        if self.repa is None:
            return StepOutput(self.model.training_forward(latents, draws.training).loss)
        with torch.no_grad():
            features = self._teacher[0](video)
        out = self.model.training_forward(latents, draws.training, feature_block=self.repa.block)
        p = self.model.config.decoder.patch_size
        t, h, w = latents.shape[2:]
        target = teacher_targets(features, (t, h // p, w // p))
        in_loss = torch.arange(t, device=latents.device)[None, :] >= draws.training.prefix_steps[:, None]
        alignment = repa_loss(self.repa_head(out.features), target, in_loss)
        return StepOutput(out.loss + self.repa.weight * alignment, {"repa": alignment.detach()})


@dataclass(frozen=True)
class ModelChoice:
    """What a recipe's ``model`` names: the tokenizer class, the config to build (with the recipe's stage and
    flow-time settings applied) and, for a saved model, the folder whose weights it starts from."""

    model_class: type[ChunkedFlowTokenizer]
    config: Any
    source: Path | None


def _trainable_kinds() -> list[str]:
    from videoflex.registry import KINDS

    return sorted(name for name, kind in KINDS.items() if issubclass(kind.model_class, ChunkedFlowTokenizer))


def model_config_for(config: TokenizerTrainConfig) -> ModelChoice:
    """The tokenizer to train and, if ``config.model`` is a saved model, the folder to start from.

    Raises FileNotFoundError for a name that is neither a preset nor a saved model, ValueError for a
    preset or saved model of a kind this task does not train (not a flow tokenizer)."""
    from videoflex.models.pretrained import read_saved_model
    from videoflex.registry import KINDS, PRESETS

    if config.model in PRESETS:
        preset = PRESETS[config.model]
        model_class, source = preset.kind.model_class, None
        base = preset.config()
        if not issubclass(model_class, ChunkedFlowTokenizer):
            raise ValueError(f"{config.model}: a preset of kind {preset.kind.name!r}; this task trains "
                             f"{' and '.join(repr(k) for k in _trainable_kinds())} models")
    else:
        source = Path(config.model)
        if not source.exists():
            raise FileNotFoundError(f"{config.model}: neither a preset ({', '.join(PRESETS)}) nor a saved model")
        kind = read_saved_model(source).kind
        model_class = KINDS[kind].model_class if kind in KINDS else None
        if model_class is None or not issubclass(model_class, ChunkedFlowTokenizer):
            raise ValueError(f"{config.model}: a saved model of kind {kind!r}; this task trains "
                             f"{' and '.join(repr(k) for k in _trainable_kinds())} models")
        base = model_class.read_config(source)
    if config.stage == "decoder":  # second stage: full attention, first-frame conditioning
        base = dataclasses.replace(
            base,
            decoder=dataclasses.replace(base.decoder, attention="full"),
            loss=dataclasses.replace(base.loss, prefix_prob=config.prefix_prob, prefix_steps=1),
        )
    if config.time_mean is not None:
        base = dataclasses.replace(base, loss=dataclasses.replace(base.loss, time_mean=config.time_mean))
    if config.time_std is not None:
        base = dataclasses.replace(base, loss=dataclasses.replace(base.loss, time_std=config.time_std))
    if config.decode_steps is not None:
        base = dataclasses.replace(base, sampler=dataclasses.replace(base.sampler, steps=config.decode_steps))
    return ModelChoice(model_class, base, source)


def build_model(config: TokenizerTrainConfig, progress: bool = False) -> ChunkedFlowTokenizer:
    """The model a recipe trains: the preset (seeded by the caller; its linear paths fitted to the training
    clips with ``linear_code_clips``) or the saved model's weights."""
    choice = model_config_for(config)
    model = choice.model_class(choice.config)
    if choice.source is not None:
        model.load_state_dict(choice.model_class.from_pretrained(choice.source).state_dict())
    if config.linear_code_clips:
        _fit_linear_code(model, config, progress)
    model.vae.requires_grad_(False)
    if config.stage == "decoder":
        model.encoder.requires_grad_(False)
    return model


def linear_code_clips(config: TokenizerTrainConfig, progress: bool = False) -> torch.Tensor:
    """The clips a recipe's linear code is fitted to (``linear_code_clips``): a choice seeded by ``config.seed``
    of the cached training clips (the cache built if needed), uint8 ``[n,3,T,H,W]`` in cache order."""
    from videoflex.data.clip_cache import load_or_build_cache

    clips = load_or_build_cache(config.data, "train", progress).clips
    pick = torch.randperm(len(clips), generator=torch.Generator().manual_seed(config.seed))[:config.linear_code_clips]
    return clips[pick.sort().values]


def _fit_linear_code(model: ChunkedFlowTokenizer, config: TokenizerTrainConfig, progress: bool) -> None:
    """``linear_code_clips``: the linear paths from principal components of :func:`linear_code_clips`; prints
    what the code reaches."""
    from videoflex.tokenizers.flex.pca import fit_linear_paths

    clips = linear_code_clips(config, progress)
    fit = fit_linear_paths(model, clips, progress=progress)
    if progress:
        psnr = " / ".join(f"{v:.2f}" for v in fit.code_psnr_db.values())
        print(f"linear code from {len(clips)} clips: patch components keep {fit.patch_variance:.1%} of the variance, "
              f"step components {fit.step_variance:.1%}; k = {', '.join(map(str, fit.code_psnr_db))}: {psnr} dB")


def _stack(items: list[Any]) -> torch.Tensor:
    return torch.stack(items)


def _stack_latents(items: list[Any]) -> torch.Tensor:
    return torch.stack([item.latents for item in items])


class TokenizerTask(Task):
    """A flow tokenizer's training (see the module docstring).

    teacher: a frozen module for REPA in place of the one the recipe names (any module
        ``video [B,3,T,H,W] in [-1,1] -> [B,C,T',H',W']``), used only when ``config.repa.weight > 0``.
    """

    config: TokenizerTrainConfig

    def __init__(self, config: TokenizerTrainConfig, teacher: nn.Module | None = None) -> None:
        super().__init__(config)
        self.teacher = teacher
        self.model: ChunkedFlowTokenizer | None = None
        self.trainable: TokenizerStep | None = None
        self.latent_shape: tuple[int, int, int, int] | None = None
        self._eval_clips: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------ build

    def check(self) -> None:
        """Training data listed (``data.train`` or ``data.latents``), the model a preset or a saved flow
        tokenizer (its config readable; its weights are checked when :meth:`build` loads them), clips of the
        model's frame size and of at most one chunk (1 + tf*m frames), REPA's teacher weights present.
        Raises RecipeError."""
        config = self.config
        if not config.data.train and not config.data.latents:
            raise RecipeError("nothing to train on: data.train lists no sources and data.latents names no "
                              "latent cache")
        try:
            choice = model_config_for(config)
        except (ValueError, FileNotFoundError) as err:
            raise RecipeError(f"model: {err}") from None
        model_config = choice.config
        if config.linear_code_clips:
            from videoflex.tokenizers.flex.pca import linear_code_problem

            if choice.source is not None or linear_code_problem(model_config) is not None:
                raise RecipeError(f"linear_code_clips={config.linear_code_clips}: starts a flex preset whose decoder's "
                                  f"linear path reads codes (e.g. flex-demo-256) from principal components; "
                                  f"{config.model} is not one")
        if not config.data.latents:  # the clips must be what the model takes (a latent cache checks its own)
            size, tf = model_config.image_size, model_config.vae.temporal_factor
            if (config.data.size, config.data.size) != tuple(size):
                raise RecipeError(f"data.size={config.data.size}: model {config.model} takes {size[0]}x{size[1]} "
                                  f"frames; set data.size={size[0]} or choose a model of that size")
            if (config.data.frames - 1) % tf or config.data.frames > model_config.chunk_frames:
                raise RecipeError(f"data.frames={config.data.frames}: model {config.model} takes clips of 1 + {tf}*m "
                                  f"frames, at most {model_config.chunk_frames} (one chunk)")
        if config.repa.weight > 0 and self.teacher is None and config.repa.teacher_weights \
                and not Path(config.repa.teacher_weights).expanduser().is_file():
            raise RecipeError(f"repa.teacher_weights={config.repa.teacher_weights}: no such file")

    def build(self, device: torch.device) -> TaskModules:
        config = self.config
        try:
            model = build_model(config, progress=True).to(device)
        except (ValueError, FileNotFoundError) as err:  # a saved model whose weights do not fit its config
            raise RecipeError(f"model: {err}") from None
        teacher, channels = None, 0
        if config.repa.weight > 0:
            try:
                teacher = self.teacher if self.teacher is not None else build_teacher(config.repa, device)
            except ValueError as err:  # a teacher weights file that is not one
                raise RecipeError(f"repa: {err}") from None
            teacher = teacher.to(device).eval().requires_grad_(False)
            channels = teacher_width(teacher, config.data.frames, config.data.size, device)
        try:
            trainable = TokenizerStep(model, bool(config.data.latents), config.repa, teacher, channels).to(device)
        except ValueError as err:  # repa.block beyond the decoder
            raise RecipeError(str(err)) from None
        self.model, self.trainable = model, trainable
        self.latent_shape = self._latent_shape(model, config.data)
        return TaskModules(model, trainable, [*model.encoder.blocks, *model.decoder.blocks])

    @staticmethod
    def _latent_shape(model: ChunkedFlowTokenizer, data: DataConfig) -> tuple[int, int, int, int]:
        if data.latents:
            from videoflex.data.latent_cache import read_latent_index

            return tuple(read_latent_index(data.latents).latent_shape)
        vae = model.vae
        return (vae.latent_channels, vae.latent_steps(data.frames), data.size // vae.spatial_factor,
                data.size // vae.spatial_factor)

    def model_config(self) -> str:
        return to_json(self.model.config)

    def check_checkpoint(self, keys: set[str], source: Path) -> None:
        has_head = any(key.startswith("repa_head.") for key in keys)
        if has_head != (self.config.repa.weight > 0):
            raise CheckpointMismatch(f"{source}: checkpoint of a run {'with' if has_head else 'without'} REPA; "
                                     f"this run has repa.weight {self.config.repa.weight}")

    def param_groups(self, named: list[tuple[str, nn.Parameter]]) -> list[dict[str, Any]]:
        """AdamW groups: weight decay on the weights of linear layers only (not on biases, learned tokens,
        positions or registers); the encoder at ``optim.encoder_lr_scale`` times the learning rate. One group
        per (weight decay, learning rate), decaying parameters first, each in model order."""
        o = self.config.optim
        linear = {id(m.weight) for m in self.trainable.modules() if isinstance(m, nn.Linear)}
        groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
        for n, p in sorted(named, key=lambda item: id(item[1]) not in linear):  # stable: model order
            lr = o.lr * (o.encoder_lr_scale if n.startswith("model.encoder.") else 1.0)
            groups.setdefault((id(p) in linear, lr), []).append(p)
        return [{"params": params, "weight_decay": o.weight_decay if decay else 0.0, "lr": lr}
                for (decay, lr), params in groups.items()]

    # ------------------------------------------------------------------------------------------- data

    def prepare_data(self, progress: bool) -> None:
        from videoflex.data.clip_cache import load_or_build_cache

        data = self.config.data
        if data.in_memory and not data.latents:
            load_or_build_cache(data, "train", progress)
        if data.eval:
            self._eval_clips = self._read_eval(progress)

    def _read_eval(self, progress: bool) -> torch.Tensor:
        from videoflex.data.clip_cache import load_or_build_cache
        from videoflex.data.sources import SourceClips

        data = self.config.data
        if data.in_memory:
            clips = load_or_build_cache(data, "eval", progress).clips
            return clips[:min(self.config.eval_clips, len(clips))]
        dataset = SourceClips(data, "eval")
        return torch.stack([dataset[i] for i in range(min(self.config.eval_clips, len(dataset)))])

    def train_data(self, progress: bool) -> TrainData:
        data = self.config.data
        if data.latents:
            from videoflex.data.latent_cache import LatentCacheDataset

            return TrainData(LatentCacheDataset(data.latents, vae=self.model.vae), _stack_latents)
        if data.in_memory:
            from videoflex.data.clip_cache import load_or_build_cache

            return TrainData(load_or_build_cache(data, "train", False), _stack, in_memory=True)
        from videoflex.data.sources import SourceClips

        return TrainData(SourceClips(data, "train"), _stack)

    def draws(self, step: int, batch_size: int) -> TokenizerDraws:
        model = self.model
        training = draw_training(model.config.loss, model.layout.tokens_per_step, (batch_size, *self.latent_shape),
                                 seeded(self.config.seed, step, 1))
        return TokenizerDraws(training, self.config.seed, step)

    # ------------------------------------------------------------------------------------ export, eval

    def export(self, weights: dict[str, torch.Tensor]) -> ChunkedFlowTokenizer:
        model = type(self.model)(self.model.config)
        model.load_state_dict({key.removeprefix("model."): value for key, value in weights.items()
                               if key.startswith("model.")})
        return model.eval()

    @property
    def has_eval(self) -> bool:
        return bool(self.config.data.eval)

    @torch.no_grad()
    def evaluate(self, model: ChunkedFlowTokenizer, step: int, out: Path) -> dict[str, float]:
        """Held-out reconstruction quality (PSNR, SSIM) at each token count of ``eval_keep`` (a model whose
        prefixes do not decode, the grid tokenizer: at N only); writes a comparison video and PNG strip under
        ``out/samples``."""
        from videoflex.eval.metrics import video_metrics
        from videoflex.io.compare import write_comparison

        config = self.config
        if self._eval_clips is None:
            self._eval_clips = self._read_eval(False)
        clips = self._eval_clips.float() / 127.5 - 1.0
        ids = model.tokenize(clips)
        results, recon = {}, {}
        n = model.layout.tokens_per_step
        keeps = sorted(k for k in set(config.eval_keep) if k <= n) if model.layout.prefix_decodable else [n]
        for keep in keeps:
            video = model.detokenize(ids, keep=keep, steps=config.eval_steps, guidance=config.eval_guidance,
                                     num_frames=clips.shape[2], generator=seeded(config.seed, step, 99))
            m = video_metrics((video + 1) / 2, (clips + 1) / 2)
            results[f"psnr_k{keep}"] = float(m.psnr.mean())
            results[f"ssim_k{keep}"] = float(m.ssim.mean())
            recon[f"k={keep}"] = video[0]
        samples = out / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        write_comparison(clips[0], recon, config.data.fps, video_path=samples / f"step_{step:08d}.mp4",
                         strip_path=samples / f"step_{step:08d}.png")
        return results


def train_tokenizer(config: TokenizerTrainConfig, resume: bool = False, progress: bool = True,
                    teacher: nn.Module | None = None, allow_recipe_change: bool = False) -> Path:
    """Train (or continue) a flow tokenizer (flex or grid); returns the folder of the exported EMA model (see
    :func:`videoflex.train.loop.train` for ``allow_recipe_change`` and the errors raised)."""
    from videoflex.train.loop import train

    return train(TokenizerTask(config, teacher), resume=resume, progress=progress,
                 allow_recipe_change=allow_recipe_change)
