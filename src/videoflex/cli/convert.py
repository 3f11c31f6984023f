"""``videoflex convert``: a checkpoint in a foreign format (a registered loader: the released apple/ml-videoflextok
VideoFlexTok models) -> the native videoflex format."""

from __future__ import annotations

import argparse

import torch

from videoflex.cli.common import input_path, output_dir
from videoflex.cli.errors import UserError
from videoflex.models.pretrained import CONFIG_NAME, WEIGHTS_NAME
from videoflex.registry import LOADERS
from videoflex.tokenizers.flex.model import VideoFlexTok
from videoflex.tokenizers.flex.official.loader import describe

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a released VideoFlexTok checkpoint to the videoflex format",
        description="Read an official VideoFlexTok checkpoint (e.g. EPFL-VILAB/videoflextok_d18_d18_k600's "
                    "model.safetensors, or the folder holding it and its config.json), check every tensor "
                    "against its embedded config, and write model.safetensors + config.json in the videoflex "
                    "format. (videoflex.load_model and every --model option also read official checkpoints "
                    "directly.)")
    p.add_argument("checkpoint", type=input_path, help="official .safetensors file, or a folder holding one")
    p.add_argument("-o", "--output", type=output_dir, required=True, help="folder to write the converted model to")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                   help="dtype of the written weights (default: float32, as the reference runs them)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.checkpoint.exists():
        raise UserError(f"{args.checkpoint}: no such file or folder")
    loader = next((loader for loader in LOADERS if loader.detect(args.checkpoint)), None)
    if loader is None:
        raise UserError(f"{args.checkpoint}: not an official VideoFlexTok checkpoint (expected a safetensors file "
                        f"with video_tokenizer.* / vae.vidtok.* tensors)")
    try:
        model = loader.load(args.checkpoint, "cpu")
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    model.to(DTYPES[args.dtype])
    out = model.save_pretrained(args.output)
    summary = describe(model.config) if isinstance(model, VideoFlexTok) else model.config.name
    print(f"{loader.name} -> {model.kind}: {summary}")
    print(f"identity {model.identity}")
    print(f"wrote {out / WEIGHTS_NAME} and {out / CONFIG_NAME}")
    return 0
