"""``videoflex presets``: the named presets of every model kind, with their sizes and parameter counts."""

from __future__ import annotations

import argparse

import torch

from videoflex.registry import KINDS, ModelKind
from videoflex.tokenizers.chunked import ChunkedFlowTokenizer


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("presets", help="list model presets by kind, with their sizes and parameter counts",
                              description="List the model presets of every kind (grouped by kind): image size, "
                                          "widths and depths, parameter counts by part (built on the meta "
                                          "device: no memory, no weights). '--model PRESET' builds one with "
                                          "random weights, the same for the same preset in every run.")
    p.set_defaults(run=run)


def _shape(model: object) -> str:
    """Frame size, transformer sizes and tokens per step of a flow tokenizer (flex, grid); empty for other kinds."""
    if not isinstance(model, ChunkedFlowTokenizer):
        return ""
    config = model.config
    e, d = config.encoder, config.decoder
    return (f"{config.image_size[0]:>4}x{config.image_size[1]:<3} {f'd{e.depth} D{e.width}':>10} "
            f"{f'd{d.depth} D{d.width}':>10} {model.layout.tokens_per_step:>5}")


def _print_kind(kind: ModelKind) -> None:
    rows = []
    for name in kind.presets:
        with torch.device("meta"):
            model = kind.model_class(kind.presets[name]())
        rows.append((name, _shape(model), model.parameter_parts()))
    parts = [p.name for p in rows[0][2]]
    shape_header = f"{'size':>8} {'enc':>10} {'dec':>10} {'N':>5}" if rows[0][1] else ""
    width = max(15, *(len(name) for name, _, _ in rows))
    print(f"kind {kind.name} ({kind.model_class.__name__})")
    print(f"  {'preset':<{width}} {shape_header} " + " ".join(f"{p:>{max(9, len(p))}}" for p in parts))
    for name, shape, counts in rows:
        print(f"  {name:<{width}} {shape} "
              + " ".join(f"{f'{c.parameters / 1e6:.1f}M':>{max(9, len(c.name))}}" for c in counts))


def run(args: argparse.Namespace) -> int:
    for i, kind in enumerate(KINDS.values()):
        if i:
            print()
        _print_kind(kind)
    return 0
