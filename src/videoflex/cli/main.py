"""Entry point of the ``videoflex`` command line."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each command lives in its own module exposing ``add_parser(subparsers)``; the parser calls ``args.run``.
COMMANDS = ("presets", "train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videoflex",
        description="VideoFlexTok video tokenizer: tokenize, reconstruct, train and evaluate.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"videoflex.cli.{name.replace('-', '_')}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from videoflex.cli.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UserError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"videoflex {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"videoflex {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
