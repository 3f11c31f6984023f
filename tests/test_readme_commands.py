"""The README's commands exist: every ``videoflex ...`` command line in its code blocks names a sub-command the
parser has, and every ``--option`` on it is an option of that sub-command (a renamed or removed flag fails
here instead of in a user's terminal). The Makefile's ``videoflex`` lines are checked the same way."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from videoflex.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]


def code_lines(text: str) -> list[str]:
    """The lines inside fenced code blocks, with ``\\`` continuations joined and ``$ `` prompts removed."""
    lines, inside, pending = [], False, ""
    for raw in text.splitlines():
        if raw.strip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        lines.append(line.removeprefix("$ "))
    return lines


def commands(text: str) -> list[list[str]]:
    """The argument lists after ``videoflex`` of every command line (usage synopses in brackets skipped)."""
    found = []
    for line in code_lines(text):
        line = line.split("#")[0].replace("$(BIN)/", "").replace(".venv/bin/", "")
        match = re.search(r"(?:^|[\s;&|(])videoflex\s+(.*)", line)
        if match is None or "[" in match.group(1).split(" ")[0]:
            continue
        try:
            words = shlex.split(match.group(1))
        except ValueError:
            continue
        if words and not words[0].startswith("[") and not words[0].endswith(":"):  # not an error line's prefix
            found.append(words)
    return found


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def check(words: list[str]) -> str | None:
    """None if ``videoflex WORDS`` names an existing command and only its options, else what is wrong."""
    parser = build_parser()
    path = []
    while True:
        subs = subparsers(parser)
        if not subs:
            break
        if not words or words[0] not in subs:
            return f"videoflex {' '.join(path)}: no sub-command {words[0] if words else '(none)'!r}"
        path.append(words[0])
        parser, words = subs[words[0]], words[1:]
    known = {option for action in parser._actions for option in action.option_strings}
    unknown = [w.split("=")[0] for w in words if w.startswith("-") and w.split("=")[0] not in known
               and not re.fullmatch(r"-\d+(\.\d+)?", w)]
    return f"videoflex {' '.join(path)}: unknown option(s) {unknown}" if unknown else None


@pytest.mark.parametrize("document", ["README.md", "Makefile"])
def test_every_documented_command_and_option_exists(document):
    text = (ROOT / document).read_text()
    if document == "Makefile":  # recipe lines are commands too
        text = "```\n" + text + "\n```"
    found = commands(text)
    assert len(found) >= (20 if document == "README.md" else 2), f"too few commands found in {document}"
    problems = [f"{' '.join(words)}\n    -> {problem}" for words in found if (problem := check(words))]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_renamed_flag_and_an_unknown_command():
    assert check(["generate", "--model", "m", "--class", "left", "-o", "x.mp4"]) is None
    assert "unknown option(s) ['--weights']" in check(["eval", "fvd", "--weights", "w"])
    assert "no sub-command 'generat'" in check(["generat", "--model", "m"])
    assert commands("```console\n$ videoflex train generator --config c.yaml --resume\n```") == [
        ["train", "generator", "--config", "c.yaml", "--resume"]]
    assert commands("```\nvideoflex generate --model m \\\n    --class left -o x.mp4\n```") == [
        ["generate", "--model", "m", "--class", "left", "-o", "x.mp4"]]
