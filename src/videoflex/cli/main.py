"""Entry point of the ``videoflex`` command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

# Each command lives in its own module exposing ``add_parser(subparsers)``; the parser calls ``args.run``.
COMMANDS = ("tokenize", "detokenize", "reconstruct", "inspect", "prepare-data", "eval", "convert", "presets", "train",
            "fetch")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``videoflex CMD: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="videoflex",
        description="VideoFlexTok video tokenizer: tokenize, reconstruct, train and evaluate.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"videoflex.cli.{name.replace('-', '_')}").add_parser(subparsers)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (a file, an option), not a bug: printed as one line, exit status 2.

    Each names the file or option and the problem in its message. Other exceptions keep their traceback.
    """
    from videoflex.cli.errors import UserError
    from videoflex.io.errors import FileError  # videos, token files, latent caches

    return (UserError, FileError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except user_errors() as e:
        print(f"videoflex {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"videoflex {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
