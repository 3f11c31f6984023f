"""``videoflex train tokenizer|generator``: train (or fine-tune) a model from a YAML recipe.

Every user error is one line (exit status 2) found before any data is read, any model built or anything
written: a recipe that is not YAML or holds a bad value (the config dataclasses check every field), no
training data, a saved model whose weights do not fit, another trainer in ``out_dir``, a changed recipe
on ``--resume``, a damaged checkpoint with no intact one before it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from videoflex.cli.common import output_dir
from videoflex.cli.errors import UserError

MINIMAL_RECIPE = Path("configs") / "minimal.yaml"
GENERATOR_RECIPE = Path("configs") / "generator_shapes_class.yaml"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a tokenizer or a generator (also under torchrun)",
                              description="Train models. Recipes are YAML files under configs/; any field can be "
                                          "overridden as key=value (nested keys with dots, e.g. optim.lr=1e-4).")
    sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    t = sub.add_parser("tokenizer", help="train the VideoFlexTok encoder and decoder",
                       description="Train the tokenizer (stage: tokenizer) or fine-tune its decoder with full "
                                   "attention and first-frame conditioning (stage: decoder). Run under torchrun "
                                   "for DDP/FSDP2. Checkpoints go to OUT_DIR/checkpoints every save_every steps "
                                   "and on SIGTERM/SIGINT; the EMA model is exported to OUT_DIR/model. One "
                                   "trainer at a time holds OUT_DIR (OUT_DIR/.lock).")
    add_run_options(t, f"YAML training recipe (a minimal one: {MINIMAL_RECIPE}); without it, the built-in "
                       "defaults and the KEY=VALUE overrides, which must then name the data")
    g = sub.add_parser("generator", help="train an autoregressive class- or text-to-video generator on token ids",
                       description="Train an autoregressive generator on a token dataset (videoflex tokenize-dataset "
                                   "-o DIR; recipe field data), conditioned on its class labels or captions. Run "
                                   "under torchrun for DDP/FSDP2. Checkpoints go to OUT_DIR/checkpoints every "
                                   "save_every steps and on SIGTERM/SIGINT; the EMA model is exported to "
                                   "OUT_DIR/model, with the tokenizer it models recorded in it. One trainer at a "
                                   "time holds OUT_DIR (OUT_DIR/.lock).")
    add_run_options(g, f"YAML training recipe (e.g. {GENERATOR_RECIPE}); without it, the built-in defaults and "
                       "the KEY=VALUE overrides, which must then name the data")


def add_run_options(p: argparse.ArgumentParser, config_help: str) -> None:
    """The options every ``train WHAT`` command has: the recipe, resume, quiet and overrides."""
    p.add_argument("--config", help=config_help)
    p.add_argument("-o", "--output", type=output_dir, metavar="OUT_DIR",
                   help="the run folder (checkpoints, log.jsonl, curves.png, model/); the same as the override "
                        "out_dir=OUT_DIR (default: the recipe's out_dir)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest intact checkpoint in out_dir (damaged newer ones are passed "
                        "over with a warning)")
    p.add_argument("--allow-recipe-change", action="store_true",
                   help="with --resume: continue even though the recipe differs from the checkpoint's in fields "
                        "that change the result (batch_size, optim.lr, data, ...); without it such a resume "
                        "is refused, naming the fields")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. steps=2000 out_dir=runs/x")
    p.set_defaults(run=run)


def minimal_recipe() -> Path:
    """The shipped minimal recipe: in the working folder, else in the source checkout, else its usual path."""
    if MINIMAL_RECIPE.is_file():
        return MINIMAL_RECIPE
    checkout = Path(__file__).resolve().parents[3] / MINIMAL_RECIPE
    return checkout if checkout.is_file() else MINIMAL_RECIPE


def run(args: argparse.Namespace) -> int:
    from videoflex.data.sources import DataSourceError
    from videoflex.train.errors import CheckpointMismatch, RecipeError, RunLocked, TrainingDiverged
    from videoflex.train.tasks.generator import train_generator
    from videoflex.train.tasks.generator_config import load_generator_config
    from videoflex.train.tasks.tokenizer import train_tokenizer
    from videoflex.train.tasks.tokenizer_config import load_train_config

    load, train, example = {"tokenizer": (load_train_config, train_tokenizer, minimal_recipe()),
                            "generator": (load_generator_config, train_generator, GENERATOR_RECIPE)}[args.what]
    where = args.config or "recipe"
    if args.allow_recipe_change and not args.resume:
        raise UserError("--allow-recipe-change applies to --resume only")
    overrides = list(args.overrides)
    if args.output is not None:
        given = [o.split("=", 1)[1] for o in overrides if o.startswith("out_dir=")]
        if any(Path(g) != args.output for g in given):
            raise UserError(f"-o {args.output} and out_dir={given[0]} name different run folders; give one")
        overrides.append(f"out_dir={args.output}")
    try:
        config = load(args.config, overrides)
    except ValueError as e:  # messages about a recipe file name it (a base: recipe included)
        raise UserError(str(e) if args.config and str(e).startswith(args.config) else f"{where}: {e}") from None
    try:
        path = train(config, resume=args.resume, progress=not args.quiet,
                     allow_recipe_change=args.allow_recipe_change)
    except RecipeError as e:
        hint = "" if args.config else f"; no --config given: start from a recipe, e.g. --config {example}"
        raise UserError(f"{where}: {e}{hint}") from None
    except DataSourceError as e:
        raise UserError(f"{where}: {e}") from None
    except (TrainingDiverged, CheckpointMismatch, RunLocked) as e:
        raise UserError(str(e)) from None
    print(f"model: {path}")
    return 0
