"""The training loop with the tokenizer task: exact resume after kill -9, DDP == one process, NaN stops, foreign checkpoints."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from videoflex.cli.main import main
from videoflex.tokenizers.flex.model import VideoFlexTok
from videoflex.train.checkpoint import list_checkpoints, load_checkpoint
from videoflex.train.errors import CheckpointMismatch, TrainingDiverged
from videoflex.train.loop import setup
from videoflex.train.tasks.tokenizer import TokenizerTask, train_tokenizer
from videoflex.train.tasks.tokenizer_config import load_train_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def recipe(out: Path, cache: Path, **extra: object) -> list[str]:
    """Overrides for a few-step tiny run on synthetic shapes (32x32)."""
    items = {"out_dir": str(out), "model": "flex-tiny", "steps": 6, "batch_size": 4, "save_every": 2,
             "log_every": 1, "eval_every": 1000, "data.size": 32, "data.cache_dir": str(cache),
             "data.train": "[{kind: shapes, count: 12}]", "data.in_memory": "true", "optim.warmup_steps": 2,
             **extra}
    return [f"{k}={v}" for k, v in items.items()]


def cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "videoflex.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path, cache):
    whole = tmp_path / "whole"
    assert main(["train", "tokenizer", "--quiet", *recipe(whole, cache, steps=16)]) == 0
    broken = tmp_path / "broken"
    proc = cli("train", "tokenizer", "--quiet", *recipe(broken, cache, steps=16))
    deadline = time.time() + 120

    def reached_step_4() -> bool:
        return any(p.name >= "step_00000004.pt" for p in (broken / "checkpoints").glob("step_*.pt"))

    while time.time() < deadline and not reached_step_4():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list_checkpoints(broken / "checkpoints")
    assert done and load_checkpoint(done[-1]).step < 16, "the run finished before it could be killed"
    assert main(["train", "tokenizer", "--quiet", "--resume", *recipe(broken, cache, steps=16)]) == 0
    a, b = weights(whole), weights(broken)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"
    assert load_checkpoint(list_checkpoints(broken / "checkpoints")[-1]).model_kind == "flex-tokenizer"
    assert main(["inspect", str(list_checkpoints(broken / "checkpoints")[-1])]) == 0
    steps = [json.loads(line)["step"] for line in (broken / "log.jsonl").read_text().splitlines()]
    # no step logged twice: the records after the resumed checkpoint were cut (a kill between a checkpoint
    # and its own log line can still lose that one line)
    assert steps == sorted(set(steps)) and steps[-1] == 16 and len(steps) >= 15, steps


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, cache, parallel):
    one = tmp_path / "one"
    assert main(["train", "tokenizer", "--quiet", *recipe(one, cache, steps=3)]) == 0
    two = tmp_path / "two"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "videoflex.cli.main", "train", "tokenizer", "--quiet",
                           *recipe(two, cache, steps=3, parallel=parallel)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = weights(one), weights(two)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)
    # and the weights moved: the comparison is not between two untouched initialisations
    init = VideoFlexTok.from_preset("flex-tiny").state_dict()
    assert any(not torch.allclose(a[k], init[k]) for k in a)
    if parallel == "fsdp":
        check_sharded_checkpoints(tmp_path, two, cache, a)


def check_sharded_checkpoints(tmp_path: Path, two: Path, cache: Path, expected: dict[str, torch.Tensor]) -> None:
    """FSDP wrote DCP folders (shards, meta.json, checksums); one process resumes from the step-2 folder to
    the same weights; a changed shard file or a foreign .metadata pickle is refused before DCP reads it."""
    import pickle
    import shutil

    saved = list_checkpoints(two / "checkpoints")
    assert [p.name for p in saved] == ["step_00000002", "step_00000003"] and all(p.is_dir() for p in saved)
    assert {"meta.json", "checksums.json", ".metadata"} <= {f.name for f in saved[0].iterdir()}
    assert main(["inspect", str(saved[0])]) == 0  # described from meta.json, without reading the shards

    def resume_from(folder: Path, out: Path) -> None:
        (out / "checkpoints").mkdir(parents=True)
        shutil.copytree(folder, out / "checkpoints" / saved[0].name)
        train_tokenizer(load_train_config(None, recipe(out, cache, steps=3)), resume=True, progress=False)

    one = tmp_path / "resumed"
    resume_from(saved[0], one)
    for k, v in weights(one).items():
        torch.testing.assert_close(v, expected[k], atol=2e-5, rtol=1e-4, msg=k)
    changed = tmp_path / "changed"
    shutil.copytree(saved[0], changed)
    shard = next(changed.glob("*.distcp"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointMismatch, match="checksum mismatch"):
        resume_from(changed, tmp_path / "changed_run")

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    foreign = tmp_path / "foreign"
    shutil.copytree(saved[0], foreign)
    (foreign / ".metadata").write_bytes(pickle.dumps(Evil()))
    sums = json.loads((foreign / "checksums.json").read_text())
    sums[".metadata"] = __import__("hashlib").sha256((foreign / ".metadata").read_bytes()).hexdigest()
    (foreign / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(CheckpointMismatch, match="is not part of a checkpoint's metadata"):
        resume_from(foreign, tmp_path / "foreign_run")


def test_nan_loss_stops_with_the_step_named_and_keeps_the_last_checkpoint(tmp_path, cache, monkeypatch):
    out = tmp_path / "nan"
    original = VideoFlexTok.training_forward
    calls = {"n": 0}

    def poisoned(self, latents, draws=None, generator=None, feature_block=None):
        calls["n"] += 1
        out = original(self, latents, draws, generator, feature_block)
        return dataclasses.replace(out, loss=out.loss * float("nan")) if calls["n"] == 5 else out

    monkeypatch.setattr(VideoFlexTok, "training_forward", poisoned)
    config = load_train_config(None, recipe(out, cache))
    with pytest.raises(TrainingDiverged, match="at step 5") as err:
        train_tokenizer(config, progress=False)
    assert "step_00000004.pt" in str(err.value)
    saved = list_checkpoints(out / "checkpoints")
    assert [p.name for p in saved] == ["step_00000002.pt", "step_00000004.pt"]
    assert load_checkpoint(saved[-1]).step == 4
    VideoFlexTok.from_pretrained(out / "model")  # the exported model of step 4 is intact


def test_checkpoint_of_another_config_is_refused(tmp_path, cache, capsys):
    out = tmp_path / "mismatch"
    assert main(["train", "tokenizer", "--quiet", *recipe(out, cache, steps=2)]) == 0
    config = load_train_config(None, recipe(out, cache, steps=4, model="flex-demo", **{"data.size": 64}))
    with pytest.raises(CheckpointMismatch, match="different configuration"):
        train_tokenizer(config, resume=True, progress=False)
    assert main(["train", "tokenizer", "--quiet", *recipe(out, cache, steps=4)]) == 2  # no --resume: refused
    assert "--resume" in capsys.readouterr().err


def test_an_unreadable_data_source_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "no_such_folder"
    args = recipe(tmp_path / "run", tmp_path / "cache", **{"data.train": f"[{{kind: folder, path: {missing}, count: 4}}]"})
    assert main(["train", "tokenizer", "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the train source 'folder'" in err[0] and f"{missing}: not a folder" in err[0]
    assert not list(tmp_path.glob("cache/*"))  # nothing half-built
    assert not (tmp_path / "run").exists()  # the failed start removed the out_dir it made


def test_training_from_a_latent_cache(tmp_path, cache):
    latents = tmp_path / "latents"
    assert main(["prepare-data", "--source", "shapes", "--count", "6", "--frames", "17", "--size", "32",
                 "--latents", str(latents), "--model", "flex-tiny", "--quiet"]) == 0
    out = tmp_path / "from_latents"
    assert main(["train", "tokenizer", "--quiet", *recipe(out, cache, steps=2, **{"data.latents": str(latents)})]) == 0
    assert load_checkpoint(list_checkpoints(out / "checkpoints")[-1]).step == 2


@pytest.mark.parametrize("variant", [{"grad_accum": 2}, {"activation_checkpointing": "true"}])
def test_accumulation_and_activation_checkpointing_train_the_same_weights(tmp_path, cache, variant):
    plain, other = tmp_path / "plain", tmp_path / "other"
    assert main(["train", "tokenizer", "--quiet", *recipe(plain, cache, steps=3)]) == 0
    assert main(["train", "tokenizer", "--quiet", *recipe(other, cache, steps=3, **variant)]) == 0
    a, b = weights(plain), weights(other)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)


def test_shipped_recipes_load():
    """configs/*.yaml parse into TrainConfigs (generator_*.yaml into generator recipes); the demo recipe trains
    the demo preset, no recipe trains on the held-out clips, and the text generator's recipe trains on the
    seen combinations and evaluates on the held-out ones."""
    from videoflex.train.tasks.generator_config import load_generator_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    generators = {path.stem: load_generator_config(path) for path in sorted(configs.glob("generator_*.yaml"))}
    assert generators["generator_shapes_class"].condition == "class"
    text = generators["generator_shapes_text"]
    assert (text.condition, text.data, text.eval_data) == ("text", "outputs/tokens/shapes-seen",
                                                           "outputs/tokens/shapes-heldout")
    recipes = {path.stem: load_train_config(path) for path in sorted(configs.glob("*.yaml"))
               if not path.stem.startswith("generator_")}
    assert "demo" in recipes
    assert recipes["demo"].model == "flex-demo"
    for recipe_ in recipes.values():  # carphone (make demo) and cup.mp4 (configs/demo_opencv.yaml) held out
        assert not any(held in name for source in recipe_.data.train for name in source.names
                       for held in ("carphone", "cup.mp4"))


def test_recipe_extends_its_base(tmp_path):
    """``base:`` merges sections key by key, replaces lists, resolves relative to the recipe, and
    command-line overrides still win."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text(
        "steps: 10\nbatch_size: 4\noptim: {lr: 2.0e-3, warmup_steps: 7}\n"
        "data: {size: 32, train: [{kind: shapes, count: 5}], eval: [{kind: shapes, count: 2}]}\n")
    (tmp_path / "sub" / "child.yaml").write_text(
        "base: ../base.yaml\nsteps: 20\noptim: {lr: 5.0e-4}\ndata: {train: [{kind: atari, count: 3}]}\n")
    config = load_train_config(tmp_path / "sub" / "child.yaml", ["batch_size=8"])
    assert (config.steps, config.batch_size) == (20, 8)
    assert (config.optim.lr, config.optim.warmup_steps) == (5e-4, 7)
    assert config.data.size == 32
    assert [(s.kind, s.count) for s in config.data.train] == [("atari", 3)]
    assert [(s.kind, s.count) for s in config.data.eval] == [("shapes", 2)]


def test_recipe_base_errors_are_clear(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nsteps: 2\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        load_train_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_train_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: [a.yaml]\n")
    with pytest.raises(ValueError, match="base must name"):
        load_train_config(tmp_path / "d.yaml")


def test_encoder_lr_scale_slows_only_the_encoder(tmp_path, cache):
    torch.manual_seed(0)  # the trainer's initialisation (seed 0)
    init = VideoFlexTok.from_preset("flex-tiny").state_dict()
    moved = {}
    for scale in (1.0, 1e-6):
        out = tmp_path / f"scale{scale}"
        overrides = recipe(out, cache, steps=3, ema_decay=0, **{"optim.encoder_lr_scale": f"{scale:.1e}"})
        assert main(["train", "tokenizer", "--quiet", *overrides]) == 0
        trained = weights(out)
        moved[scale] = {part: max((trained[k] - init[k]).abs().max().item() for k in trained if k.startswith(part))
                        for part in ("encoder.", "decoder.")}
    assert moved[1.0]["encoder."] > 1e-4 and moved[1e-6]["decoder."] > 1e-4
    assert moved[1e-6]["encoder."] < 1e-6
    logged = [json.loads(line) for line in (tmp_path / f"scale{1e-6}" / "log.jsonl").read_text().splitlines()]
    assert all(record["lr"] > 1e-6 for record in logged if "lr" in record)  # the base rate, not the encoder's


def test_weight_decay_only_on_linear_weights(tmp_path, cache):
    """Biases, learned tokens, positions and registers (e.g. the decoder's register_index) never decay."""
    run = setup(TokenizerTask(load_train_config(None, recipe(tmp_path, cache, model="flex-demo", **{"data.size": 64}))))
    linear = {id(m.weight) for m in run.model.modules() if isinstance(m, torch.nn.Linear)}
    decayed = {id(p) for g in run.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == linear & {id(p) for p in run.params}
    assert id(run.model.decoder.register_index) not in decayed
    assert sum(len(g["params"]) for g in run.optimizer.param_groups) == len(run.params)


def test_encoder_lr_scale_must_be_positive(tmp_path, cache):
    with pytest.raises(ValueError, match="encoder_lr_scale"):
        load_train_config(None, recipe(tmp_path, cache, **{"optim.encoder_lr_scale": 0}))


def test_decoder_stage_keeps_the_ids_and_records_its_flow_times_and_decode_steps(tmp_path, cache):
    """stage=decoder from a saved model: the encoder (so every token id) is unchanged, the decoder moves, and
    the exported config carries the recipe's time_mean/time_std (the loss) and decode_steps (the sampler)."""
    first = tmp_path / "first"
    assert main(["train", "tokenizer", "--quiet", *recipe(first, cache, steps=2)]) == 0
    second = tmp_path / "second"
    overrides = recipe(second, cache, steps=2, model=str(first / "model"), stage="decoder", time_mean=0,
                       time_std=1, decode_steps=3)
    assert main(["train", "tokenizer", "--quiet", *overrides]) == 0
    before, after = VideoFlexTok.from_pretrained(first / "model"), VideoFlexTok.from_pretrained(second / "model")
    assert (after.config.loss.time_mean, after.config.loss.time_std, after.config.sampler.steps) == (0.0, 1.0, 3)
    assert before.config.sampler.steps != 3
    old, new = before.state_dict(), after.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith("encoder."))
    assert any(not torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    video = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    assert torch.equal(before.tokenize(video), after.tokenize(video))


def test_clip_cache_is_kept_per_source(tmp_path, monkeypatch):
    from videoflex.data import clip_cache
    from videoflex.data.config import DataConfig, SourceConfig

    shapes = SourceConfig(kind="shapes", count=3, seed=1)
    stills = SourceConfig(kind="stills", count=2, names=("astronaut", "camera"), seed=2)
    one = DataConfig(frames=5, size=16, train=(shapes,), cache_dir=str(tmp_path))
    first = clip_cache.load_or_build_cache(one, "train", progress=False).clips
    assert first.shape == (3, 3, 5, 16, 16) and first.dtype == torch.uint8
    built = []
    real_build = clip_cache.build_source_cache
    monkeypatch.setattr(clip_cache, "build_source_cache",
                        lambda data, source, split, progress=True: built.append(source.kind)
                        or real_build(data, source, split, progress))
    both = DataConfig(frames=5, size=16, train=(shapes, stills), cache_dir=str(tmp_path))
    clips = clip_cache.load_or_build_cache(both, "train", progress=False).clips
    assert built == ["stills"]  # adding a source decodes only the new one
    assert clips.shape == (5, 3, 5, 16, 16) and torch.equal(clips[:3], first)  # recipe order
    assert torch.equal(clip_cache.load_or_build_cache(both, "train", progress=False).clips, clips)
    assert built == ["stills"] and len(list(tmp_path.glob("train-*.safetensors"))) == 2


class PoolTeacher(torch.nn.Module):
    """A frozen stand-in teacher: a fixed random 3D convolution, ``[B,3,T,H,W] -> [B,8,T/4,H/4,W/4]``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.conv = torch.nn.Conv3d(3, 8, 3, stride=4, padding=1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.conv(video)


def test_repa_trains_its_head_resumes_exactly_and_stays_out_of_the_exported_model(tmp_path, cache):
    plain, aligned = tmp_path / "plain", tmp_path / "repa"
    train_tokenizer(load_train_config(None, recipe(plain, cache)), progress=False)
    config = load_train_config(None, recipe(aligned, cache, **{"repa.weight": 1.0}))
    train_tokenizer(config, progress=False, teacher=PoolTeacher())
    assert weights(aligned).keys() == weights(plain).keys()  # the head is training-only
    logged = [json.loads(line) for line in (aligned / "log.jsonl").read_text().splitlines()]
    assert all(0.0 < r["repa"] <= 2.0 for r in logged) and len(logged) == 6  # 1 - cosine, logged every step
    assert not any("repa" in json.loads(line) for line in (plain / "log.jsonl").read_text().splitlines())
    assert not torch.equal(weights(aligned)["decoder.blocks.0.modulation.linear.weight"],
                           weights(plain)["decoder.blocks.0.modulation.linear.weight"])  # REPA reached the decoder
    final = load_checkpoint(list_checkpoints(aligned / "checkpoints")[-1])
    head = {k: v for k, v in final.model.items() if k.startswith("repa_head.")}
    assert head and "repa_head.out.weight" in final.ema
    # resume from step 4 in a fresh folder: the same weights as the uninterrupted run
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    step4 = aligned / "checkpoints" / "step_00000004.pt"
    (resumed / "checkpoints" / step4.name).write_bytes(step4.read_bytes())
    train_tokenizer(load_train_config(None, recipe(resumed, cache, **{"repa.weight": 1.0})), resume=True, progress=False,
          teacher=PoolTeacher())
    for key, value in weights(aligned).items():
        assert torch.equal(weights(resumed)[key], value), key
    # a checkpoint without the head is refused by a REPA run, and the other way round
    with pytest.raises(CheckpointMismatch, match="without REPA"):
        train_tokenizer(dataclasses.replace(config, out_dir=str(plain), steps=8), resume=True, progress=False,
              teacher=PoolTeacher())
    with pytest.raises(CheckpointMismatch, match="with REPA"):
        train_tokenizer(load_train_config(None, recipe(aligned, cache, steps=8)), resume=True, progress=False)


def test_repa_loss_pools_the_teacher_to_the_decoder_grid_and_skips_prefix_steps():
    from videoflex.train.repa import repa_loss, teacher_targets

    features = torch.arange(2.0, 6.0).reshape(1, 1, 1, 2, 2).repeat_interleave(2, 3).repeat_interleave(2, 4)
    features = torch.cat([features, torch.ones_like(features)], 1)  # [1,2,1,4,4]: 2x2 blocks of 2..5, ones
    target = teacher_targets(features, (1, 2, 2))
    assert target.shape == (1, 1, 4, 2) and target[0, 0, :, 0].tolist() == [2.0, 3.0, 4.0, 5.0]
    predicted = target.repeat(1, 2, 1, 1) * 3.0  # [1,2,4,2]: the right direction in both steps
    both = torch.tensor([[True, True]])
    assert float(repa_loss(predicted, target.repeat(1, 2, 1, 1), both)) == pytest.approx(0.0, abs=1e-6)
    predicted[0, 0] = -predicted[0, 0]  # step 0 points the opposite way: distance 2 there
    assert float(repa_loss(predicted, target.repeat(1, 2, 1, 1), both)) == pytest.approx(1.0, abs=1e-6)
    assert float(repa_loss(predicted, target.repeat(1, 2, 1, 1), torch.tensor([[False, True]]))) == pytest.approx(
        0.0, abs=1e-6)  # a conditioning-prefix step is not in the loss


def test_repa_needs_pixel_clips_and_an_existing_decoder_block(tmp_path, cache):
    with pytest.raises(ValueError, match="latent cache"):
        load_train_config(None, recipe(tmp_path, cache, **{"repa.weight": 1.0, "data.latents": "somewhere"}))
    config = load_train_config(None, recipe(tmp_path / "deep", cache, **{"repa.weight": 1.0, "repa.block": 99}))
    with pytest.raises(ValueError, match="repa.block 99"):
        setup(TokenizerTask(config, teacher=PoolTeacher()))


def test_records_go_to_tensorboard_when_it_is_installed(tmp_path, cache, monkeypatch):
    written: list[tuple[str, float, int]] = []
    folders: list[str] = []

    class Writer:  # stands in for torch.utils.tensorboard.SummaryWriter (the tensorboard package is optional)
        def __init__(self, log_dir: str) -> None:
            folders.append(log_dir)

        def add_scalar(self, name: str, value: float, step: int) -> None:
            written.append((name, value, step))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            folders.append("closed")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    train_tokenizer(load_train_config(None, recipe(tmp_path / "run", cache, steps=3)), progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert folders == [str(tmp_path / "run" / "tensorboard"), "closed"]
    assert len(logged) == 3
    for name in ("loss", "lr", "clips_per_s"):
        assert [(step, value) for n, value, step in written if n == name] == [(r["step"], r[name]) for r in logged]


def test_numbers_in_exponent_notation_are_floats(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 without a dot as text; float fields take it as the number it is
    (tmp_path / "r.yaml").write_text("optim:\n  lr: 1e-3\n")
    assert load_train_config(tmp_path / "r.yaml", ["optim.min_lr_ratio=5E-2"]).optim.lr == 1e-3
    assert load_train_config(None, ["optim.min_lr_ratio=5E-2"]).optim.min_lr_ratio == 0.05
    with pytest.raises(ValueError, match="expected float, got 'fast'"):
        load_train_config(None, ["optim.lr=fast"])


def test_the_loop_reproduces_the_old_trainers_loss_curve_of_the_demo_recipe(tmp_path):
    """The first 20 losses of configs/demo.yaml (at the tiny preset's size, in memory, on the same clips of
    the same two videos) equal those the trainer before the model-agnostic loop logged."""
    fixture = json.loads((Path(__file__).parent / "fixtures" / "demo_recipe_loss.json").read_text())
    configs = Path(__file__).resolve().parents[1] / "configs"
    out = tmp_path / "demo"
    config = load_train_config(configs / "demo.yaml", [*fixture["overrides"], f"out_dir={out}",
                                                       f"data.cache_dir={tmp_path / 'cache'}"])
    assert config.data.in_memory and config.precision == "bf16"
    train_tokenizer(config, progress=False)
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 20
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(fixture["loss"]), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Webdataset shards of 12 moving-shapes clips (17 frames, 32x32), 4 a shard."""
    from videoflex.data.shapes import ShapesConfig, ShapesDataset
    from videoflex.data.shards import write_shards

    folder = tmp_path_factory.mktemp("shards")
    write_shards(ShapesDataset(ShapesConfig(num_samples=12, num_frames=17, size=32)), folder, samples_per_shard=4,
                 progress=False)
    return folder


def test_training_streams_webdataset_shards_through_workers_and_resumes_exactly(tmp_path, cache, shards):
    source = f"[{{kind: shards, path: {shards}, count: 12}}]"
    streamed = tmp_path / "streamed"
    train_tokenizer(load_train_config(None, recipe(streamed, cache, steps=4, num_workers=2, **{
        "data.in_memory": "false", "data.train": source})), progress=False)
    # the same clips held in memory train the same weights
    held = tmp_path / "held"
    train_tokenizer(load_train_config(None, recipe(held, cache, steps=4, **{"data.train": source})), progress=False)
    for key, value in weights(streamed).items():
        assert torch.equal(weights(held)[key], value), key
    # resumed from step 2 in a fresh folder: the same weights as the uninterrupted run
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    step2 = streamed / "checkpoints" / "step_00000002.pt"
    (resumed / "checkpoints" / step2.name).write_bytes(step2.read_bytes())
    train_tokenizer(load_train_config(None, recipe(resumed, cache, steps=4, num_workers=2, **{
        "data.in_memory": "false", "data.train": source})), resume=True, progress=False)
    for key, value in weights(streamed).items():
        assert torch.equal(weights(resumed)[key], value), key


def test_indexed_shards_read_the_clips_the_stream_reads(shards):
    from videoflex.data.shards import IndexedShardDataset, VideoShardDataset

    indexed = IndexedShardDataset(shards)
    streamed = list(VideoShardDataset(shards))
    assert len(indexed) == len(streamed) == 12
    for i in (0, 5, 11):
        assert torch.equal(indexed[i].video, streamed[i].video)
    assert indexed.index.nbytes == 12 * 5 * 8  # five integers a clip, no clip data


def test_activation_checkpointing_keeps_the_state_dict_keys(tmp_path, cache):
    plain = setup(TokenizerTask(load_train_config(None, recipe(tmp_path / "a", cache))))
    wrapped = setup(TokenizerTask(load_train_config(None, recipe(tmp_path / "b", cache,
                                                                  activation_checkpointing="true"))))
    assert any("CheckpointWrapper" in type(m).__name__ for m in wrapped.trainable.modules())
    assert list(wrapped.trainable.state_dict()) == list(plain.trainable.state_dict())
    assert wrapped.names == plain.names


def test_the_sampler_gives_each_process_its_slice_and_resumes_at_any_step():
    from videoflex.train.sampler import StepBatchSampler, global_batch, micro_batches

    one = list(StepBatchSampler(50, 3, 0, 5, 8, micro_batches(8, 1, 0, 1)))
    assert one == [global_batch(3, s, 50, 8).tolist() for s in range(5)]
    per_rank = [list(StepBatchSampler(50, 3, 0, 5, 8, micro_batches(8, 2, r, 2))) for r in range(2)]
    for s in range(5):  # rank 0's two micro-batches, then rank 1's: the global batch
        assert [i for r in range(2) for i in per_rank[r][2 * s] + per_rank[r][2 * s + 1]] == one[s]
    assert list(StepBatchSampler(50, 3, 2, 5, 8, micro_batches(8, 1, 0, 1))) == one[2:]
    with pytest.raises(ValueError, match="split evenly"):
        micro_batches(8, 3, 0, 2)


# ------------------------------------------------------------------- faults: one line before any work

def error_line(capsys) -> str:
    """The one stderr line of a refused command (no traceback, no warning before it)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("videoflex train: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def misshaped_model(tmp_path_factory) -> Path:
    """A saved flex-tiny folder whose one weight has a row more than its stored config says."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("misshaped")
    VideoFlexTok.from_preset("flex-tiny").save_pretrained(folder)
    file = folder / "model.safetensors"
    with safe_open(str(file), "pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    key = "decoder.blocks.0.attn.proj.weight"
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    save_file(state, str(file), metadata=metadata)
    return folder


BAD_RECIPES = {  # override(s) -> a fragment of the one error line
    "steps=0": "steps must be >= 1, got 0",
    "batch_size=-1": "batch_size must be >= 1, got -1",
    "optim.lr=nan": "optim.lr: expected float, got 'nan'",
    "optim.lr=.nan": "lr must be a finite number in (0, inf), got nan",
    "optim.lr=.inf": "lr must be a finite number in (0, inf), got inf",
    "ema_decay=1.5": "ema_decay must lie in [0, 1), got 1.5",
    "optim.betas=[0.9, 1.5]": "betas[1] must be a finite number in [0, 1), got 1.5",
    "optim.weight_decay=-0.1": "weight_decay must be a finite number in [0, inf), got -0.1",
    "optim.warmup_steps=-1": "warmup_steps must be >= 0, got -1",
    "grad_accum=3": "batch_size 4 must split evenly into grad_accum 3",
    "data.fps=0": "fps must be a finite number > 0, got 0.0",
    "data.size=0": "size must be >= 1, got 0",
    "data.train=[{kind: shapes, count: 0}]": "count must be >= 1, got 0",
    "data.train=[]": "nothing to train on: data.train lists no sources",
    "eval_guidance=-1": "eval_guidance must be a finite number in [0, inf), got -1.0",
    "seed=-1": "seed must be >= 0, got -1",
    "optim.lr=[1": "its value is not valid YAML",
    "device=nonesuch": "device=nonesuch:",
    "model=nonesuch": "model: nonesuch: neither a preset",
    "model=flex-demo": "data.size=32: model flex-demo takes 64x64 frames",  # the clips must fit the model
    "data.frames=12": "data.frames=12: model flex-tiny takes clips of 1 + 4*m frames, at most 17",
    "data.frames=21": "data.frames=21: model flex-tiny takes clips of 1 + 4*m frames, at most 17",
    "num_workers=1000": "num_workers must lie in [0, 64], got 1000",
    "time_std=0": "time_std must be a finite number in (0, inf), got 0.0",
    "time_mean=.nan": "time_mean must be a finite number in [-inf, inf), got nan",
    "decode_steps=0": "decode_steps must be >= 1, got 0",
}


@pytest.mark.parametrize("override", list(BAD_RECIPES))
def test_a_bad_recipe_value_is_one_line_before_any_work(tmp_path, override, monkeypatch, capsys):
    """Exit 2, one stderr line naming the field, no model built, no data read, no out_dir."""
    def never(*_args, **_kwargs):
        raise AssertionError("the start went past the recipe checks")

    for name in ("build", "prepare_data", "train_data"):
        monkeypatch.setattr(TokenizerTask, name, never)
    out = tmp_path / "run"
    assert main(["train", "tokenizer", "--quiet", *recipe(out, tmp_path / "cache"), override]) == 2
    assert BAD_RECIPES[override] in error_line(capsys)
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_a_recipe_that_is_not_yaml_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 3\nbatch_size: [1\n")
    assert main(["train", "tokenizer", "--config", str(bad), f"out_dir={tmp_path / 'run'}"]) == 2
    line = error_line(capsys)
    assert f"{bad}: not valid YAML" in line and "(line 3, column 1)" in line and line.count(str(bad)) == 1
    assert not (tmp_path / "run").exists()


def test_without_config_the_error_points_at_the_minimal_recipe(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the message finds the recipe in the source checkout
    assert main(["train", "tokenizer"]) == 2
    line = error_line(capsys)
    assert "nothing to train on" in line and "--config " in line
    minimal = Path(line.rsplit("--config ", 1)[1])
    assert minimal.name == "minimal.yaml" and minimal.is_file()
    assert load_train_config(minimal).data.train  # the recipe it points at trains
    assert not list(tmp_path.iterdir())  # nothing written (runs/tokenizer, the default out_dir, not made)


def test_a_saved_model_whose_weights_do_not_fit_is_one_line_before_any_data(tmp_path, misshaped_model,
                                                                              monkeypatch, capsys):
    monkeypatch.setattr(TokenizerTask, "prepare_data", lambda *_: pytest.fail("data read"))
    out = tmp_path / "run"
    assert main(["train", "tokenizer", "--quiet", *recipe(out, tmp_path / "cache", model=str(misshaped_model))]) == 2
    line = error_line(capsys)
    assert "weights do not fit the model" in line and "decoder.blocks.0.attn.proj.weight: (65, 64) vs (64, 64)" in line
    assert not out.exists()


# ------------------------------------------------------------------- faults: damaged checkpoints, locks

@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache) -> Path:
    """A 6-step run keeping the checkpoints of steps 2, 4 and 6."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "tokenizer", "--quiet", *recipe(out, cache, keep_checkpoints=3)]) == 0
    return out


def damage(path: Path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":  # the same length: only the checksum tells
        path.write_bytes(bytes(torch.randint(0, 256, (len(data),), generator=torch.Generator().manual_seed(0),
                                             dtype=torch.uint8).tolist()))
    elif kind == "unsummed":  # truncated, and without a checksum (a checkpoint from before them): its load fails
        path.with_name(path.name + ".sha256").unlink()
        path.write_bytes(data[:len(data) // 2])
    else:  # one flipped byte in the middle (a zip that may still load)
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(flipped))


@pytest.mark.parametrize("kind", ["truncated", "empty", "garbage", "bit-flip", "unsummed"])
def test_resume_passes_over_a_damaged_newest_checkpoint(tmp_path, cache, trained, kind, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained, out)
    newest = out / "checkpoints" / "step_00000006.pt"
    damage(newest, kind)
    assert main(["train", "tokenizer", "--quiet", "--resume", *recipe(out, cache, keep_checkpoints=3)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: passed over damaged checkpoint(s)"), err
    assert str(newest) in err[0] and "resuming from" in err[0] and err[0].endswith("step_00000004.pt (step 4)")
    # the damaged file is set aside; steps 5 and 6 are trained again to the same weights
    assert (out / "checkpoints" / "step_00000006.pt.damaged").is_file()
    assert load_checkpoint(newest).step == 6
    a, b = weights(trained), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_no_intact_checkpoint_is_one_line(tmp_path, cache, trained, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained, out)
    for path in list_checkpoints(out / "checkpoints"):
        damage(path, "truncated")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main(["train", "tokenizer", "--quiet", "--resume", *recipe(out, cache, keep_checkpoints=3)]) == 2
    line = error_line(capsys)
    assert "no intact checkpoint to resume from" in line and line.count("checksum mismatch") == 3
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing renamed, nothing written


def test_checkpoints_carry_checksums_and_pruning_removes_them(trained):
    from videoflex.train.checkpoint import checksum_path, verify_file

    files = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert files == [f"step_0000000{s}.pt{suffix}" for s in (2, 4, 6) for suffix in ("", ".sha256")]
    for path in list_checkpoints(trained / "checkpoints"):
        verify_file(path)
        assert len(checksum_path(path).read_text().strip()) == 64


def test_a_second_trainer_on_the_same_out_dir_is_refused(tmp_path, cache, capsys):
    out = tmp_path / "run"
    first = cli("train", "tokenizer", "--quiet", *recipe(out, cache, steps=100000, save_every=100000))
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ((out / "log.jsonl").exists() and (out / "log.jsonl").read_text()):
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        listing = sorted(p.name for p in out.iterdir())
        for extra in ([], ["--resume"]):
            assert main(["train", "tokenizer", "--quiet", *extra, *recipe(out, cache, steps=2)]) == 2
            line = error_line(capsys)
            assert f"{out}: another trainer (pid {first.pid}) is running in this out_dir" in line
        assert sorted(p.name for p in out.iterdir()) == listing
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # killed, it holds the lock no more
    assert main(["train", "tokenizer", "--quiet", *recipe(out, cache, steps=2)]) == 0


def test_resume_with_a_changed_recipe_is_refused_naming_the_fields(tmp_path, cache, trained, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    changed = recipe(out, cache, keep_checkpoints=3, batch_size=8, **{"optim.lr": "1.0e-3", "log_every": 3})
    assert main(["train", "tokenizer", "--quiet", "--resume", *changed]) == 2
    line = error_line(capsys)
    assert line.endswith("the recipe differs from the checkpoint's in batch_size, optim.lr; resume with the recipe "
                         "it was trained with, or pass --allow-recipe-change")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["train", "tokenizer", "--quiet", "--allow-recipe-change", *changed]) == 2
    assert "--allow-recipe-change applies to --resume only" in error_line(capsys)
    # fields that do not change the weights may change; with the flag, the others too
    harmless = {"log_every": 3, "eval_every": 7, "save_every": 3, "keep_checkpoints": 4, "num_workers": 0,
                "eval_keep": "[1]", "grad_accum": 2}
    assert main(["train", "tokenizer", "--quiet", "--resume", *recipe(out, cache, **harmless)]) == 0
    assert main(["train", "tokenizer", "--quiet", "--resume", "--allow-recipe-change", *changed]) == 0


def test_recipe_changes_name_dotted_fields_and_skip_the_allowed_ones(tmp_path, cache):
    from videoflex.train.config import config_to_yaml, recipe_changes

    base = load_train_config(None, recipe(tmp_path, cache))
    saved = config_to_yaml(base)
    assert recipe_changes(base, saved) == []
    other = load_train_config(None, recipe(tmp_path / "elsewhere", cache, seed=3, log_every=5, **{
        "optim.betas": "[0.8, 0.9]", "data.train": "[{kind: shapes, count: 13}]", "data.cache_dir": "/x",
        "data.eval": "[{kind: shapes, count: 2}]", "device": "cpu", "parallel": "fsdp"}))
    assert recipe_changes(other, saved) == ["data.train", "optim.betas", "seed"]


def test_a_failed_start_in_an_existing_folder_leaves_it_as_it_was(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    missing = tmp_path / "no_such_folder"
    args = recipe(out, tmp_path / "cache", **{"data.train": f"[{{kind: folder, path: {missing}, count: 4}}]"})
    assert main(["train", "tokenizer", "--quiet", *args]) == 2
    assert "not a folder" in error_line(capsys)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # no .lock, no train_config.yaml


@pytest.mark.parametrize("where", ["under-a-file", "long-name", "long-name-under-new-folders"])
def test_an_out_dir_that_cannot_be_made_is_one_line_and_leaves_nothing(tmp_path, cache, where, capsys):
    (tmp_path / "file").write_text("x")
    out = {"under-a-file": tmp_path / "file" / "run", "long-name": tmp_path / ("a" * 300),
           "long-name-under-new-folders": tmp_path / "new" / "deeper" / ("a" * 300) / "run"}[where]
    assert main(["train", "tokenizer", "--quiet", *recipe(out, cache)]) == 2
    assert f"out_dir={out}: cannot be made (" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_overrides_may_follow_options(tmp_path, cache):
    """``KEY=VALUE`` overrides after a flag join the others, in order (the last one wins)."""
    out = tmp_path / "run"
    items = recipe(out, cache, steps=2)
    assert main(["train", "tokenizer", *items[:3], "--quiet", *items[3:], "steps=1", "log_every=1"]) == 0
    assert load_checkpoint(list_checkpoints(out / "checkpoints")[-1]).step == 1


def test_resume_without_a_checkpoint_says_so(tmp_path, cache, capsys):
    out = tmp_path / "fresh"
    assert main(["train", "tokenizer", "--quiet", "--resume", *recipe(out, cache, steps=1)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: --resume: {out / 'checkpoints'} holds no checkpoint; starting from step 0"]


def test_the_log_is_cut_back_to_the_resumed_step(tmp_path):
    from videoflex.train.run_log import cut_log

    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (2, 4, 6, 8)) + '{"step": 1')
    cut_log(log, 4)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [2, 4]
