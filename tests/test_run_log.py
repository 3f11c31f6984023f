"""The run's records: ``log.jsonl`` and the training-curve plot ``curves.png`` (:mod:`videoflex.train.curves`)."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from videoflex.cli.main import main
from videoflex.train import run_log
from videoflex.train.curves import CURVES_NAME, group_series, plot_curves, read_log, read_series
from videoflex.train.run_log import RunLog

pytest.importorskip("matplotlib", reason="curves.png needs matplotlib (pip install 'videoflex[eval]')")


def records() -> list[dict]:
    """A run logging loss/lr every step and, at evaluations (steps 4 and 8), val_loss and PSNR/SSIM per k."""
    out = []
    for step in range(1, 9):
        record = {"step": step, "loss": 1.0 / step, "flow_loss": 0.5 / step, "lr": 1e-3, "clips_per_s": 10.0 + step}
        if step % 4 == 0:
            record |= {"val_loss": 1.2 / step, "psnr_k16": 20.0 + step, "psnr_k2": 10.0 + step, "psnr_k4": 15.0,
                       "ssim_k2": 0.5, "ssim_k16": 0.7}
        out.append(record)
    return out


def test_fields_are_grouped_by_kind_and_per_k_families_by_k():
    panels = group_series(read_series(records()))
    titles = [p.title for p in panels]
    assert titles == ["loss", "psnr per k", "ssim per k", "lr", "clips_per_s"]
    loss = panels[0]
    assert [s.name for s in loss.series] == ["loss", "flow_loss", "val_loss"] and loss.log_y  # 1 .. 0.0625
    assert loss.series[2].steps == (4, 8) and loss.series[2].values == (0.3, 0.15)
    assert [s.name for s in panels[1].series] == ["k=2", "k=4", "k=16"]  # numeric order, not text order
    assert panels[1].series[2].values == (24.0, 28.0)


def test_non_numbers_and_non_finite_values_are_left_out():
    series = read_series([{"step": 1, "loss": 1.0, "note": "x", "ok": True, "psnr_k1": math.inf},
                          {"step": 2, "loss": math.nan}, {"loss": 3.0}, {"step": "3", "loss": 2.0}])
    assert [(s.name, s.steps, s.values) for s in series] == [("loss", (1,), (1.0,))]
    assert group_series([]) == []
    narrow = group_series(read_series([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]))
    assert not narrow[0].log_y  # a factor under 10: a linear axis


def test_plot_is_a_png_and_nothing_is_written_without_numbers(tmp_path):
    path = plot_curves(records(), tmp_path / "c.png", title="run")
    image = Image.open(path)
    assert image.format == "PNG" and image.width > 600 and image.height > 300
    assert plot_curves([{"step": 1}], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no temporary file left


def test_run_log_draws_when_asked_and_at_close(tmp_path, monkeypatch):
    drawn: list[list[int]] = []
    real = run_log.plot_curves

    def spy(recs, path, **kw):
        recs = list(recs)
        drawn.append([r["step"] for r in recs])
        return real(recs, path, **kw)

    monkeypatch.setattr(run_log, "plot_curves", spy)
    log = RunLog(tmp_path, 0)
    for record in records()[:5]:
        log.write(record, plot=record["step"] == 4)
    assert drawn == [[1, 2, 3, 4]] and (tmp_path / CURVES_NAME).is_file()
    log.close()  # step 5 came after the last drawing
    assert drawn == [[1, 2, 3, 4], [1, 2, 3, 4, 5]]
    # a resumed run cuts the log back and draws from the whole log again
    log = RunLog(tmp_path, 4)
    log.write(records()[4], plot=True)
    log.close()  # nothing new since: not drawn again
    assert drawn[2:] == [[1, 2, 3, 4, 5]]
    assert [r["step"] for r in read_log(tmp_path / "log.jsonl")] == [1, 2, 3, 4, 5]


def test_curves_can_be_off(tmp_path):
    log = RunLog(tmp_path, 0, curves=False)
    log.write(records()[0], plot=True)
    log.close()
    assert not (tmp_path / CURVES_NAME).exists()


def test_the_trainer_writes_curves_at_each_evaluation_and_the_end(tmp_path, monkeypatch):
    drawn: list[int] = []
    real = run_log.plot_curves

    def spy(recs, path, **kw):
        recs = list(recs)
        drawn.append(recs[-1]["step"])
        return real(recs, path, **kw)

    monkeypatch.setattr(run_log, "plot_curves", spy)
    out = tmp_path / "run"
    items = {"out_dir": out, "model": "flex-tiny", "steps": 5, "batch_size": 2, "save_every": 100, "log_every": 1,
             "eval_every": 2, "eval_keep": "[1, 16]", "eval_steps": 1, "eval_clips": 1, "data.size": 32,
             "data.frames": 5,
             "data.cache_dir": tmp_path / "cache", "data.train": "[{kind: shapes, count: 4}]",
             "data.eval": "[{kind: shapes, count: 2}]", "data.in_memory": "true", "optim.warmup_steps": 1}
    assert main(["train", "tokenizer", "--quiet", *(f"{k}={v}" for k, v in items.items())]) == 0
    assert drawn == [2, 4, 5]  # the evaluations (2, 4) and the last step (an evaluation too)
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"psnr_k1", "psnr_k16"} <= logged[1].keys()
    assert Image.open(out / CURVES_NAME).format == "PNG"
