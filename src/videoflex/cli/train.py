"""``videoflex train tokenizer``: train (or fine-tune) a tokenizer from a YAML recipe."""

from __future__ import annotations

import argparse

from videoflex.cli.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a tokenizer (also under torchrun)",
                              description="Train models. Recipes are YAML files under configs/; any field can be "
                                          "overridden as key=value (nested keys with dots, e.g. optim.lr=1e-4).")
    sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    t = sub.add_parser("tokenizer", help="train the VideoFlexTok encoder and decoder",
                       description="Train the tokenizer (stage: tokenizer) or fine-tune its decoder with full "
                                   "attention and first-frame conditioning (stage: decoder). Run under torchrun "
                                   "for DDP/FSDP2. Checkpoints go to OUT_DIR/checkpoints every save_every steps "
                                   "and on SIGTERM/SIGINT; the EMA model is exported to OUT_DIR/model.")
    t.add_argument("--config", help="YAML training recipe (default: the built-in defaults)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. steps=2000 out_dir=runs/x")
    t.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from videoflex.data.sources import DataSourceError
    from videoflex.train.errors import CheckpointMismatch, TrainingDiverged
    from videoflex.train.tasks.tokenizer import train_tokenizer
    from videoflex.train.tasks.tokenizer_config import load_train_config

    try:
        config = load_train_config(args.config, args.overrides)
    except ValueError as e:
        raise UserError(f"{args.config or 'config'}: {e}") from None
    try:
        path = train_tokenizer(config, resume=args.resume, progress=not args.quiet)
    except DataSourceError as e:
        raise UserError(f"{args.config or 'config'}: {e}") from None
    except (TrainingDiverged, CheckpointMismatch) as e:
        raise UserError(str(e)) from None
    print(f"model: {path}")
    return 0
