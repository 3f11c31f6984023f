"""Entry point of the ``videoflex`` command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

# Each command lives in its own module exposing ``add_parser(subparsers)``; the parser calls ``args.run``.
COMMANDS = ("tokenize", "detokenize", "reconstruct", "inspect", "prepare-data", "tokenize-dataset", "generate", "eval",
            "convert", "presets", "train", "fetch")


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


STREAMED_WARNINGS = frozenset({"train"})
"""Commands whose warnings are printed as they happen (a training run lasts hours); every other command holds
its warnings until it ends (see :func:`main`)."""


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user error (:func:`user_errors`) is ONE stderr line, exit status 2: the warnings the
    command gave before it are folded into that line (``... [warnings: A; B]``); when the command succeeds
    they are printed after it, one ``warning:`` line each. Bad options stop the parser (exit status 2) before
    any work. Returns the exit status (also for ``--help`` and bad options: it never raises ``SystemExit``).

    Freed memory stays in the process for reuse (:func:`videoflex.utils.memory.keep_freed_memory`; off with
    ``VIDEOFLEX_KEEP_FREED_MEMORY=0``)."""
    from videoflex.cli.common import held_warnings, one_line
    from videoflex.utils.memory import keep_freed_memory_unless_disabled

    keep_freed_memory_unless_disabled()
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as done:  # a bad option (one line, printed by _Parser.error) or --help
        return int(done.code or 0)
    if extra:  # KEY=VALUE overrides after an option (`train ... --resume steps=9`) join the others
        if getattr(args, "overrides", None) is not None and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            command = " ".join(part for part in (args.command, getattr(args, "what", None)) if part)
            print(f"videoflex {command}: error: unrecognized arguments: {' '.join(extra)} "
                  f"(see 'videoflex {command} --help')", file=sys.stderr)
            return 2
    if args.command in STREAMED_WARNINGS:
        return _run(args, [])
    with held_warnings() as held:
        try:
            return _run(args, held)
        finally:  # after success or a traceback (a user error took them into its line and cleared them)
            for message in dict.fromkeys(held):
                print(f"warning: {one_line(message)}", file=sys.stderr)


def _run(args: argparse.Namespace, held: list[str]) -> int:
    from videoflex.cli.common import one_line

    try:
        return int(args.run(args) or 0)
    except user_errors() as e:
        folded = f" [warnings: {'; '.join(one_line(m) for m in dict.fromkeys(held))}]" if held else ""
        held.clear()
        print(f"videoflex {args.command}: error: {one_line(e)}{folded}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"videoflex {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
