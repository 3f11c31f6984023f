"""``videoflex generate``: a class-conditional generator (the ar-debug architecture over flex-tiny's ids) sampled
and decoded to mp4 through the tokenizer it records."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import randomize_
from PIL import Image

from videoflex import registry
from videoflex.cli.main import main
from videoflex.eval.generated_clips import check_pair, frames_for_steps, steps_for_frames, temporal_factor
from videoflex.generators.ar.config import TokenizerRef
from videoflex.generators.ar.model import ARGenerator
from videoflex.generators.ar.presets import debug
from videoflex.io.tokens import read_token_header
from videoflex.io.video import probe_video, read_video

CLASSES = ("red", "green", "blue", "white")


@pytest.fixture(scope="module")
def tokenizer():
    """flex-tiny with every parameter random (the preset's zero-initialised code projection ignores the ids)."""
    return randomize_(registry.load_model("flex-tiny"), std=0.1).eval()


def _generator(tok, path: str, **changes) -> ARGenerator:
    fields = {"vocab_size": tok.codebook_size, "max_steps": 5, "class_names": CLASSES,
              "tokenizer": TokenizerRef.from_identity(tok.identity, path), **changes}
    config = dataclasses.replace(debug(), **fields)
    torch.manual_seed(0)
    return ARGenerator(config)


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory, tokenizer):
    """A saved generator whose tokenizer is saved beside it and recorded by the relative path ``tok``."""
    root = tmp_path_factory.mktemp("gen")
    tokenizer.save_pretrained(root / "model" / "tok")
    _generator(tokenizer, "tok").save_pretrained(root / "model")
    return root / "model"


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(["generate", *map(str, args), "--quiet"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_frames_and_steps(tokenizer):
    assert temporal_factor(tokenizer) == 4
    assert steps_for_frames(tokenizer, 17) == 5 and steps_for_frames(tokenizer, 81) == 21
    assert frames_for_steps(tokenizer, 21) == 81 and steps_for_frames(tokenizer, 1) == 1
    with pytest.raises(ValueError, match="nearest to 20 are 17 or 21"):
        steps_for_frames(tokenizer, 20)


def test_check_pair_refuses_another_tokenizer_vocabulary_and_budget(tokenizer):
    other = registry.load_model("flex-demo")
    generator = _generator(tokenizer, "flex-tiny")
    check_pair(generator, tokenizer, 4)
    with pytest.raises(ValueError, match="models the ids of flex-tokenizer 'flex-tiny'.*not of flex-tokenizer 'flex-demo'"):
        check_pair(generator, other, 4)
    with pytest.raises(ValueError, match="budget 5"):
        check_pair(generator, tokenizer, 5)
    small = _generator(tokenizer, "", vocab_size=64, tokenizer=TokenizerRef())
    with pytest.raises(ValueError, match="vocabulary of 64"):
        check_pair(small, tokenizer, 4)


def test_writes_the_requested_video_byte_identical_per_seed(gen_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recorded tokenizer path "tok" is found beside the generator
    code, out, err = _run(capsys, "--model", gen_dir, "--class", "green", "-o", "a.mp4", "--seed", "3")
    assert code == 0, err
    assert "5 steps x 4 tokens = 20 tokens" in out and " s in all" in out
    info = probe_video(tmp_path / "a.mp4")
    assert info.num_frames == 17 and info.size == (32, 32)
    assert _run(capsys, "--model", gen_dir, "--class", "1", "-o", "b.mp4", "--seed", "3")[0] == 0
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()  # name and index: one class
    assert _run(capsys, "--model", gen_dir, "--class", "green", "-o", "c.mp4", "--seed", "4")[0] == 0
    assert _run(capsys, "--model", gen_dir, "--class", "blue", "-o", "d.mp4", "--seed", "3")[0] == 0
    first = read_video(tmp_path / "a.mp4").video
    for other in ("c.mp4", "d.mp4"):
        assert (tmp_path / other).read_bytes() != (tmp_path / "a.mp4").read_bytes()
        assert not torch.equal(read_video(tmp_path / other).video, first)


def test_many_samples_ids_and_greedy_cache_equality(gen_dir, tmp_path, capsys):
    code, _, err = _run(capsys, "--model", gen_dir, "--class", "red", "--num", "2", "-o", tmp_path / "many",
                        "--ids", tmp_path / "ids", "--steps", "2", "--tokenizer", gen_dir / "tok")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["sample-000.mp4", "sample-001.mp4"]
    header = read_token_header(tmp_path / "ids" / "sample-001.safetensors")
    assert (header.token_steps, header.tokens_per_step, header.metadata.num_frames) == (2, 4, 5)
    for name, extra in (("cached.mp4", []), ("uncached.mp4", ["--no-cache"])):
        assert _run(capsys, "--model", gen_dir, "--class", "red", "-o", tmp_path / name, "--steps", "2",
                    "--temperature", "0", *extra)[0] == 0
    assert (tmp_path / "cached.mp4").read_bytes() == (tmp_path / "uncached.mp4").read_bytes()


def test_several_classes_write_named_videos_and_one_grid(gen_dir, tmp_path, capsys):
    """--class A,B: a folder of NN-NAME-NNN.mp4, class i sampled with seed + i (so its videos are those of a
    run for that class alone with that seed), and --grid: one PNG row per class."""
    code, out, err = _run(capsys, "--model", gen_dir, "--class", "red,blue,red", "--num", "2", "--steps", "2",
                          "-o", tmp_path / "classes", "--grid", tmp_path / "grid.png", "--seed", "3")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "classes").iterdir()) == [
        "00-red-000.mp4", "00-red-001.mp4", "01-blue-000.mp4", "01-blue-001.mp4"]
    assert "2 classes: 4 x 5 frames" in out
    assert _run(capsys, "--model", gen_dir, "--class", "blue", "--num", "2", "--steps", "2", "-o",
                tmp_path / "blue", "--seed", "4")[0] == 0
    assert (tmp_path / "blue" / "sample-001.mp4").read_bytes() == \
        (tmp_path / "classes" / "01-blue-001.mp4").read_bytes()
    with Image.open(tmp_path / "grid.png") as image:
        assert image.format == "PNG" and image.height < image.width
    code, _, err = _run(capsys, "--model", gen_dir, "--class", "red", "-o", tmp_path / "x.mp4", "--grid",
                        tmp_path / "grid.jpg")
    assert code == 2 and "--grid" in err and "must end in .png" in err


def test_long_video_slides_the_window(gen_dir, tmp_path, capsys):
    code, out, err = _run(capsys, "--model", gen_dir, "--class", "white", "--frames", "81", "-o",
                          tmp_path / "long.mp4", "--budget", "2", "--fps", "10")
    assert code == 0, err
    assert "21 steps x 2 tokens = 42 tokens" in out
    info = probe_video(tmp_path / "long.mp4")
    assert info.num_frames == 81 and abs(info.fps - 10) < 1e-6


@pytest.mark.parametrize("args, expected", [
    (["--class", "purple"], "--class purple: unknown class; the generator's class names are: red, green, blue, white"),
    (["--class", "7"], "--class 7: the generator has 4 classes"),
    (["--class", "red", "--frames", "20"], "--frames 20:"),
    (["--prompt", "a red circle"], "is class-conditional; give --class"),
    ([], "is class-conditional: give --class NAME|INDEX (red, green, blue, white)"),
    (["--class", "red", "--budget", "9"], "--budget 9:"),
    (["--class", "red", "-o", "x.txt"], "must end in"),
])
def test_one_line_errors(gen_dir, tmp_path, capsys, args, expected):
    out = ["-o", str(tmp_path / "x.mp4")] if "-o" not in args else []
    code, _, err = _run(capsys, "--model", gen_dir, *args, *out)
    assert code == 2
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "x.mp4").exists()


