"""The generator task on the shared training loop: exact resume after kill -9, the recorded tokenizer and
classes, nested budgets, and one-line refusals of data the generator cannot train on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from videoflex.cli.main import main
from videoflex.generators.ar.model import ARGenerator
from videoflex.tokenizers.flex.model import VideoFlexTok
from videoflex.train.checkpoint import list_checkpoints, load_checkpoint
from videoflex.train.tasks.generator import GeneratorTask
from videoflex.train.tasks.generator_config import GeneratorTrainConfig


def tokenize(out: Path, model: str, count: int = 12, label_by: str = "colour") -> Path:
    assert main(["tokenize-dataset", "--source", "shapes", "--count", str(count), "--frames", "9", "--size", "32",
                 "--label-by", label_by, "--model", model, "--clips-per-shard", "8", "--quiet", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    """12 clips of 9 frames (3 latent steps of 16 ids over 64,000 codes) of the flex-tiny preset, labelled by colour."""
    return tokenize(tmp_path_factory.mktemp("tokens") / "shapes", "flex-tiny")


def recipe(out: Path, tokens_dir: Path, **extra: object) -> list[str]:
    items = {"out_dir": str(out), "model": "ar-debug", "data": str(tokens_dir), "tokenizer": "flex-tiny", "steps": 6,
             "batch_size": 4, "save_every": 2, "log_every": 1, "eval_every": 1000, "eval_samples": 0,
             "optim.warmup_steps": 2, "num_workers": 0, "budget": 4, **extra}
    return [f"{k}={v}" for k, v in items.items()]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path, tokens):
    whole = tmp_path / "whole"
    assert main(["train", "generator", "--quiet", *recipe(whole, tokens, steps=16)]) == 0
    broken = tmp_path / "broken"
    proc = subprocess.Popen([sys.executable, "-m", "videoflex.cli.main", "train", "generator", "--quiet",
                             *recipe(broken, tokens, steps=16)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name >= "step_00000004.pt"
                                              for p in (broken / "checkpoints").glob("step_*.pt")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list_checkpoints(broken / "checkpoints")
    assert done and load_checkpoint(done[-1]).step < 16, "the run finished before it could be killed"
    assert main(["train", "generator", "--quiet", "--resume", *recipe(broken, tokens, steps=16)]) == 0
    a, b = weights(whole), weights(broken)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"
    assert load_checkpoint(list_checkpoints(broken / "checkpoints")[-1]).model_kind == "ar-generator"
    steps = [json.loads(line)["step"] for line in (broken / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 16
    # the weights moved: the comparison is not between two untouched initialisations
    fresh = ARGenerator(ARGenerator.from_pretrained(whole / "model").config).state_dict()
    assert any(not torch.equal(a[k], fresh[k]) for k in a)


def test_the_exported_generator_records_its_data_and_tokenizer_and_generates(tmp_path, tokens):
    run = tmp_path / "run"
    assert main(["train", "generator", "--quiet", *recipe(run, tokens, steps=2, eval_data=str(tokens),
                                                         eval_samples=3)]) == 0
    model = ARGenerator.from_pretrained(run / "model")
    c = model.config
    tokenizer = VideoFlexTok.from_preset("flex-tiny")
    assert (c.vocab_size, c.tokens_per_step, c.max_steps) == (64000, 4, 3)
    assert c.class_names == ("red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange")
    assert c.num_classes == 8 and c.tokenizer.path == "flex-tiny"
    assert c.tokenizer.identity.same_model(tokenizer.identity)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("val_loss" in record for record in log)
    assert (run / "samples" / "step_00000002.png").stat().st_size > 0  # 3 classes x 1 sample, decoded
    assert c.fps == 8.0
    video = tmp_path / "red.mp4"
    assert main(["generate", "--model", str(run / "model"), "--class", "red", "--frames", "9", "--quiet",
                 "-o", str(video)]) == 0
    assert video.stat().st_size > 0


def test_nested_budgets_are_drawn_per_step_from_powers_of_two(tmp_path, tokens):
    config = GeneratorTrainConfig(out_dir=str(tmp_path / "n"), data=str(tokens), tokenizer="flex-tiny",
                                  budget=16, nested=True)
    task = GeneratorTask(config)
    task.build(torch.device("cpu"))
    budgets = {task.draws(step, 4).budget for step in range(40)}
    assert budgets == {1, 2, 4, 8, 16}
    assert task.draws(7, 4).budget == task.draws(7, 4).budget  # a pure function of seed and step
    fixed = GeneratorTask(GeneratorTrainConfig(out_dir=str(tmp_path / "f"), data=str(tokens), budget=4))
    fixed.build(torch.device("cpu"))
    assert {fixed.draws(step, 4).budget for step in range(10)} == {4}
    drop = torch.cat([fixed.draws(step, 64).drop for step in range(20)]).float().mean()
    assert 0.05 < float(drop) < 0.15  # ar-debug's guidance dropout is 0.1


@pytest.mark.parametrize("override, message", [
    ({"data": "''"}, "nothing to train on"),
    ({"data": "missing-folder"}, "data:"),
    ({"budget": 32}, "budget=32: the token dataset has 16 ids per step"),
    ({"tokenizer": "flex-shapes"}, "was made by flex-tokenizer 'flex-tiny'"),
    ({"model": "flex-tiny"}, "this task trains 'ar-generator' models"),
    ({"model": "no-such-thing"}, "neither a preset"),
    ({"condition": "sometimes"}, "condition: 'sometimes' is not one of"),
    ({"order": "diagonal"}, "order: 'diagonal' is not one of"),
])
def test_bad_recipes_are_one_line_before_anything_is_written(tmp_path, tokens, capsys, override, message):
    out = tmp_path / "bad"
    assert main(["train", "generator", "--quiet", *recipe(out, tokens, **override)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_generator_refuses_token_shards_of_another_tokenizer(tmp_path, tokens, capsys):
    run = tmp_path / "run"
    assert main(["train", "generator", "--quiet", *recipe(run, tokens, steps=2)]) == 0
    other = tokenize(tmp_path / "other", "flex-shapes", count=8)
    again = tmp_path / "again"
    assert main(["train", "generator", "--quiet", *recipe(again, other, model=str(run / "model"),
                                                         tokenizer="flex-shapes")]) == 2
    err = capsys.readouterr().err.strip()
    assert "was trained on ids of flex-tokenizer 'flex-tiny'" in err and len(err.splitlines()) == 1, err
    unlabelled = tmp_path / "stills"
    assert main(["tokenize-dataset", "--source", "stills", "--count", "4", "--frames", "9", "--size", "32",
                 "--model", "flex-tiny", "--quiet", "-o", str(unlabelled)]) == 0
    assert main(["train", "generator", "--quiet", *recipe(tmp_path / "u", unlabelled)]) == 2
    assert "has no class names" in capsys.readouterr().err


def test_a_text_generator_trains_on_captions_and_records_its_encoder(tmp_path, bert_folder):
    """condition text: captions through the frozen encoder (each caption encoded once), the encoder recorded in
    the exported model, which then generates from a prompt."""
    data = tmp_path / "seen"
    assert main(["tokenize-dataset", "--source", "shapes", "--count", "8", "--frames", "9", "--size", "32",
                 "--combinations", "seen", "--model", "flex-tiny", "--quiet", "-o", str(data)]) == 0
    run = tmp_path / "run"
    assert main(["train", "generator", "--quiet", *recipe(run, data, model="ar-debug-text", condition="text",
                                                         text_encoder=str(bert_folder), steps=3)]) == 0
    model = ARGenerator.from_pretrained(run / "model")
    assert model.config.text_encoder == str(bert_folder) and model.config.text_dim == 32
    assert model.config.num_classes == 0 and model.config.class_names == ()
    video = tmp_path / "v.mp4"
    assert main(["generate", "--model", str(run / "model"), "--prompt", "a red circle moving left", "--frames", "9",
                 "--quiet", "-o", str(video)]) == 0
    assert video.stat().st_size > 0
