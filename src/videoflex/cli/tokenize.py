"""``videoflex tokenize IN... -o DIR``: videos to token files (one ``<stem>.tokens.safetensors`` each)."""

from __future__ import annotations

import argparse

from tqdm.auto import tqdm

from videoflex.cli.common import (
    ENCODER_SEED_HELP,
    add_chunk_batch_option,
    add_model_options,
    check_output_path,
    frame_rate,
    input_file,
    load_model,
    make_generator,
    model_output_checked,
    output_dir,
    output_folder,
    positive_int,
    resolve_device,
    size_text,
)
from videoflex.cli.errors import UserError
from videoflex.io.tokens import TOKEN_SUFFIX, TokenMetadata, VideoTokens, save_tokens
from videoflex.io.video import MODEL_FPS, read_video


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tokenize", help="turn videos into token files",
        description="Tokenize videos. Each video is read at --fps, resized (short side) and centre-cropped to "
                    "the model's frame size, and written as DIR/<stem>.tokens.safetensors (see "
                    "videoflex.io.tokens for the format). One line is printed per file.")
    p.add_argument("inputs", nargs="+", type=input_file, metavar="IN", help="video files (any container and codec FFmpeg reads)")
    p.add_argument("-o", "--output", type=output_dir, required=True, metavar="DIR",
                   help="folder for the token files (created if missing)")
    p.add_argument("--keep", type=positive_int, metavar="K",
                   help="store only the first K tokens of every time step (default: all of the model's N)")
    p.add_argument("--fps", type=frame_rate, default=MODEL_FPS,
                   help=f"frame rate the video is sampled at before tokenizing (default: {MODEL_FPS:g}, as the models)")
    p.add_argument("--max-frames", type=positive_int, metavar="N",
                   help="tokenize only the first N frames (at --fps); default: the whole video")
    add_chunk_batch_option(p)
    add_model_options(p, seed_help=ENCODER_SEED_HELP)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    inputs = args.inputs
    names: dict[str, str] = {}
    for path in inputs:  # every output name checked (length, clashes) before the model runs
        name = f"{path.stem}{TOKEN_SUFFIX}"
        if name in names:
            raise UserError(f"{path}: would overwrite the tokens of {names[name]} (same name {name})")
        names[name] = str(path)
        check_output_path(args.output / name, folder=False)
    device = resolve_device(args.device)
    loaded = load_model(args.model, device)
    model = loaded.model
    n = model.layout.tokens_per_step
    keep = n if args.keep is None else args.keep
    if keep > n:
        raise UserError(f"--keep {keep}: model {model.identity.name!r} has {n} tokens per time step")
    if keep < n and not model.layout.prefix_decodable:
        raise UserError(f"--keep {keep}: the tokens of model {model.identity.name!r} form a grid; a prefix of "
                        "them cannot be decoded (keep all)")
    bar = tqdm(inputs, desc="tokenizing", unit="video", disable=args.quiet or len(inputs) == 1)
    for path in bar:
        decoded = read_video(path, fps=args.fps, size=model.image_size, max_frames=args.max_frames)
        with model_output_checked(loaded):
            ids = model.tokenize(decoded.video[None], generator=make_generator(args.seed, device),
                                 chunk_batch=args.chunk_batch)
        metadata = TokenMetadata.for_model(model, num_frames=decoded.num_frames, fps=decoded.fps,
                                           source_size=decoded.source_size, source_path=str(path))
        tokens = VideoTokens(ids[0, :, :keep].cpu(), metadata)
        target = save_tokens(output_folder(args.output) / f"{path.stem}{TOKEN_SUFFIX}", tokens)
        tqdm.write(f"{path} -> {target}: {decoded.num_frames} frames at {decoded.fps:g} fps "
                   f"({size_text(decoded.source_size)} source), {tokens.token_steps} steps x {keep} tokens "
                   f"= {tokens.token_steps * keep} tokens")
    return 0
