"""The tokenizer trainer: one readable loop, from a CPU process to torchrun on GPUs.

Every random choice of step ``s`` (which clips, nested-dropout budgets, flow times, noise) comes from
generators seeded by ``(seed, s)``, drawn for the whole global batch and sliced per process and
micro-batch. So a run resumed from a checkpoint continues exactly as if never interrupted, and N
processes with a global batch G train the same model as one process with G.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from videoflex.tokenizers.flex.config import TokenizerConfig
from videoflex.tokenizers.flex.model import TrainingDraws, VideoFlexTok, draw_training
from videoflex.tokenizers.flex.presets import PRESETS
from videoflex.train import distributed
from videoflex.train.checkpoint import TrainingState, list_checkpoints, load_checkpoint, save_checkpoint
from videoflex.train.clip_cache import ClipCache, LatentTensorCache, load_latent_cache, load_or_build_cache
from videoflex.train.config import RepaConfig, TrainConfig, config_to_yaml
from videoflex.train.repa import (
    RepaHead,
    build_teacher,
    repa_loss,
    teacher_targets,
    teacher_width,
)
from videoflex.train.run_log import RunLog
from videoflex.train.schedule import lr_at, update_ema
from videoflex.utils.dataclass_io import from_dict, to_json


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class CheckpointMismatch(ValueError):
    """A checkpoint belongs to another model configuration."""


def seeded(seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU generator for one purpose (``stream``) at one step."""
    return torch.Generator().manual_seed(hash((seed, step, stream)) & (2**63 - 1))


