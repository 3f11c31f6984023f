"""``videoflex presets``: the named model presets and their parameter counts."""

from __future__ import annotations

import argparse

import torch

from videoflex.tokenizers.flex.model import VideoFlexTok
from videoflex.tokenizers.flex.params import count_parameters
from videoflex.tokenizers.flex.presets import PRESETS, get_preset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("presets", help="list model presets with their sizes and parameter counts",
                              description="List the model presets: image size, widths and depths, parameter "
                                          "counts (built on the meta device: no memory, no weights).")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    header = f"{'preset':<15} {'size':>8} {'enc':>10} {'dec':>10} {'VAE':>9} {'encoder':>9} {'decoder':>9} " \
             f"{'adaLN':>9} {'enc+dec-adaLN':>14}"
    print(header)
    for name in PRESETS:
        config = get_preset(name)
        with torch.device("meta"):
            counts = count_parameters(VideoFlexTok(config))
        e, d = config.encoder, config.decoder
        print(f"{name:<15} {config.image_size[0]:>4}x{config.image_size[1]:<3} "
              f"{f'd{e.depth} D{e.width}':>10} {f'd{d.depth} D{d.width}':>10} {counts.vae / 1e6:>8.1f}M "
              f"{counts.encoder / 1e6:>8.1f}M {counts.decoder / 1e6:>8.1f}M {counts.adaln / 1e6:>8.1f}M "
              f"{counts.transformer_without_adaln / 1e6:>13.1f}M")
    return 0
