"""The training loop: one for every model family, from a CPU process to torchrun on GPUs.

The loop knows no model: a :class:`~videoflex.train.task.Task` builds the model and the trained module,
supplies data, per-step draws, parameter groups, evaluation and the exported model. The loop does the
rest: processes (DDP or FSDP2), AdamW with the task's groups, warm-up + cosine schedule, EMA, gradient
clipping and accumulation, bf16 autocast, activation checkpointing (torch's checkpoint wrapper around the
task's blocks), atomic checkpoints (sharded with ``torch.distributed.checkpoint`` under FSDP), save and
stop on SIGTERM/SIGINT, ``resume``, a stop on a NaN loss naming the step, logs (``OUT/log.jsonl``, the plot
``OUT/curves.png`` and TensorBoard), periodic evaluation and the export of the EMA model (``OUT/model``).

The start is checked before it writes anything: the task's recipe (:meth:`Task.check`), the device, the
model (built before ``OUT`` exists), the lock on ``OUT`` (:mod:`videoflex.train.run_dir`: one trainer per
folder), the checkpoints (a resume passes over damaged ones to the newest intact one, with a warning, and
refuses a recipe changed in fields that change the result, :func:`recipe_changes`) and the first batch; a
start that fails removes what it created.

Every random choice of step ``s`` (which clips, the task's draws) comes from generators seeded by
``(seed, s)``, drawn for the whole global batch and sliced per process and micro-batch
(:mod:`videoflex.train.sampler`). So a run resumed from a checkpoint continues exactly as if never
interrupted, and N processes with a global batch G train the same model as one process with G.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from videoflex.models.pretrained import PretrainedModel
from videoflex.train import distributed
from videoflex.train.checkpoint import (
    SUM_SUFFIX,
    TrainingState,
    checkpoint_step,
    finish_sharded,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    sharded_tmp,
    verify_sharded,
)
from videoflex.train.config import config_to_yaml, recipe_changes
from videoflex.train.errors import (
    CheckpointDamaged,
    CheckpointMismatch,
    RecipeChanged,
    RecipeError,
    RunLocked,
    TrainingDiverged,
)
from videoflex.train.run_dir import RunDirectory
from videoflex.train.run_log import RunLog
from videoflex.train.sampler import StepBatchSampler, micro_batches
from videoflex.train.schedule import lr_at, update_ema
from videoflex.train.task import StepOutput, Task

pytree.register_dataclass(StepOutput)  # DDP and FSDP find the loss tensor inside the output

_WRAPPED = "_checkpoint_wrapped_module."


@dataclass
class Run:
    """What the loop carries: the task, its modules, the optimiser and where files go."""

    task: Task
    ctx: distributed.DistributedContext
    model: PretrainedModel  # the task's model (inside ``trainable``)
    trainable: nn.Module  # the task's trained module, unwrapped
    step_module: nn.Module  # ``trainable`` under DDP/FSDP (itself in one process)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    params: list[torch.Tensor]
    ema: list[torch.Tensor]
    names: list[str]
    out: Path

    @property
    def config(self) -> Any:
        return self.task.config

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    @property
    def sharded(self) -> bool:
        """Whether parameters are sharded over processes (FSDP): checkpoints are then DCP folders."""
        return self.ctx.enabled and self.config.parallel == "fsdp"


def apply_activation_checkpointing(module: nn.Module, blocks: list[nn.Module]) -> None:
    """Wrap each of ``blocks`` (inside ``module``) in torch's non-reentrant checkpoint wrapper: recomputed in
    the backward pass instead of storing its activations. State-dict keys do not change (the wrapper's
    hooks drop its prefix)."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl,
        checkpoint_wrapper,
    )
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        apply_activation_checkpointing as wrap_blocks,
    )

    ids = {id(block) for block in blocks}
    wrap_blocks(module, checkpoint_wrapper_fn=functools.partial(checkpoint_wrapper,
                                                                checkpoint_impl=CheckpointImpl.NO_REENTRANT),
                check_fn=lambda m: id(m) in ids)


