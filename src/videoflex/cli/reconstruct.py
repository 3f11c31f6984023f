"""``videoflex reconstruct IN -o OUTDIR``: tokenize a video once, decode it from k tokens per step for
several k, and compare (side-by-side video, PNG strip, PSNR/SSIM table)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from videoflex.cli.common import (
    Number,
    add_chunk_batch_option,
    add_model_options,
    flow_steps,
    frame_count,
    frame_rate,
    guidance_scale,
    input_file,
    keep_list,
    load_model,
    make_generator,
    model_output_checked,
    output_dir,
    output_folder,
    resolve_device,
    size_text,
    video_time,
    warn,
)
from videoflex.eval.metrics import video_metrics
from videoflex.io.compare import write_comparison
from videoflex.io.video import MODEL_FPS, read_video
from videoflex.io.viewer import BudgetView, write_viewer
from videoflex.utils.json_io import write_json

DEFAULT_KEEP = (1, 4, 16, 256)
strip_frames = Number(int, 1, 256)  # columns of the PNG strip
VIDEO_NAME, STRIP_NAME, METRICS_NAME, PAGE_NAME = "comparison.mp4", "strip.png", "metrics.json", "index.html"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reconstruct", help="reconstruct a video from k tokens per step, for several k, and compare",
        description="Tokenize a video once, decode it from the first k tokens of every time step for each k, "
                    f"and write OUTDIR/{VIDEO_NAME} (the original and one labelled panel per k, side by side), "
                    f"OUTDIR/{STRIP_NAME} (evenly spaced frames, one row per panel) and OUTDIR/{METRICS_NAME}; "
                    f"print PSNR and SSIM per k; with --html also OUTDIR/{PAGE_NAME}, a page to compare them "
                    "interactively. Every k decodes from the same noise (--seed).")
    p.add_argument("input", type=input_file, metavar="IN", help="a video file (any container and codec FFmpeg reads)")
    p.add_argument("-o", "--output", type=output_dir, required=True, metavar="OUTDIR", help="output folder (created if missing)")
    p.add_argument("--keep", type=keep_list, metavar="K,K,...",
                   help="token counts per time step to decode from, e.g. 1,4,16,256; values above the "
                        "model's N are clipped to N with a warning (default: 1,4,16,256 up to N)")
    p.add_argument("--frames", type=frame_count, metavar="N",
                   help="frames to reconstruct, from --start at --fps (default: one chunk of the model, 17)")
    p.add_argument("--fps", type=frame_rate, default=MODEL_FPS,
                   help=f"frame rate the video is sampled at (default: {MODEL_FPS:g}, as the models)")
    p.add_argument("--start", type=video_time, default=0.0, metavar="SECONDS",
                   help="time of the first frame in the video (default: 0)")
    p.add_argument("--steps", type=flow_steps, help="flow sampling steps (default: the model's sampler setting)")
    p.add_argument("--guidance", type=guidance_scale,
                   help="classifier-free guidance scale, 1 = none (default: the model's sampler setting)")
    p.add_argument("--strip-frames", type=strip_frames, default=6, metavar="N",
                   help=f"frames (columns) in {STRIP_NAME} (default: 6)")
    p.add_argument("--html", action="store_true",
                   help=f"also write OUTDIR/{PAGE_NAME}: one self-contained page (videos inline, no network) with "
                        "the original and the reconstruction playing in sync, a slider over k, PSNR/SSIM per k "
                        "and the tokens and bits of each k")
    add_chunk_batch_option(p)
    add_model_options(p, seed_help="seed of the encoder's noise (the VAE posterior sample, for models that sample "
                                   "it) and of the decoder's flow noise: every k decodes from the same noise, and "
                                   "the same seed gives the same output (default: 0)")
    p.set_defaults(run=run)


@dataclass(frozen=True)
class KeepResult:
    """Reconstruction quality from ``keep`` tokens per step (``tokens`` in all)."""

    keep: int
    tokens: int
    psnr: float
    ssim: float
    seconds: float


@dataclass(frozen=True)
class Report:
    """What ``reconstruct`` did and measured (also written as ``metrics.json``)."""

    input: str
    model: str  # where the model came from
    model_kind: str
    model_name: str
    model_config_hash: str
    model_weights_hash: str
    frames: int
    fps: float
    start: float
    size: tuple[int, int]  # (H, W) of the frames the model sees
    source_size: tuple[int, int]
    source_frames: int
    source_fps: float
    token_steps: int
    tokens_per_step: int  # the model's N
    steps: int | None  # None: the decoder is deterministic (no sampler)
    method: str
    guidance: float | None
    guidance_method: str
    seed: int
    device: str
    seconds: float
    results: tuple[KeepResult, ...]

    def print(self, files: list[Path]) -> None:
        """Header lines, the table of PSNR/SSIM per k, the files written and the wall time."""
        offset = f" from {self.start:g} s" if self.start else ""
        print(f"input     {self.input}: {self.frames} frames at {self.fps:g} fps{offset}, {size_text(self.size)} "
              f"(source {size_text(self.source_size)}, {self.source_frames} frames at {self.source_fps:.4g} fps)")
        print(f"model     {self.model_kind} {self.model_name} [config {self.model_config_hash}, weights "
              f"{self.model_weights_hash}] from {self.model}")
        print(f"tokens    {self.token_steps} time steps x up to {self.tokens_per_step} tokens per step")
        sampling = (f"{self.steps} {self.method} steps, guidance {self.guidance:g} ({self.guidance_method})"
                    if self.steps is not None else self.method)
        print(f"sampling  {sampling}, seed {self.seed}, {self.device}")
        print()
        print(f"{'k':>5} {'tokens':>7} {'PSNR dB':>8} {'SSIM':>7} {'seconds':>8}")
        for r in self.results:
            print(f"{r.keep:>5} {r.tokens:>7} {r.psnr:>8.2f} {r.ssim:>7.3f} {r.seconds:>8.1f}")
        print()
        print(f"wrote     {', '.join(map(str, files))}")
        print(f"time      {self.seconds:.1f} s")


def resolve_keep(requested: list[int] | None, n: int) -> list[int]:
    """The k values to decode: requested ones clipped to ``n`` (with a warning), sorted, distinct."""
    if requested is None:
        return sorted({min(k, n) for k in DEFAULT_KEEP})
    too_many = [k for k in requested if k > n]
    if too_many:
        warn(f"--keep {','.join(map(str, too_many))}: the model has {n} tokens per time step; using {n}")
    return sorted({min(k, n) for k in requested})


def run(args: argparse.Namespace) -> int:
    source = args.input
    device = resolve_device(args.device)
    loaded = load_model(args.model, device)
    model, sampler = loaded.model, loaded.model.sampler
    n = model.layout.tokens_per_step
    keeps = resolve_keep(args.keep, n)
    if not model.layout.prefix_decodable and keeps != [n]:
        warn(f"the tokens of model {model.identity.name!r} form a grid; a prefix cannot be decoded, using k={n}")
        keeps = [n]
    frames = args.frames or model.clip_frames
    steps = args.steps or sampler.steps if sampler is not None else None
    guidance = (sampler.guidance if args.guidance is None else args.guidance) if sampler is not None else None
    started = time.perf_counter()

    decoded = read_video(source, fps=args.fps, size=model.image_size, max_frames=frames, start=args.start)
    original = decoded.video  # [3, T, H, W]
    with model_output_checked(loaded):
        ids = model.tokenize(original[None], generator=make_generator(args.seed, device), chunk_batch=args.chunk_batch)  # [1, t, N]
    token_steps = ids.shape[1]
    reference = (original[None].float() + 1) / 2  # [1, 3, T, H, W] in [0, 1]

    results: list[KeepResult] = []
    panels: dict[str, torch.Tensor] = {}
    views: list[BudgetView] = []
    bar = tqdm(keeps, desc="decoding", unit="k", disable=args.quiet)
    for keep in bar:
        bar.set_postfix_str(f"k={keep}")
        t0 = time.perf_counter()
        with model_output_checked(loaded):
            video = model.detokenize(ids, keep=keep, steps=steps, guidance=guidance, num_frames=original.shape[1],
                                     generator=make_generator(args.seed, device)).cpu()  # [1, 3, T, H, W]
        seconds = time.perf_counter() - t0
        metrics = video_metrics(reference, (video.float() + 1) / 2)
        results.append(KeepResult(keep, keep * token_steps, float(metrics.psnr[0]), float(metrics.ssim[0]), seconds))
        panels[f"k={keep}"] = video[0]
        views.append(BudgetView(keep, keep * token_steps, results[-1].psnr, results[-1].ssim, video[0]))
    bar.close()

    out = output_folder(args.output)
    files = write_comparison(original, panels, decoded.fps, video_path=out / VIDEO_NAME,
                             strip_path=out / STRIP_NAME, num_strip_frames=args.strip_frames)
    identity = model.identity
    written = [files.video, files.strip]
    if args.html:
        clip = (f"{source.name}: {original.shape[1]} frames at {decoded.fps:g} fps from {decoded.start:g} s, "
                f"{size_text(tuple(model.image_size))}")
        about = (f"model {identity.kind} {identity.name} [config {identity.config_hash}, weights "
                 f"{identity.weights_hash}]; {token_steps} time steps x up to {n} tokens, codebook "
                 f"{model.codebook_size}; seed {args.seed}")
        notes = (clip, about)
        written.append(write_viewer(out / PAGE_NAME, original, views, decoded.fps,
                                    codebook_size=model.codebook_size, token_steps=token_steps,
                                    title=f"videoflex reconstruct: {source.name}", notes=notes))
    report = Report(
        input=str(source), model=loaded.source, model_kind=identity.kind, model_name=identity.name,
        model_config_hash=identity.config_hash, model_weights_hash=identity.weights_hash,
        frames=original.shape[1], fps=decoded.fps, start=decoded.start, size=tuple(model.image_size),
        source_size=decoded.source_size, source_frames=decoded.source_num_frames, source_fps=decoded.source_fps,
        token_steps=token_steps, tokens_per_step=n, steps=steps,
        method=sampler.method if sampler is not None else "deterministic", guidance=guidance,
        guidance_method=sampler.guidance_method if sampler is not None else "none", seed=args.seed,
        device=str(device),
        seconds=round(time.perf_counter() - started, 3), results=tuple(results))
    metrics_path = write_json(out / METRICS_NAME, report)
    report.print([*written, metrics_path])
    return 0
