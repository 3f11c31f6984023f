"""``videoflex eval``: reconstruction sweeps over token counts, FVD between two sets of videos, and (in
:mod:`videoflex.cli.eval_classes`) Kinetics classes of clips and the linear class probe."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from videoflex.cli.common import (
    PathOption,
    add_model_options,
    batch_size,
    flow_steps,
    frame_count,
    frame_rate,
    guidance_scale,
    input_path,
    keep_list,
    load_model,
    make_parent,
    model_output_checked,
    output_dir,
    output_folder,
    pixels,
    positive_int,
    resolve_device,
    warn,
)
from videoflex.cli.errors import UserError
from videoflex.cli.eval_classes import I3D_MIN_FRAMES, i3d_frames, i3d_weights_file, load_i3d_weights
from videoflex.cli.eval_classes import add_parsers as add_class_parsers
from videoflex.cli.eval_generator import add_parser as add_generator_parser
from videoflex.eval.fvd import MIN_SAMPLES
from videoflex.io.video import MODEL_FPS

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif")
STATS_SUFFIX = ".safetensors"
RECON_FPS = MODEL_FPS  # the rate eval recon samples videos at by default (as the models)
stats_output = PathOption("output file", suffixes=(STATS_SUFFIX,))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate: token-count sweeps (PSNR, SSIM, rFVD), FVD, I3D classes",
                              description="Evaluation with the field's metrics, offline. rFVD, FVD, classify and "
                                          "probe need the I3D Kinetics-400 weights: videoflex fetch i3d-weights.")
    sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")

    r = sub.add_parser("recon", help="reconstruction quality at each token count over a set of videos",
                       description="Tokenize every clip once, decode it from the first k tokens of every time step "
                                   "for each k, and write OUT/results.json (PSNR, SSIM, rFVD per k, settings, model "
                                   "hash, wall time) and OUT/quality_vs_tokens.png (OUT: -o/--output).")
    r.add_argument("--data", type=input_path, required=True, help="a video file or a folder of videos (searched recursively)")
    r.add_argument("-o", "--output", type=output_dir, default="outputs/eval_recon", metavar="OUT",
                   help="output folder (default: outputs/eval_recon)")
    r.add_argument("--keep", type=keep_list, help="token counts, e.g. 1,2,4,8 (default: 1, 2, 4, ... N)")
    r.add_argument("--steps", type=flow_steps, help="flow steps (default: the model's)")
    r.add_argument("--guidance", type=guidance_scale, help="guidance scale, 1 = none (default: the model's)")
    r.add_argument("--frames", type=frame_count, help="frames per clip (default: one chunk of the model)")
    r.add_argument("--fps", type=frame_rate, default=RECON_FPS,
                   help=f"frame rate the videos are sampled at (default: {RECON_FPS:g}, as the models)")
    r.add_argument("--clips-per-video", type=positive_int, default=1, help="evenly spaced clips per video (default 1)")
    r.add_argument("--max-clips", type=positive_int, help="use at most this many clips")
    r.add_argument("--batch-size", type=batch_size, default=4, help="clips decoded together (default 4)")
    r.add_argument("--i3d-weights", type=i3d_weights_file, help="I3D checkpoint for rFVD (default: the fetched cache file)")
    r.add_argument("--no-fvd", action="store_true", help="skip rFVD (no I3D needed)")
    add_model_options(r, seed_help="seed of the decoder's flow noise (batch i of clips seeded with seed + i, the same "
                                   "for every k): the same seed gives the same numbers (default: 0)")
    r.set_defaults(run=run_recon)

    f = sub.add_parser("fvd", help="Frechet video distance between two sets of videos",
                       description="FVD of I3D Kinetics-400 logits (16 frames at 224x224) between REAL and FAKE. Each "
                                   "is a folder of videos or a statistics file written by --save-real-stats.")
    f.add_argument("real", type=input_path, help="folder of real videos, or a .safetensors statistics file")
    f.add_argument("fake", type=input_path, help="folder of generated videos, or a .safetensors statistics file")
    f.add_argument("--frames", type=i3d_frames, default=I3D_MIN_FRAMES, help="frames per clip (default 16)")
    f.add_argument("--size", type=pixels, default=224, help="short side and centre crop (default 224)")
    f.add_argument("--fps", type=frame_rate, default=None, help="sampling rate (default: every frame)")
    f.add_argument("--save-real-stats", type=stats_output, metavar="FILE.safetensors",
                   help="write the real set's statistics here to reuse them (its folder is created if missing)")
    f.add_argument("--i3d-weights", type=i3d_weights_file, help="I3D checkpoint (default: the fetched cache file)")
    f.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(run=run_fvd)

    add_class_parsers(sub)
    add_generator_parser(sub)


def video_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise UserError(f"{path}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    return files


@dataclass(frozen=True)
class Clips:
    """Clips read for a metric: ``video`` ``[N,3,T,H,W]`` in [-1, 1]; ``frames_read[i]`` is how many frames
    clip ``i`` had before its last frame was repeated up to ``T`` (a video shorter than the clip)."""

    video: torch.Tensor
    frames_read: tuple[int, ...]

    @property
    def padded(self) -> int:
        """How many clips were padded (had fewer than ``T`` frames)."""
        return sum(n < self.video.shape[2] for n in self.frames_read)

    def padding_note(self, fps: float | None) -> str | None:
        """One sentence on the padded clips (their count, the shortest), or ``None`` when none was padded."""
        if not self.padded:
            return None
        rate = f" at {fps:g} fps" if fps is not None else ""
        return (f"{self.padded} of {len(self.frames_read)} clips had fewer than {self.video.shape[2]} frames{rate} "
                f"(the shortest {min(self.frames_read)}) and were padded by repeating their last frame")


def read_clips(files: list[Path], frames: int, size: int | tuple[int, int], fps: float | None,
               clips_per_video: int = 1, progress: bool = True, max_clips: int | None = None) -> Clips:
    """Clips of ``frames`` frames from every file (the first ``max_clips`` of them): one from the start of
    each video, or ``clips_per_video`` evenly spaced ones. A video shorter than a clip is padded by repeating
    its last frame; :class:`Clips` counts those."""
    from tqdm.auto import tqdm

    from videoflex.data.transforms import clip_start, pad_frames
    from videoflex.io.video import probe_video, read_video

    wanted = [(f, c) for f in files for c in range(clips_per_video)][:max_clips]
    videos, frames_read = [], []
    for path, c in tqdm(wanted, desc="reading", disable=not progress):
        start = 0.0
        if clips_per_video > 1:
            info = probe_video(path)
            start = clip_start(info.duration, frames / (fps or info.fps), "uniform", None, c, clips_per_video)
        decoded = read_video(path, fps=fps, size=size, max_frames=frames, start=start)
        frames_read.append(decoded.num_frames)
        videos.append(pad_frames(decoded.video, frames))
    return Clips(torch.stack(videos), tuple(frames_read))


def count_clips(files: list[Path], clips_per_video: int = 1, max_clips: int | None = None) -> int:
    """The number of clips :func:`read_clips` gives for ``files`` (known before any video is read)."""
    n = len(files) * clips_per_video
    return min(n, max_clips) if max_clips else n


def run_recon(args: argparse.Namespace) -> int:
    from videoflex.eval.sweep import SweepSettings, default_keeps, run_sweep, save_sweep

    device = resolve_device(args.device)
    files = video_files(args.data)
    num_clips = count_clips(files, args.clips_per_video, args.max_clips)
    rfvd_skipped = None
    if not args.no_fvd and num_clips < MIN_SAMPLES:
        rfvd_skipped = f"{num_clips} clip: rFVD needs at least {MIN_SAMPLES} (a covariance)"
        warn(f"{args.data}: rFVD skipped: {rfvd_skipped}; PSNR and SSIM are computed")
    if args.no_fvd:
        i3d = None
    else:  # the weights file is checked before the tokenizer runs
        if args.frames is not None and args.frames < I3D_MIN_FRAMES:
            raise UserError(f"--frames {args.frames}: rFVD needs at least {I3D_MIN_FRAMES} frames (or pass --no-fvd)")
        i3d = load_i3d_weights(args.i3d_weights, device) if rfvd_skipped is None else None
    loaded = load_model(args.model, device)
    model = loaded.model
    n = model.layout.tokens_per_step
    keeps = args.keep or list(default_keeps(n))
    if any(k > n for k in keeps):
        warn(f"--keep: the model has {n} tokens per time step; dropping {[k for k in keeps if k > n]}")
        keeps = [k for k in keeps if k <= n] or [n]
    if not model.layout.prefix_decodable and keeps != [n]:  # as `reconstruct`
        warn(f"the tokens of model {model.identity.name!r} form a grid; a prefix cannot be decoded, using k={n}")
        keeps = [n]
    frames = args.frames or model.clip_frames
    if i3d is not None and frames < I3D_MIN_FRAMES:
        raise UserError(f"--frames {frames}: rFVD needs at least {I3D_MIN_FRAMES} frames (or pass --no-fvd)")
    clips = read_clips(files, frames, model.image_size, args.fps, args.clips_per_video, not args.quiet,
                       args.max_clips)
    padding = clips.padding_note(args.fps)
    if padding:
        warn(f"{args.data}: {padding}; PSNR and SSIM include the repeated frames")
    settings = SweepSettings.for_model(model, tuple(keeps), args.steps, args.guidance, args.seed, args.batch_size)
    with model_output_checked(loaded):
        result = run_sweep(model, clips.video, settings, i3d, progress=not args.quiet)
    result = replace(result, rfvd_skipped=rfvd_skipped, padded_clips=clips.padded, padding=padding)
    json_path, png_path = save_sweep(result, output_folder(args.output))
    print(f"model {result.model} [{result.model_hash}], {result.num_clips} clips x {result.frames} frames, "
          f"{settings.steps} steps, guidance {settings.guidance:g}")
    print(f"{'k':>5} {'tokens':>7} {'PSNR dB':>8} {'SSIM':>7} {'rFVD':>8}")
    for r in result.results:
        rfvd = f"{r.rfvd:8.1f}" if r.rfvd is not None else f"{'-':>8}"
        print(f"{r.keep:>5} {r.tokens_per_clip:>7} {r.psnr:>8.2f} {r.ssim:>7.3f} {rfvd}")
    print(f"wrote {json_path}, {png_path} ({result.wall_time_s:.1f} s)")
    return 0


def run_fvd(args: argparse.Namespace) -> int:
    """FVD of two sets. Everything cheap is checked before I3D runs: both statistics files read, every video
    folder listed with at least 2 videos and every video's header probed, the weights file loaded, the output
    place checked (by its option type)."""
    from videoflex.eval.fvd import feature_stats, fvd, load_stats, save_stats
    from videoflex.eval.i3d import I3DConfig, i3d_embed
    from videoflex.io.video import probe_video

    device = resolve_device(args.device)
    sets: list[object] = []  # FeatureStats, or the video files of a folder
    for path in (args.real, args.fake):
        if path.is_file() and path.suffix == STATS_SUFFIX:
            try:
                stats = load_stats(path)
            except ValueError as e:
                raise UserError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None
            sets.append(stats)
            continue
        files = video_files(path)
        if len(files) < MIN_SAMPLES:
            raise UserError(f"{path}: {len(files)} video; FVD needs at least {MIN_SAMPLES} clips (a covariance), "
                            f"{MIN_SAMPLES * 1024} or more for a stable value")
        for file in files:
            probe_video(file)
        sets.append(files)
    has_videos, logits = any(isinstance(s, list) for s in sets), I3DConfig().num_classes
    for path, given in zip((args.real, args.fake), sets):
        if has_videos and not isinstance(given, list) and given.dim != logits:
            raise UserError(f"{path}: statistics of {given.dim}-d features, not of I3D's {logits} logits")
    i3d = load_i3d_weights(args.i3d_weights, device) if has_videos else None

    def stats_of(path: Path, given: object):
        if not isinstance(given, list):
            return given
        clips = read_clips(given, args.frames, args.size, args.fps, progress=not args.quiet)
        padding = clips.padding_note(args.fps)
        if padding:
            warn(f"{path}: {padding}; the FVD compares padded clips")
        try:
            return feature_stats(i3d_embed(i3d, clips.video, progress=not args.quiet).logits)
        except ValueError as e:
            raise UserError(f"{path}: {e}") from None

    real, fake = stats_of(args.real, sets[0]), stats_of(args.fake, sets[1])
    try:
        distance = fvd(real, fake)
    except ValueError as e:  # statistics of different feature sizes
        raise UserError(f"{args.real} vs {args.fake}: {e}") from None
    if args.save_real_stats:
        save_stats(real, make_parent(args.save_real_stats), description=f"I3D logits of {args.real}")
    print(f"FVD {distance:.2f} ({real.n} real, {fake.n} fake clips)")
    return 0
