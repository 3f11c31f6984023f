"""The README's transcripts are current: ``scripts/readme_transcripts.py --check`` reruns the commands shown
in the README's marked blocks and fails on any difference but wall times (``make readme`` rewrites them).

The fast test covers the usage synopses (one process) and the error messages; the full check, which runs
every transcript (about a minute on 2 CPU cores), is marked slow."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "readme_transcripts.py"


def load_script():
    spec = importlib.util.spec_from_file_location("readme_transcripts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def check(*only: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(SCRIPT), "--check", *(["--only", ",".join(only)] if only else [])]
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=900)


def test_blocks_are_marked_and_parsed():
    script = load_script()
    blocks = script.find_blocks((ROOT / "README.md").read_text())
    names = {b.name for b in blocks if b.kind == "transcript"}
    assert {"tokenize", "inspect", "errors", "presets", "demo"} <= names
    usages = {b.name for b in blocks if b.kind == "usage"}
    assert {"videoflex tokenize", "videoflex reconstruct", "videoflex prepare-data"} <= usages
    for block in blocks:
        if block.kind == "transcript":
            assert block.commands, f"transcript {block.name} shows no $ command"
            assert block.fence == "```console"


def test_wall_times_are_ignored_and_nothing_else():
    script = load_script()
    a = "    1       5    13.74   0.193      0.0\ntime      0.4 s\n... 1.0 s\n"
    b = "    1       5    13.74   0.193      1.5\ntime      13.2 s\n... 2.0 s\n"
    assert script.normalise(a) == script.normalise(b)
    assert script.normalise(a) != script.normalise(a.replace("13.74", "13.75"))
    assert script.normalise(a) != script.normalise(a.replace("0.193", "0.194"))


def test_check_reports_and_write_rewrites(tmp_path, monkeypatch, capsys):
    """--check prints a diff and exits 1 without writing; a plain run rewrites stale blocks, leaves a block
    whose wall times alone changed (unless --force) and everything outside the markers as it was."""
    script = load_script()
    readme = tmp_path / "README.md"
    text = ("intro\n<!-- transcript: a -->\n```console\n$ videoflex presets\nold line\n```\n<!-- /transcript -->\n"
            "mid\n<!-- transcript: b -->\n```console\n$ make demo\ntime      0.4 s\n```\n<!-- /transcript -->\nend\n")
    readme.write_text(text)
    runs = {"a": "$ videoflex presets\nnew line\n", "b": "$ make demo\ntime      0.9 s\n"}
    monkeypatch.setattr(script, "regenerate", lambda text, only, *args: {
        b.start: runs[b.name] for b in script.find_blocks(text) if script.selected(b, only)})
    assert script.main(["--check", "--readme", str(readme)]) == 1
    out = capsys.readouterr().out
    assert "-old line\n+new line" in out and "0.9" not in out
    assert readme.read_text() == text
    assert script.main(["--readme", str(readme)]) == 0
    assert readme.read_text() == text.replace("old line", "new line")
    assert script.main(["--check", "--readme", str(readme)]) == 0
    assert script.main(["--readme", str(readme), "--force", "--only", "b"]) == 0
    assert readme.read_text() == text.replace("old line", "new line").replace("0.4 s", "0.9 s")


def test_a_stale_install_is_refused_before_make_runs(tmp_path, monkeypatch):
    """With ``.venv/.installed`` missing or older than a prerequisite of it in the Makefile (``pyproject.toml``,
    the venv's python), ``make demo`` would reinstall in the scratch folder and the transcript would record pip's
    error: the script stops first and says why."""
    script = load_script()
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.touch()
    os.utime(python, (1_000_000, 1_000_000))
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    assert "is missing" in script.install_problem(tmp_path)
    stamp = tmp_path / ".venv" / ".installed"
    stamp.touch()
    os.utime(stamp, (1_000_000, 1_000_000))
    assert "is older than" in script.install_problem(tmp_path)
    os.utime(stamp, None)
    os.utime(tmp_path / "pyproject.toml", (1_000_000, 1_000_000))
    assert script.install_problem(tmp_path) is None
    os.utime(stamp, (2_000_000, 2_000_000))
    os.utime(python, None)  # a venv made again after the install
    assert "is older than" in script.install_problem(tmp_path)
    os.utime(python, (1_000_000, 1_000_000))

    os.utime(stamp, (1_000_000, 1_000_000))
    os.utime(tmp_path / "pyproject.toml", None)
    monkeypatch.setattr(script, "ROOT", tmp_path)
    text = "<!-- transcript: d -->\n```console\n$ make demo\n```\n<!-- /transcript -->\n"
    with pytest.raises(SystemExit, match="make install"):
        script.regenerate(text, None, sys.executable, 10.0)
    bare = text.replace("transcript: d", "transcript: d bare-checkout")  # links no Makefile: not refused
    monkeypatch.setattr(script, "clip_path", lambda python: "clip.mp4")
    monkeypatch.setattr(script, "run_transcript", lambda block, *args: "$ make demo\n")
    monkeypatch.setattr(script, "make_scratch", lambda folder, bare: folder)
    assert list(script.regenerate(bare, None, sys.executable, 10.0).values()) == ["$ make demo\n"]


def test_usage_synopses_and_error_messages_are_current():
    done = check("usage", "errors")
    assert done.returncode == 0, f"stale README transcripts; run `make readme`:\n{done.stdout}{done.stderr}"


@pytest.mark.slow
def test_every_transcript_is_current():
    done = check()
    assert done.returncode == 0, f"stale README transcripts; run `make readme`:\n{done.stdout}{done.stderr}"


def test_only_runs_the_transcripts_a_block_reads_from_first():
    """``--only r`` for a block marked ``after=w`` runs ``w`` first (its files are there for ``r``) and returns
    only ``r``'s new body; without the mark ``r`` finds no file; a mark naming no transcript above is refused."""
    script = load_script()
    text = ("<!-- transcript: w -->\n```console\n$ echo written > note.txt\n```\n<!-- /transcript -->\n"
            "<!-- transcript: r after=w -->\n```console\n$ cat note.txt\n```\n<!-- /transcript -->\n")
    blocks = script.find_blocks(text)
    assert blocks[1].after == ["w"]
    new = script.regenerate(text, {"r"}, sys.executable, 30.0)
    assert list(new.values()) == ["$ cat note.txt\nwritten\n"]
    alone = script.regenerate(text.replace(" after=w", ""), {"r"}, sys.executable, 30.0)
    assert "No such file" in next(iter(alone.values()))
    with pytest.raises(SystemExit, match=r"runs after \['r'\]"):
        script.find_blocks(text.replace("transcript: w -->", "transcript: w after=r -->"))
    with pytest.raises(SystemExit, match=r"runs after \['x'\]"):
        script.find_blocks(text.replace("after=w", "after=w,x"))
