"""``videoflex tokenize-dataset``: the clips of a data source -> a token dataset (shards of ids, labels, captions).

The clips are those ``prepare-data`` reads (the same ``--source``/``--config`` options); DataLoader worker
processes (``--num-workers``) decode them while the tokenizer runs in this process. The output is read back
by :class:`videoflex.data.token_shards.TokenShardDataset`, which refuses ids made by another tokenizer.
"""

from __future__ import annotations

import argparse

from torch.utils.data import ConcatDataset, Dataset, IterableDataset, Subset

from videoflex.cli.common import (
    Number,
    add_chunk_batch_option,
    add_model_options,
    batch_size,
    load_model,
    model_output_checked,
    output_dir,
    output_folder,
    positive_int,
    resolve_device,
)
from videoflex.cli.errors import UserError
from videoflex.cli.prepare_data import add_clip_options, open_source, resolve_sources
from videoflex.data.sample import VideoSample
from videoflex.data.token_shards import class_names_of, write_token_shards
from videoflex.utils.dataclass_io import to_dict
from videoflex.utils.json_io import to_json_text

worker_count = Number(int, 0, 256)  # DataLoader processes decoding clips


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tokenize-dataset", help="tokenize the clips of a data source into token shards (generator training data)",
        description="Cut fixed-length clips from a source (--source) or from the sources of a training recipe "
                    "(--config), as prepare-data does, tokenize each with --model and write a token dataset to "
                    "-o DIR: index.json (the tokenizer's identity, shapes, class names) and tokens-000000"
                    ".safetensors, ... (ids [n, t, k], labels, captions). The same inputs give the same bytes; "
                    "--resume continues an interrupted run after its last finished shard. Read it back with "
                    "videoflex.data.token_shards.TokenShardDataset.")
    add_clip_options(p, frames_help="the tokenizer pads clips to whole chunks", size_help="the model's")
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", type=output_dir, required=True, metavar="DIR",
                     help="the token dataset folder (created if needed)")
    out.add_argument("--clips-per-shard", type=positive_int, default=1024, metavar="N",
                     help="clips per shard file (default: 1024)")
    out.add_argument("--batch-size", type=batch_size, default=8, metavar="N",
                     help="clips tokenized at once (default: 8)")
    add_chunk_batch_option(out)
    out.add_argument("--num-workers", type=worker_count, default=0, metavar="N",
                     help="worker processes decoding clips while the model runs (default: 0, this process)")
    out.add_argument("--resume", action="store_true",
                     help="continue an interrupted run in DIR: its finished shards are kept and skipped")
    add_model_options(p, seed=False)
    p.set_defaults(run=run)


def _clip_dataset(parts: list[tuple[Dataset[VideoSample], int]]) -> Dataset[VideoSample]:
    """The first ``count`` clips of each source, in order, as one map-style dataset."""
    for dataset, _ in parts:
        if isinstance(dataset, IterableDataset):
            raise UserError("tokenize-dataset reads clips by index; this source can only be streamed")
    return ConcatDataset([Subset(dataset, range(count)) for dataset, count in parts])


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, resolve_device(args.device))
    model = loaded.model
    h, w = model.image_size
    if h != w:
        raise UserError(f"--model {args.model}: takes {w}x{h} frames; tokenize-dataset cuts square clips")
    sources, data = resolve_sources(args, h)
    if data.size != h:
        raise UserError(f"--size {data.size}: the tokenizer takes {h}x{h} frames")
    try:
        model.plan(data.frames)
    except ValueError as err:
        raise UserError(f"--frames {data.frames}: {err}") from None
    parts = [open_source(source, data) for source in sources]
    names = {class_names_of(dataset) for dataset, _ in parts}
    class_names = names.pop() if len(names) == 1 else None  # sources with different classes: ids are ambiguous
    description = to_json_text({"sources": [to_dict(s) for s in sources], "frames": data.frames, "size": data.size,
                                "fps": data.fps}, canonical=True)
    with model_output_checked(loaded):
        info = write_token_shards(
            _clip_dataset(parts), model, output_folder(args.output), clips_per_shard=args.clips_per_shard,
            batch_size=args.batch_size, chunk_batch=args.chunk_batch, num_workers=args.num_workers,
            class_names=class_names, source=description, progress=not args.quiet, resume=args.resume)
    print(f"tokens    {info.num_clips} clips of {info.num_frames} frames at {h}x{h}, {info.fps:g} fps -> ids "
          f"[{info.token_steps}, {info.tokens_per_step}] each in {len(info.shards)} shard(s) in {args.output} "
          f"(tokenizer {info.tokenizer})")
    return 0
