"""Freed memory kept for reuse (videoflex.utils.memory): fewer page faults, the CLI's switch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from videoflex.cli.main import main
from videoflex.utils import memory

# Allocate, write and free a 64 MiB tensor eight times; print whether the thresholds were set and the minor page
# faults of the last five rounds. The first three are warm-up: the heap grows to hold the tensor twice, in
# rounds 1 and 2 or 1 and 3 (small allocations made between rounds, by torch's threads among others, can land
# where the freed tensor was).
CYCLES = """
import resource, sys, torch
from videoflex.utils.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
for _ in range(3):
    torch.empty(16 * 2**20).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.empty(16 * 2**20).fill_(1.0)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # the C library's defaults
    out = subprocess.run([sys.executable, "-c", CYCLES, mode], capture_output=True, text=True, env=env, check=True)
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_kept_memory_is_reused_without_page_faults():
    default_kept, default_faults = _faults("default")
    kept, kept_faults = _faults("keep")
    assert not default_kept and kept
    # glibc's default: each 64 MiB tensor is a fresh mapping, 16,384 pages faulted in per round
    assert default_faults > 5 * 16_384 * 0.9
    assert kept_faults < 0.05 * default_faults


def test_switch_in_the_environment(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setenv(memory.ENV_SWITCH, "0")
    assert memory.keep_freed_memory_unless_disabled() is False and calls == []
    monkeypatch.setenv(memory.ENV_SWITCH, "1")
    assert memory.keep_freed_memory_unless_disabled() is True and calls == [1]
    monkeypatch.delenv(memory.ENV_SWITCH)
    assert memory.keep_freed_memory_unless_disabled() is True and calls == [1, 1]


def test_cli_keeps_freed_memory(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory_unless_disabled", lambda: calls.append(1) or True)
    assert main(["presets"]) == 0
    assert calls == [1]


def test_other_platforms_change_nothing(monkeypatch):
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_memory() is False
