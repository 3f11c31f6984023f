"""The token-count sweep: reconstruction quality of a tokenizer at k = 1, 2, 4, ... tokens per step.

For each k every clip is decoded from the first k tokens of each time step (same noise for every k)
and compared with the input: PSNR and SSIM on [0, 1] RGB, and rFVD (Frechet distance of I3D
Kinetics-400 logits between the inputs and the reconstructions) when I3D weights are given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from videoflex.eval.fvd import MIN_SAMPLES as MIN_FVD_CLIPS
from videoflex.eval.fvd import fvd
from videoflex.eval.metrics import video_metrics
from videoflex.nn.flow import nested_budgets
from videoflex.tokenizers.base import Tokenizer


@dataclass(frozen=True)
class SweepSettings:
    keeps: tuple[int, ...]
    steps: int
    guidance: float
    seed: int = 0
    batch_size: int = 4

    @classmethod
    def for_model(cls, model: Tokenizer, keeps: tuple[int, ...], steps: int | None = None,
                  guidance: float | None = None, seed: int = 0, batch_size: int = 4) -> SweepSettings:
        """Settings for ``model``: ``steps`` and ``guidance`` default to its sampler's (1 step, guidance 1 for a
        model without one, which decodes deterministically)."""
        sampler = model.sampler
        return cls(tuple(keeps), steps or (sampler.steps if sampler else 1),
                   (sampler.guidance if sampler else 1.0) if guidance is None else guidance, seed, batch_size)


@dataclass(frozen=True)
class KeepResult:
    keep: int  # tokens per time step
    tokens_per_clip: int
    psnr: float  # dB, mean over clips
    ssim: float
    rfvd: float | None  # None without I3D weights


@dataclass(frozen=True)
class SweepResult:
    model: str  # the config's name
    model_kind: str
    model_config_hash: str
    model_hash: str  # the weights hash (:func:`videoflex.models.identity.weights_hash`)
    num_clips: int
    frames: int
    settings: SweepSettings
    results: tuple[KeepResult, ...]
    wall_time_s: float
    rfvd_skipped: str | None = None  # why rFVD was not computed (e.g. too few clips); None: computed or not asked
    padded_clips: int = 0  # clips shorter than ``frames``, padded by repeating their last frame (by the reader)
    padding: str | None = None  # the reader's sentence on them (count, shortest); None: none was padded


def default_keeps(num_registers: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to N (N included): :func:`~videoflex.nn.flow.nested_budgets`."""
    return nested_budgets(num_registers)


@torch.no_grad()
def run_sweep(model: Tokenizer, clips: torch.Tensor, settings: SweepSettings, i3d: torch.nn.Module | None = None,
              progress: bool = True) -> SweepResult:
    """Sweep ``clips [N,3,T,H,W]`` in [-1, 1] (the model's size) over ``settings.keeps``; rFVD too when ``i3d``
    is given.

    Raises ``ValueError`` for a ``keep`` the model cannot decode, and (before any work) when ``i3d`` is given
    with fewer than 2 clips: a Frechet distance needs a covariance (pass ``i3d=None`` to skip rFVD).
    """
    for k in settings.keeps:
        model.check_keep(k)
    if i3d is not None and clips.shape[0] < MIN_FVD_CLIPS:
        raise ValueError(f"rFVD needs at least {MIN_FVD_CLIPS} clips (a covariance), got {clips.shape[0]}; "
                         "pass i3d=None to skip it")
    start = time.perf_counter()
    n, t = clips.shape[0], clips.shape[2]
    sums = {k: torch.zeros(2) for k in settings.keeps}
    real_logits, fake_logits = [], {k: [] for k in settings.keeps}
    batches = range(0, n, settings.batch_size)
    bar = tqdm(total=len(batches) * len(settings.keeps), desc="reconstructing", disable=not progress)
    for i in batches:
        batch = clips[i: i + settings.batch_size]
        ids = model.tokenize(batch)
        if i3d is not None:
            real_logits.append(i3d(batch).logits)
        for k in settings.keeps:
            generator = torch.Generator(device=model.device).manual_seed(settings.seed + i)
            recon = model.detokenize(ids, keep=k, steps=settings.steps, guidance=settings.guidance, num_frames=t,
                                     generator=generator)
            m = video_metrics((recon.cpu() + 1) / 2, (batch + 1) / 2)
            sums[k] += torch.stack([m.psnr.sum(), m.ssim.sum()])
            if i3d is not None:
                fake_logits[k].append(i3d(recon).logits)
            bar.update()
    bar.close()
    results = []
    for k in settings.keeps:
        rfvd = None
        if i3d is not None:
            rfvd = fvd(torch.cat(real_logits), torch.cat(fake_logits[k]))
        results.append(KeepResult(k, k * ids.shape[1], float(sums[k][0] / n), float(sums[k][1] / n), rfvd))
    identity = model.identity
    return SweepResult(identity.name, identity.kind, identity.config_hash, identity.weights_hash, n, t, settings,
                       tuple(results), time.perf_counter() - start)


def save_sweep(result: SweepResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.json`` (strict JSON) and ``quality_vs_tokens.png`` (one panel per metric, log-2 x axis).

    Raises ``NonFiniteJSONError`` (a ``ValueError`` naming the field) for a NaN or infinite number in
    ``result``; nothing is written then."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from videoflex.io.video import atomic_output_path
    from videoflex.utils.json_io import to_json_text, write_json

    to_json_text(result)  # strict JSON: a NaN result is refused before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "results.json", out / "quality_vs_tokens.png"
    write_json(json_path, result)
    metrics = [("psnr", "PSNR (dB)"), ("ssim", "SSIM")]
    if all(r.rfvd is not None for r in result.results):
        metrics.append(("rfvd", "rFVD (lower is better)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4))
    keeps = [r.keep for r in result.results]
    for ax, (name, label) in zip(axes, metrics):
        ax.plot(keeps, [getattr(r, name) for r in result.results], marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens per time step (k)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result.model}: {result.num_clips} clips x {result.frames} frames, "
                 f"{result.settings.steps} steps, guidance {result.settings.guidance:g}")
    fig.tight_layout()
    with atomic_output_path(png_path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return json_path, png_path