def setup(task: Task) -> Run:
    """Join the processes, build the task's modules, wrap them, and make the optimiser and schedule."""
    config = task.config
    ctx = distributed.init_distributed(config.device)
    torch.manual_seed(config.seed)
    modules = task.build(ctx.device)
    if config.activation_checkpointing:
        apply_activation_checkpointing(modules.trainable, modules.blocks)
    step_module = distributed.wrap(modules.trainable, modules.blocks, ctx, config.parallel)
    named = [(n.replace(_WRAPPED, ""), p) for n, p in modules.trainable.named_parameters() if p.requires_grad]
    o = config.optim
    optimizer = torch.optim.AdamW(task.param_groups(named), lr=o.lr, betas=o.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, config.steps, o.warmup_steps, o.min_lr_ratio))
    params = [p for _, p in named]
    ema = [p.detach().clone().float() for p in params]
    return Run(task, ctx, modules.model, modules.trainable, step_module, optimizer, scheduler, params, ema,
               [n for n, _ in named], Path(config.out_dir))


# ----------------------------------------------------------------------------------------------- state

def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def training_state(run: Run, step: int) -> TrainingState:
    """The whole state in one process's memory (runs whose processes each hold the whole model)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(run.step_module, options=options)
    optim_state = get_optimizer_state_dict(run.step_module, run.optimizer, options=options)
    ema = {n: _full(e).detach().cpu() for n, e in zip(run.names, run.ema)}
    return TrainingState(step, model_state, ema, optim_state, run.scheduler.state_dict(), torch.get_rng_state(),
                         run.task.model_config(), config_to_yaml(run.config), run.model.kind)


def _sharded_state(run: Run) -> dict[str, Any]:
    """The tensors of a sharded checkpoint, as this process holds them (DTensor shards under FSDP)."""
    optim = get_optimizer_state_dict(run.step_module, run.optimizer)
    return {"model": get_model_state_dict(run.step_module), "optimizer": optim["state"],
            "ema": dict(zip(run.names, run.ema)), "rng": torch.get_rng_state()}


def save_sharded(run: Run, step: int) -> Path:
    """Every process writes its shards into a temporary folder; the main process then adds ``meta.json``
    and the checksums and renames it (collective)."""
    import shutil

    import torch.distributed.checkpoint as dcp

    tmp = sharded_tmp(run.checkpoints, step)
    if run.ctx.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    distributed.barrier(run.ctx)
    state = _sharded_state(run)
    dcp.save(state, checkpoint_id=str(tmp))
    param_groups = get_optimizer_state_dict(run.step_module, run.optimizer)["param_groups"]
    meta = {"step": step, "scheduler": run.scheduler.state_dict(), "param_groups": param_groups,
            "model_keys": sorted(state["model"]), "model_config": run.task.model_config(),
            "model_kind": run.model.kind,
            "train_config": config_to_yaml(run.config)}
    distributed.barrier(run.ctx)
    path = run.checkpoints / f"step_{step:08d}"
    if run.ctx.is_main:
        path = finish_sharded(run.checkpoints, step, meta, run.config.keep_checkpoints)
    distributed.barrier(run.ctx)
    return path


def _check_config(run: Run, theirs: str, source: Path) -> None:
    if theirs != run.task.model_config():
        name = json.loads(theirs).get("name")
        ours = json.loads(run.task.model_config()).get("name")
        raise CheckpointMismatch(f"{source}: checkpoint of model {name!r} with a different configuration than this "
                                 f"run's {ours!r}; use another out_dir or the matching config")


def _check_recipe(run: Run, theirs: str, source: Path, allow_change: bool) -> None:
    changed = recipe_changes(run.config, theirs)
    if changed and not allow_change:
        raise RecipeChanged(f"{source}: the recipe differs from the checkpoint's in {', '.join(changed)}; "
                            "resume with the recipe it was trained with, or pass --allow-recipe-change")


def restore(run: Run, source: Path, allow_recipe_change: bool = False) -> int:
    """Continue from checkpoint ``source`` (a ``.pt`` file or a sharded folder); returns its step.

    Raises CheckpointDamaged (nothing restored) when it fails its checksum or load, RecipeChanged when the
    run's recipe differs from the checkpoint's in fields that change the result (unless
    ``allow_recipe_change``), and CheckpointMismatch when it belongs to another model configuration."""
    if source.is_dir():
        return _restore_sharded(run, source, allow_recipe_change)
    state = load_checkpoint(source)
    run.task.check_checkpoint(set(state.model), source)
    _check_config(run, state.model_config, source)
    _check_recipe(run, state.train_config, source, allow_recipe_change)
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
    return state.step


def _restore_sharded(run: Run, source: Path, allow_recipe_change: bool) -> int:
    import torch.distributed.checkpoint as dcp

    meta = verify_sharded(source)
    run.task.check_checkpoint(set(meta["model_keys"]), source)
    _check_config(run, meta["model_config"], source)
    _check_recipe(run, meta["train_config"], source, allow_recipe_change)
    state = _sharded_state(run)
    dcp.load(state, checkpoint_id=str(source))
    set_model_state_dict(run.step_module, state["model"])
    set_optimizer_state_dict(run.step_module, run.optimizer,
                             {"state": state["optimizer"], "param_groups": meta["param_groups"]})
    run.scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(state["rng"])
    with torch.no_grad():
        for name, e in zip(run.names, run.ema):
            if state["ema"][name] is not e:
                e.copy_(state["ema"][name])
    return int(meta["step"])


def export_weights(run: Run) -> dict[str, torch.Tensor]:
    """The trained module's full state on the CPU with the EMA in place of the trained parameters
    (collective under FSDP: the EMA and the frozen tensors are gathered, nothing else)."""
    ema = dict(zip(run.names, run.ema))
    return {key: _full(ema.get(key, value)).detach().cpu() for key, value in run.trainable.state_dict().items()}


# ----------------------------------------------------------------------------------------------- loop

def train_step(run: Run, micro: list[Any], step: int) -> dict[str, float]:
    """One optimiser step on this process's micro-batches of step ``step``; returns the global means of
    the loss and the task's logged values (the optimiser does not step when the loss is not finite)."""
    config, device = run.config, run.ctx.device
    parts = micro_batches(config.batch_size, config.grad_accum, run.ctx.rank, run.ctx.world_size)
    draws = run.task.draws(step, config.batch_size)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    total, names = None, ["loss"]
    for i, (part, batch) in enumerate(zip(parts, micro)):
        part_draws = draws.select(part).to(device)
        sync_now = i == len(parts) - 1 or not hasattr(run.step_module, "no_sync")
        context = run.step_module.no_sync() if not sync_now else contextlib.nullcontext()
        with context, autocast:
            out: StepOutput = run.step_module(batch.to(device), part_draws)
            (out.loss / len(parts)).backward()
        names = ["loss", *out.logged]
        values = torch.stack([out.loss.detach().float(), *(v.detach().float() for v in out.logged.values())])
        total = values / len(parts) if total is None else total + values / len(parts)
    means = dict(zip(names, distributed.mean_across(total, run.ctx).tolist()))
    if not math.isfinite(means["loss"]):
        return means
    torch.nn.utils.clip_grad_norm_(run.params, config.optim.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    update_ema(run.ema, run.params, config.ema_decay)
    return means


def _loader(run: Run, start: int, progress: bool) -> DataLoader:
    config, ctx = run.config, run.ctx
    data = run.task.train_data(progress and ctx.is_main)
    if len(data.dataset) == 0:
        raise RecipeError("the training data holds no clips")
    parts = micro_batches(config.batch_size, config.grad_accum, ctx.rank, ctx.world_size)
    sampler = StepBatchSampler(len(data.dataset), config.seed, start, config.steps, config.batch_size, parts)
    workers = 0 if data.in_memory else config.num_workers
    return DataLoader(data.dataset, batch_sampler=sampler, collate_fn=data.collate, num_workers=workers,
                      pin_memory=ctx.device.type == "cuda", persistent_workers=False)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def resume_newest(run: Run, checkpoints: list[Path], allow_recipe_change: bool) -> tuple[int, Path, list[Path]]:
    """Restore the newest intact checkpoint of ``checkpoints`` (oldest first); returns its step, its path
    and the damaged newer ones it passed over (:class:`CheckpointDamaged`), named in one warning line.

    Raises CheckpointDamaged when none is intact, and the other errors of :func:`restore`."""
    damaged: list[tuple[Path, str]] = []
    for source in reversed(checkpoints):
        try:
            step = restore(run, source, allow_recipe_change)
        except CheckpointDamaged as err:
            damaged.append((source, str(err)))
            continue
        if step != checkpoint_step(source):
            raise CheckpointMismatch(f"{source}: holds step {step}, not the step its name says")
        break
    else:
        raise CheckpointDamaged(f"{run.checkpoints}: no intact checkpoint to resume from: "
                                + "; ".join(reason for _, reason in damaged))
    if damaged and run.ctx.is_main:
        _warn(f"passed over damaged checkpoint(s) ({'; '.join(reason for _, reason in damaged)}); they are "
              f"renamed *.damaged; resuming from {source} (step {step})")
    return step, source, [path for path, _ in damaged]


def set_aside(run: Run, damaged: list[Path]) -> None:
    """Rename damaged checkpoints (and their checksum files) ``NAME.damaged``: kept for a look, out of the
    way of resuming and pruning (collective)."""
    distributed.barrier(run.ctx)  # every process has passed over them before they move
    if run.ctx.is_main:
        for path in damaged:
            aside = path.with_name(path.name + ".damaged")
            number = 1
            while aside.exists() or aside.with_name(aside.name + SUM_SUFFIX).exists():  # keep earlier ones
                number += 1
                aside = path.with_name(f"{path.name}.damaged{number}")
            path.replace(aside)
            sums = path.with_name(path.name + SUM_SUFFIX)
            if sums.exists():
                sums.replace(aside.with_name(aside.name + SUM_SUFFIX))


def _lock(run: Run) -> RunDirectory:
    """The main process locks ``OUT`` (creating it); every process learns whether it could."""
    folder, failure = RunDirectory(run.out), None
    if run.ctx.is_main:
        try:
            folder.acquire()
        except (RunLocked, RecipeError) as err:
            failure = err
    if not distributed.all_true(run.ctx, failure is None):
        raise failure if failure is not None else RunLocked(f"{run.out}: the main process could not lock it")
    return folder


def check_start(task: Task) -> None:
    """The checks of a start that need no model and no data: the task's recipe, the device, the batch's
    split over the processes (``WORLD_SIZE``, set by torchrun) and accumulation steps.

    Raises RecipeError."""
    import os

    from videoflex.utils.device import resolve_device

    task.check()
    config = task.config
    try:
        resolve_device(config.device)
    except ValueError as err:
        raise RecipeError(f"device={config.device}: {err}") from None
    try:
        micro_batches(config.batch_size, config.grad_accum, 0, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError as err:
        raise RecipeError(str(err)) from None


def train(task: Task, resume: bool = False, progress: bool = True, allow_recipe_change: bool = False) -> Path:
    """Run (or with ``resume`` continue) the task's training; returns the folder of the exported EMA model.

    resume: continue from the newest intact checkpoint in ``OUT/checkpoints`` (damaged newer ones are passed
        over with a warning line).
    allow_recipe_change: resume even when the recipe differs from the checkpoint's in fields that change
        the result (see :func:`videoflex.train.config.recipe_changes`).

    Raises RecipeError (the recipe cannot be trained: before anything is built or written), RunLocked
    (another trainer runs in ``out_dir``), CheckpointMismatch (checkpoints exist without ``resume``, or
    belong to another configuration), CheckpointDamaged (no intact checkpoint), RecipeChanged (the recipe
    changed since the checkpoint) and TrainingDiverged (a NaN or infinite loss: the step and the last good
    checkpoint are named). A failure before the first step leaves ``out_dir`` as it was.
    """
    check_start(task)
    run = setup(task)
    config, ctx, out = run.config, run.ctx, run.out
    try:
        folder = _lock(run)
    except BaseException:
        distributed.shutdown(ctx)
        raise
    try:
        start = 0
        checkpoints = list_checkpoints(run.checkpoints)
        if checkpoints and not resume:
            raise CheckpointMismatch(f"{run.checkpoints} already holds checkpoints: pass --resume to continue, "
                                     "or choose another out_dir")
        last_good, damaged = None, []
        if checkpoints:
            start, last_good, damaged = resume_newest(run, checkpoints, allow_recipe_change)
        elif resume and ctx.is_main:
            _warn(f"--resume: {run.checkpoints} holds no checkpoint; starting from step 0")
        if ctx.is_main:
            (out / "train_config.yaml").write_text(config_to_yaml(config))
            task.prepare_data(progress)
        distributed.barrier(ctx)  # the main process prepares the data, the others then read it
        batches = iter(_loader(run, start, progress))
        first = [next(batches) for _ in range(config.grad_accum)] if start < config.steps else []
    except BaseException:
        folder.abandon()
        distributed.shutdown(ctx)
        raise
    folder.started()
    set_aside(run, damaged)
    stop = {"signal": None}

    def request_stop(signum: int, _frame: object) -> None:
        stop["signal"] = signal.Signals(signum).name

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    log = RunLog(out, start) if ctx.is_main else None
    bar = tqdm(total=config.steps, initial=start, desc="training", disable=not (progress and ctx.is_main))
    tick, clips_done = time.perf_counter(), 0
    accum = config.grad_accum
    try:
        for step in range(start, config.steps):
            micro = first if step == start else [next(batches) for _ in range(accum)]
            means = train_step(run, micro, step)
            loss = means["loss"]
            if not math.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss} at step {step + 1}; stopped without saving. "
                                       f"Last good checkpoint: {last_good or 'none'}")
            done = step + 1
            clips_done += config.batch_size
            bar.update()
            # the base rate of the next step (a task's group may scale it)
            lr = config.optim.lr * run.scheduler.lr_lambdas[0](run.scheduler.last_epoch)
            extras = {k: v for k, v in means.items() if k != "loss"}
            bar.set_postfix(loss=f"{loss:.4f}", **{k: f"{v:.4f}" for k, v in extras.items()}, lr=f"{lr:.2e}")
            record: dict[str, float | int] = {}
            if done % config.log_every == 0 or done == config.steps:
                elapsed = time.perf_counter() - tick
                record = {"step": done, "loss": loss, **extras, "lr": lr,
                          "clips_per_s": clips_done / max(elapsed, 1e-9)}
                tick, clips_done = time.perf_counter(), 0
            evaluate_now = task.has_eval and (done % config.eval_every == 0 or done == config.steps)
            save_now = done % config.save_every == 0 or done == config.steps or stop["signal"] is not None
            if evaluate_now or save_now:
                if save_now and run.sharded:
                    last_good = save_sharded(run, done)  # collective: every process writes its shards
                state = training_state(run, done) if save_now and not run.sharded else None
                weights = export_weights(run)  # collective under FSDP
                if ctx.is_main:
                    if state is not None:
                        last_good = save_checkpoint(run.checkpoints, state, config.keep_checkpoints)
                    model = task.export(weights)
                    if save_now:
                        model.save_pretrained(out / "model")
                    if evaluate_now:
                        record = {"step": done, **record, **task.evaluate(model, done, out)}
                distributed.barrier(ctx)
            if record and log is not None:
                log.write(record, plot=evaluate_now)  # OUT/curves.png redrawn at each evaluation and at close
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
        folder.release()
        distributed.shutdown(ctx)
    return out / "model"
