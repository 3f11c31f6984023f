"""``videoflex detokenize FILE -o OUT.mp4``: decode a token file back to a video."""

from __future__ import annotations

import argparse
import time

from videoflex.cli.common import (
    PathOption,
    add_model_options,
    flow_steps,
    guidance_scale,
    input_file,
    load_model,
    make_generator,
    make_parent,
    model_output_checked,
    positive_int,
    resolve_device,
    size_text,
)
from videoflex.cli.errors import UserError
from videoflex.io.tokens import load_tokens, read_token_header
from videoflex.io.video import MP4_SUFFIXES, write_video

video_output = PathOption("output file", suffixes=(*MP4_SUFFIXES, ".gif"))
"""An output video: .mp4 (also .m4v, .mov, .mkv) or .gif, in a place that can be written."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detokenize", help="decode a token file to a video",
        description="Decode a token file written by 'videoflex tokenize' with the model that made it (a file "
                    "from another model is refused). The video has the frame count and frame rate of the "
                    "tokenized video, at the model's frame size.")
    p.add_argument("file", type=input_file, metavar="FILE", help="a token file (.tokens.safetensors)")
    p.add_argument("-o", "--output", type=video_output, required=True, metavar="OUT",
                   help="video to write: .mp4 (H.264; also .m4v, .mov, .mkv) or .gif")
    p.add_argument("--keep", type=positive_int, metavar="K",
                   help="decode from the first K tokens of every time step (default: all in the file); only "
                        "those are read from the file")
    p.add_argument("--steps", type=flow_steps,
                   help="flow sampling steps (default: the model's sampler setting)")
    p.add_argument("--guidance", type=guidance_scale,
                   help="classifier-free guidance scale, 1 = none (default: the model's sampler setting)")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    source, out = args.file, args.output
    header = read_token_header(source)  # refuse foreign or damaged files before loading a model
    if args.keep is not None and args.keep > header.tokens_per_step:
        raise UserError(f"--keep {args.keep}: {source} holds {header.tokens_per_step} tokens per time step")
    device = resolve_device(args.device)
    loaded = load_model(args.model, device)
    model = loaded.model
    tokens = load_tokens(source, keep=args.keep, model=model)
    n = model.layout.tokens_per_step
    if not model.layout.prefix_decodable and tokens.tokens_per_step != n:  # e.g. a grid tokenizer's
        raise UserError(f"{'--keep ' + str(args.keep) if args.keep is not None else source}: the tokens of model "
                        f"{model.identity.name!r} form a grid; a prefix of them cannot be decoded (all {n} "
                        f"are needed, {tokens.tokens_per_step} given)")
    sampler = model.sampler
    steps = args.steps or (sampler.steps if sampler else None)
    guidance = args.guidance if args.guidance is not None or sampler is None else sampler.guidance
    start = time.perf_counter()
    with model_output_checked(loaded):
        video = model.detokenize(tokens.ids[None], keep=tokens.tokens_per_step, steps=steps, guidance=guidance,
                                 num_frames=tokens.metadata.num_frames, generator=make_generator(args.seed, device),
                                 progress=not args.quiet)
    write_video(make_parent(out), video[0], tokens.metadata.fps)
    seconds = time.perf_counter() - start
    print(f"{source} -> {out}: {video.shape[2]} frames at {tokens.metadata.fps:g} fps, "
          f"{size_text(tuple(video.shape[-2:]))}, from {tokens.token_steps} steps x {tokens.tokens_per_step} "
          f"tokens; {_sampling(steps, guidance, sampler is not None)}seed {args.seed}, {seconds:.1f} s")
    return 0


def _sampling(steps: int | None, guidance: float | None, sampled: bool) -> str:
    """``"4 steps, guidance 3, "`` for a sampled decoder, nothing for a deterministic one."""
    return f"{steps} steps, guidance {guidance:g}, " if sampled else ""
