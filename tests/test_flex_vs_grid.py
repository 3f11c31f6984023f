"""The equal-compute bookkeeping of benchmarks/flex_vs_grid.py: parameter counts as the generator task builds
the model, FLOPs per step, and step counts that reach one FLOPs target within one step."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import flex_vs_grid as bench

from videoflex.generators.ar.model import ARGenerator
from videoflex.registry import PRESETS


def test_generator_parameters_match_the_built_model() -> None:
    parts = bench.generator_parameters("ar-debug", vocab=1000, tokens_per_step=4, steps=5, classes=8)
    config = dataclasses.replace(PRESETS["ar-debug"].config(), vocab_size=1000, tokens_per_step=4, max_steps=5,
                                 num_classes=8, class_names=())
    model = ARGenerator(config)
    assert sum(parts.values()) == sum(p.numel() for p in model.parameters())
    assert parts["head"] >= 1000 * config.width  # the head maps the width to every code


def test_step_counts_match_one_flops_target() -> None:
    target = 1e12
    runs = [bench.flops_per_step(p, t, 16) for p, t in ((4_000_000, 20), (4_000_000, 80), (9_000_000, 80))]
    assert runs[1] == 4 * runs[0]  # 4x the tokens per clip, 4x the FLOPs
    for per_step in runs:
        steps = bench.steps_for(target, per_step)
        assert steps * per_step >= target > (steps - 1) * per_step
    assert bench.steps_for(1.0, 1e9) == 1


def test_stage_times_survive_a_resumed_run(tmp_path, monkeypatch) -> None:
    ran = []
    monkeypatch.setattr(bench, "videoflex", lambda *args, log: (ran.append(args), log.append(" ".join(args))))
    log: list[str] = []
    seconds = bench.timed(tmp_path, "train", ["presets"], log)
    assert ran == [("presets",)] and log == ["presets"] and seconds >= 0
    # resumed: the stage is not run again and its recorded time comes back; a stage never timed is NaN
    assert bench.timed(tmp_path, "train", None, log) == seconds and len(ran) == 1
    assert bench.timed(tmp_path, "eval", None, log) != bench.timed(tmp_path, "eval", None, log)  # NaN