class TrainStep(nn.Module):
    """The module that DDP/FSDP wraps: ``forward(latents, draws[, teacher features]) -> (loss, REPA loss)``
    (the second detached, for the log; zero without REPA).

    With ``repa`` (and the teacher's width) it holds the REPA head and adds ``repa.weight`` times the
    REPA loss of the decoder's patch features after block ``repa.block`` (``videoflex.train.repa``).
    """

    def __init__(self, model: VideoFlexTok, repa: RepaConfig | None = None, teacher_channels: int = 0) -> None:
        super().__init__()
        self.model = model
        self.repa = repa if repa is not None and repa.weight > 0 else None
        if self.repa is not None:
            dec = model.config.decoder
            if self.repa.block > dec.depth:
                raise ValueError(f"repa.block {self.repa.block} > the decoder's {dec.depth} blocks")
            self.repa_head = RepaHead(dec.width, dec.head_dim, dec.mlp_hidden, self.repa.head_depth,
                                      teacher_channels)

    def forward(self, latents: torch.Tensor, draws: TrainingDraws,
                teacher_features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.repa is None:
            loss = self.model.training_forward(latents, draws).loss
            return loss, torch.zeros((), device=loss.device)
        out = self.model.training_forward(latents, draws, feature_block=self.repa.block)
        loss, patches = out.loss, out.features  # patches [B,t,L,D]
        p = self.model.config.decoder.patch_size
        t, h, w = latents.shape[2:]
        target = teacher_targets(teacher_features, (t, h // p, w // p))
        in_loss = torch.arange(t, device=latents.device)[None, :] >= draws.prefix_steps[:, None]
        alignment = repa_loss(self.repa_head(patches), target, in_loss)
        return loss + self.repa.weight * alignment, alignment.detach()


def model_config_for(config: TrainConfig) -> tuple[TokenizerConfig, Path | None]:
    """The architecture to train and, if ``config.model`` is a saved model, the folder to start from."""
    if config.model in PRESETS:
        base, source = PRESETS[config.model](), None
    else:
        source = Path(config.model)
        from videoflex.tokenizers.flex.model import WEIGHTS_NAME, read_config

        file = source / WEIGHTS_NAME if source.is_dir() else source
        if not file.is_file():
            raise FileNotFoundError(f"{config.model}: neither a preset ({', '.join(PRESETS)}) nor a saved model")
        base = read_config(file)
    if config.stage == "decoder":  # second stage: full attention, first-frame conditioning
        base = dataclasses.replace(
            base,
            decoder=dataclasses.replace(base.decoder, attention="full"),
            loss=dataclasses.replace(base.loss, prefix_prob=config.prefix_prob, prefix_steps=1),
        )
    return base, source


def build_model(config: TrainConfig) -> VideoFlexTok:
    model_config, source = model_config_for(config)
    model = VideoFlexTok(model_config)
    if source is not None:
        model.load_state_dict(VideoFlexTok.from_pretrained(source).state_dict())
    model.vae.requires_grad_(False)
    if config.stage == "decoder":
        model.encoder.requires_grad_(False)
    return model


def apply_activation_checkpointing(model: VideoFlexTok) -> None:
    """Recompute every transformer block in the backward pass instead of storing its activations."""
    for block in [*model.encoder.blocks, *model.decoder.blocks]:
        block.forward = functools.partial(checkpoint, type(block).forward.__get__(block), use_reentrant=False)


@dataclass
class Run:
    """What the loop carries: the modules, the optimiser and where files go."""

    config: TrainConfig
    ctx: distributed.DistributedContext
    model: VideoFlexTok
    step_module: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    teacher: nn.Module | None  # the frozen REPA teacher (None without REPA)
    params: list[torch.Tensor]
    ema: list[torch.Tensor]
    names: list[str]
    out: Path

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"


def _make_optimizer(config: TrainConfig, named: list[tuple[str, nn.Parameter]],
                    linear_weights: set[int]) -> torch.optim.Optimizer:
    """AdamW; weight decay on the weights of linear layers only (``linear_weights``: their ``id``s), not
    on biases, learned tokens, positions or registers; the encoder at ``optim.encoder_lr_scale`` times
    the learning rate. One group per (weight decay, learning rate), decaying parameters first.
    """
    o = config.optim
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for n, p in sorted(named, key=lambda item: id(item[1]) not in linear_weights):  # stable: model order
        lr = o.lr * (o.encoder_lr_scale if n.startswith("encoder.") else 1.0)
        groups.setdefault((id(p) in linear_weights, lr), []).append(p)
    return torch.optim.AdamW([{"params": params, "weight_decay": o.weight_decay if decay else 0.0, "lr": lr}
                              for (decay, lr), params in groups.items()], lr=o.lr, betas=o.betas)


def setup(config: TrainConfig, teacher: nn.Module | None = None) -> Run:
    """Build the run; ``teacher`` replaces the REPA teacher the recipe names (any frozen module
    ``video [B,3,T,H,W] -> [B,C,T',H',W']``), used only when ``config.repa.weight > 0``."""
    ctx = distributed.init_distributed(config.device)
    torch.manual_seed(config.seed)
    model = build_model(config).to(ctx.device)
    if config.activation_checkpointing:
        apply_activation_checkpointing(model)
    channels = 0
    if config.repa.weight > 0:
        if teacher is None:
            teacher = build_teacher(config.repa, ctx.device)
        teacher = teacher.to(ctx.device).eval().requires_grad_(False)
        channels = teacher_width(teacher, config.data.frames, config.data.size, ctx.device)
    else:
        teacher = None
    trained = TrainStep(model, config.repa, channels).to(ctx.device)
    blocks = [*model.encoder.blocks, *model.decoder.blocks]
    step_module = distributed.wrap(trained, blocks, ctx, config.parallel)
    named = [(n.removeprefix("model."), p) for n, p in trained.named_parameters() if p.requires_grad]
    linear_weights = {id(m.weight) for m in trained.modules() if isinstance(m, nn.Linear)}
    optimizer = _make_optimizer(config, named, linear_weights)
    o = config.optim
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, config.steps, o.warmup_steps, o.min_lr_ratio))
    params = [p for _, p in named]
    ema = [p.detach().clone().float() for p in params]
    return Run(config, ctx, model, step_module, optimizer, scheduler, teacher, params, ema, [n for n, _ in named],
               Path(config.out_dir))


# ----------------------------------------------------------------------------------------------- state

def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def training_state(run: Run, step: int) -> TrainingState:
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(run.step_module, options=options)
    optim_state = get_optimizer_state_dict(run.step_module, run.optimizer, options=options)
    ema = {n: _full(e).detach().cpu() for n, e in zip(run.names, run.ema)}
    return TrainingState(step, model_state, ema, optim_state, run.scheduler.state_dict(), torch.get_rng_state(),
                         to_json(run.model.config), config_to_yaml(run.config))


def restore(run: Run, state: TrainingState, source: Path) -> None:
    has_head = any(key.startswith("repa_head.") for key in state.model)
    if has_head != (run.teacher is not None):
        raise CheckpointMismatch(f"{source}: checkpoint of a run {'with' if has_head else 'without'} REPA; "
                                 f"this run has repa.weight {run.config.repa.weight}")
    if state.model_config != to_json(run.model.config):
        theirs = from_dict(TokenizerConfig, json.loads(state.model_config))
        raise CheckpointMismatch(
            f"{source}: checkpoint of model {theirs.name!r} with a different configuration than this run's "
            f"{run.model.config.name!r}; use another out_dir or the matching config")
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(run.step_module, state.model, options=options)
    set_optimizer_state_dict(run.step_module, run.optimizer, state.optimizer, options=options)
    run.scheduler.load_state_dict(state.scheduler)
    torch.set_rng_state(state.rng)
    with torch.no_grad():
        for name, e in zip(run.names, run.ema):
            full = state.ema[name].to(e.device)
            if hasattr(e, "full_tensor"):  # a sharded (FSDP) EMA tensor: keep this rank's shard
                from torch.distributed.tensor import distribute_tensor

                full = distribute_tensor(full, e.device_mesh, e.placements)
            e.copy_(full)


def ema_model(state: TrainingState) -> VideoFlexTok:
    """A plain model holding a checkpoint's EMA weights (frozen parts from its model state)."""
    model = VideoFlexTok(from_dict(TokenizerConfig, json.loads(state.model_config)))
    weights = {key: state.ema.get(key, state.model.get(f"model.{key}")) for key in model.state_dict()}
    model.load_state_dict(weights)
    return model.eval()


# ----------------------------------------------------------------------------------------------- loop

def micro_batches(config: TrainConfig, ctx: distributed.DistributedContext) -> list[slice]:
    """Slices of the global batch this process handles, one per accumulation micro-batch."""
    per_rank, rem = divmod(config.batch_size, ctx.world_size)
    if rem or per_rank % config.grad_accum:
        raise ValueError(f"batch_size {config.batch_size} must split evenly over {ctx.world_size} processes "
                         f"x {config.grad_accum} accumulation steps")
    size = per_rank // config.grad_accum
    start = ctx.rank * per_rank
    return [slice(start + i * size, start + (i + 1) * size) for i in range(config.grad_accum)]


def train_step(run: Run, cache: ClipCache | LatentTensorCache, step: int) -> tuple[float, float]:
    """One optimiser step; returns the global mean loss and its REPA part (unweighted; 0 without REPA)."""
    config, model, device = run.config, run.model, run.ctx.device
    g = config.batch_size
    indices = torch.randint(len(cache), (g,), generator=seeded(config.seed, step, 0))
    latent_shape = (g, *cache.latent_shape(model.vae))
    draws = draw_training(model.config.loss, model.num_registers, latent_shape, seeded(config.seed, step, 1))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    total = torch.zeros(2, device=device)  # the loss, the REPA loss
    slices = micro_batches(config, run.ctx)
    for i, part in enumerate(slices):
        latents = cache.latents(indices[part], model, seeded(config.seed, step, 2 + i))
        part_draws = TrainingDraws(*(getattr(draws[part], f.name).to(device)
                                     for f in dataclasses.fields(TrainingDraws)))
        sync_now = i == len(slices) - 1 or not hasattr(run.step_module, "no_sync")
        context = run.step_module.no_sync() if not sync_now else contextlib.nullcontext()
        with context, autocast:
            features = None
            if run.teacher is not None:
                with torch.no_grad():
                    features = run.teacher(cache.batch(indices[part]).to(device))
            loss, alignment = run.step_module(latents, part_draws, features)
            (loss / len(slices)).backward()
        total += torch.stack([loss.detach(), alignment]) / len(slices)
    value, alignment = distributed.mean_across(total, run.ctx).tolist()
    if not math.isfinite(value):
        return value, alignment
    torch.nn.utils.clip_grad_norm_(run.params, config.optim.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    update_ema(run.ema, run.params, config.ema_decay)
    return value, alignment


@torch.no_grad()
def evaluate(config: TrainConfig, model: VideoFlexTok, cache: ClipCache, out: Path, step: int) -> dict[str, float]:
    """Held-out reconstruction quality at a few token counts; writes a comparison video and PNG strip."""
    from videoflex.eval.metrics import video_metrics
    from videoflex.io.compare import write_comparison

    clips = cache.batch(torch.arange(min(config.eval_clips, len(cache))))
    ids = model.tokenize(clips)
    results, recon = {}, {}
    for keep in sorted(k for k in set(config.eval_keep) if k <= model.num_registers):
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


def train(config: TrainConfig, resume: bool = False, progress: bool = True,
          teacher: nn.Module | None = None) -> Path:
    """Run (or continue) a training run; returns the folder of the exported EMA model.

    teacher: a frozen module for REPA in place of the one the recipe names (see :func:`setup`)."""
    run = setup(config, teacher)
    ctx, out = run.ctx, run.out
    start = 0
    checkpoints = list_checkpoints(run.checkpoints)
    if checkpoints and not resume:
        raise CheckpointMismatch(f"{run.checkpoints} already holds checkpoints: pass --resume to continue, "
                                 "or choose another out_dir")
    if checkpoints:
        state = load_checkpoint(checkpoints[-1])
        restore(run, state, checkpoints[-1])
        start = state.step
    train_cache = eval_cache = None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.yaml").write_text(config_to_yaml(config))
        if not config.data.latents:
            train_cache = load_or_build_cache(config.data, "train", progress)
        eval_cache = load_or_build_cache(config.data, "eval", progress) if config.data.eval else None
    distributed.barrier(ctx)  # the main process builds the caches, the others then read them
    if train_cache is None:
        train_cache = (load_latent_cache(config.data.latents, run.model.vae, progress and ctx.is_main)
                       if config.data.latents else load_or_build_cache(config.data, "train", False))
    stop = {"signal": None}

    def request_stop(signum: int, _frame: object) -> None:
        stop["signal"] = signal.Signals(signum).name

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    log = RunLog(out) if ctx.is_main else None
    bar = tqdm(total=config.steps, initial=start, desc="training", disable=not (progress and ctx.is_main))
    last_good = checkpoints[-1] if checkpoints else None
    tick, clips_done = time.perf_counter(), 0
    try:
        for step in range(start, config.steps):
            loss, alignment = train_step(run, train_cache, step)
            if not math.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss} at step {step + 1}; stopped without saving. "
                                       f"Last good checkpoint: {last_good or 'none'}")
            done = step + 1
            clips_done += config.batch_size
            bar.update()
            # the base rate of the next step (the encoder's is optim.encoder_lr_scale times it)
            lr = config.optim.lr * run.scheduler.lr_lambdas[0](run.scheduler.last_epoch)
            repa = {"repa": alignment} if run.teacher is not None else {}
            bar.set_postfix(loss=f"{loss:.4f}", **{k: f"{v:.4f}" for k, v in repa.items()}, lr=f"{lr:.2e}")
            record: dict[str, float | int] = {}
            if done % config.log_every == 0 or done == config.steps:
                elapsed = time.perf_counter() - tick
                record = {"step": done, "loss": loss, **repa, "lr": lr,
                          "clips_per_s": clips_done / max(elapsed, 1e-9)}
                tick, clips_done = time.perf_counter(), 0
            evaluate_now = bool(config.data.eval) and (done % config.eval_every == 0 or done == config.steps)
            save_now = done % config.save_every == 0 or done == config.steps or stop["signal"] is not None
            if evaluate_now or save_now:
                state = training_state(run, done)  # collective under FSDP: every process takes part
                if ctx.is_main:
                    model = ema_model(state)
                    if evaluate_now:
                        record = {"step": done, **record, **evaluate(config, model, eval_cache, out, done)}
                    if save_now:
                        last_good = save_checkpoint(run.checkpoints, state, config.keep_checkpoints)
                        model.save_pretrained(out / "model")
                distributed.barrier(ctx)
            if record and log is not None:
                log.write(record)
            if stop["signal"]:
                if ctx.is_main:
                    print(f"\n{stop['signal']}: saved step {done} to {last_good}; continue with --resume")
                break
    finally:
        bar.close()
        if log is not None:
            log.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        distributed.shutdown(ctx)
    return out / "model"
