"""Shared helpers of the benchmarks: run one measurement in a fresh process (clean peak memory), run a
``videoflex`` command with the benchmark's interpreter."""

from __future__ import annotations

import json
import resource
import shlex
import subprocess
import sys


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(script: str, *args: str) -> dict:
    """Run ``script --one ARGS`` in a new interpreter and parse the JSON line it prints last."""
    out = subprocess.run([sys.executable, script, "--one", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def videoflex(*args: str, log: list[str] | None = None) -> None:
    """Run ``videoflex ARGS`` (the CLI of this interpreter's package); append the shell line to ``log``."""
    if log is not None:
        log.append(shlex.join(["videoflex", *args]))
    subprocess.run([sys.executable, "-m", "videoflex.cli.main", *args], check=True)