def test_refuses_a_tokenizer_of_another_identity_naming_both(gen_dir, tokenizer, tmp_path, capsys):
    code, _, err = _run(capsys, "--model", gen_dir, "--class", "red", "--tokenizer", "flex-demo", "-o",
                        tmp_path / "x.mp4")
    assert code == 2 and err.count("\n") == 1
    demo = registry.load_model("flex-demo").identity
    assert str(demo) in err and str(tokenizer.identity) in err
    assert not (tmp_path / "x.mp4").exists()


def test_refuses_a_model_that_is_not_a_generator(tmp_path, capsys):
    code, _, err = _run(capsys, "--model", "flex-tiny", "-o", tmp_path / "x.mp4")
    assert code == 2 and "a flex-tokenizer model, not a generator" in err


def test_generator_without_a_recorded_tokenizer_needs_one(tmp_path, capsys):
    code, _, err = _run(capsys, "--model", "ar-debug", "--class", "0", "-o", tmp_path / "x.mp4")
    assert code == 2 and "records no tokenizer; pass --tokenizer" in err


def test_text_generator_follows_its_prompt(tokenizer, tmp_path, capsys):
    """ar-debug-text over the randomised flex-tiny: a prompt is needed, --class refused, the prompt matters."""
    from videoflex.generators.ar.presets import debug_text

    config = dataclasses.replace(debug_text(), vocab_size=tokenizer.codebook_size, max_steps=5,
                                 tokenizer=TokenizerRef.from_identity(tokenizer.identity, str(tmp_path / "tok")))
    torch.manual_seed(0)
    ARGenerator(config).save_pretrained(tmp_path / "gen")
    tokenizer.save_pretrained(tmp_path / "tok")
    code, _, err = _run(capsys, "--model", tmp_path / "gen", "--class", "0", "-o", tmp_path / "x.mp4")
    assert code == 2 and "is text-conditional; give --prompt TEXT" in err
    for name, prompt in (("a.mp4", "a red circle moving up"), ("b.mp4", "a blue star moving left")):
        code, out, err = _run(capsys, "--model", tmp_path / "gen", "--prompt", prompt, "-o", tmp_path / name)
        assert code == 0, err
        assert f"prompt {prompt!r}" in out
    assert (tmp_path / "a.mp4").read_bytes() != (tmp_path / "b.mp4").read_bytes()
