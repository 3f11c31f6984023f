"""Bad input is one stderr line and exit status 2, found before any work, with nothing left behind.

The matrix is built from the argparse parser itself: every numeric option of every command (its type is a
``cli.common.Number``) gets non-numbers, NaN, infinities, -1, a huge value and the values just outside its
range; every path option (a ``cli.common.PathOption``) gets a missing path, the wrong kind of path and, for
outputs, a place under /proc and a 300-character name. A new option is covered as soon as it exists; an option
with no checked type must be listed in ``FREE_TEXT``. ``train`` is left out here (its options are a recipe and
KEY=VALUE overrides, checked by ``train``'s own tests).

Then one test per example of issue 18 (items 1 and 3), each asserting the exit status, the one stderr line
and that the expensive work (loading a model or I3D, running I3D) did not start.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

from videoflex.cli import eval as cli_eval
from videoflex.cli import tokenize as cli_tokenize
from videoflex.cli.common import Number, PathOption
from videoflex.cli.main import build_parser, main
from videoflex.eval.fvd import feature_stats, load_stats, save_stats
from videoflex.eval.i3d_weights import default_weights_path

CLIP = Path(__file__).resolve().parents[1] / "assets" / "carphone.mp4"
EXCLUDED = {"train"}  # recipe-driven: covered by the training tests
FREE_TEXT = {  # options whose value is free text, a name checked against a list, or checked by the command
    "--model", "--device", "--names", "--keep", "--source", "--split", "--latent-dtype", "--dtype", "--count",
    "--help", "--quiet", "--no-fvd", "--print-path", "--resume", "--html", "file",  # inspect FILE: a file or folder
    # generate / eval generator: class names, prompts, a tokenizer path or preset, flags; generate's -o and
    # --ids are a file or a folder by --num, checked by the command before any work
    "--class", "--classes", "--prompt", "--tokenizer", "--no-cache", "--shuffle-classes", "--output", "--ids",
    "--untrained", "--reconstruction-probe", "--no-feature-cache", "--clip-classifier",
}


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of every command that runs (has no sub-commands)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            if not path and name in EXCLUDED:
                continue
            yield from _leaves(child, (*path, name))


def _templates(tmp: Path) -> dict[tuple[str, ...], dict[str, list[str]]]:
    """A valid command line of every command, as {dest: values}; the bad value replaces one of them."""
    folder, file = tmp / "in_folder", tmp / "in_file.bin"
    folder.mkdir()
    file.write_bytes(b"x")
    tokens = tmp / "a.tokens.safetensors"
    tokens.write_bytes(b"x")
    return {
        ("tokenize",): {"inputs": [str(CLIP)], "output": [str(tmp / "out")]},
        ("detokenize",): {"file": [str(tokens)], "output": [str(tmp / "out.mp4")]},
        ("reconstruct",): {"input": [str(CLIP)], "output": [str(tmp / "out")]},
        ("inspect",): {"file": [str(CLIP)]},
        ("prepare-data",): {"source": ["shapes"], "shards": [str(tmp / "out")]},
        ("tokenize-dataset",): {"source": ["shapes"], "output": [str(tmp / "out")]},
        ("generate",): {"model": ["ar-debug"], "output": [str(tmp / "out.mp4")]},
        ("eval", "generator"): {"model": ["ar-debug"], "source": ["shapes"], "output": [str(tmp / "out")]},
        ("eval", "recon"): {"data": [str(CLIP)]},
        ("eval", "fvd"): {"real": [str(folder)], "fake": [str(folder)]},
        ("eval", "classify"): {"videos": [str(CLIP)]},
        ("eval", "probe", "train"): {"data": [str(folder)], "output": [str(tmp / "out")]},
        ("eval", "probe", "score"): {"probe": [str(folder)], "videos": [str(folder)]},
        ("convert",): {"checkpoint": [str(file)], "output": [str(tmp / "out")]},
        ("presets",): {},
        ("fetch", "i3d-weights"): {},
        ("fetch", "opencv-samples"): {},
    }


def _argv(path: tuple[str, ...], parser: argparse.ArgumentParser, values: dict[str, list[str]]) -> list[str]:
    argv = list(path)
    for action in parser._actions:
        if action.dest not in values:
            continue
        if action.option_strings:
            argv += [action.option_strings[-1], *values[action.dest]]
        else:
            argv += values[action.dest]
    return argv


def _number_cases(kind: Number) -> list[str]:
    cases = ["abc", "", "nan", "inf", "-inf", "1e400", "-1", "1" + "0" * 30]
    if kind.parse is int:
        cases += ["1.5", "1e-9", str(int(kind.minimum) - 1), str(int(kind.maximum) + 1)]
    else:
        cases += [repr(kind.maximum * 1.5)]
        cases += [repr(kind.minimum)] if kind.above else ([repr(kind.minimum / 2)] if kind.minimum > 0 else [])
    return cases


def _path_cases(kind: PathOption, tmp: Path) -> list[str]:
    suffix = kind.suffixes[0] if kind.suffixes else ".out"
    missing = tmp / "missing" / f"nothing{suffix}"
    a_file, a_folder = tmp / "in_file.bin", tmp / "in_folder"
    if kind.role == "file":
        return [str(missing), str(a_folder), ""]
    if kind.role == "folder":
        return [str(missing), str(a_file)]
    if kind.role == "file or folder":
        return [str(missing), ""]
    long_name = tmp / ("n" * 300 + suffix)
    if kind.role == "output file":
        wrong_suffix = [str(tmp / "out.wrong")] if kind.suffixes else []
        return [f"/proc/videoflex-test/out{suffix}", f"/proc/out{suffix}", str(long_name), str(a_folder),
                str(a_file / f"below{suffix}"), *wrong_suffix]
    return ["/proc/videoflex-test", "/proc/self/out", str(long_name), str(a_file), str(a_file / "below")]


def _matrix(tmp: Path) -> list[tuple[list[str], str]]:
    """(argv, option) for every bad value of every checked option of every command."""
    templates = _templates(tmp)
    leaves = dict(_leaves(build_parser()))
    assert set(leaves) == set(templates), f"add a template for {set(leaves) ^ set(templates)}"
    cases = []
    for path, parser in leaves.items():
        for action in parser._actions:
            if isinstance(action.type, Number):
                bad = _number_cases(action.type)
            elif isinstance(action.type, PathOption):
                bad = _path_cases(action.type, tmp)
            else:
                names = set(action.option_strings) or {action.dest}
                assert action.choices is not None or names & FREE_TEXT, (
                    f"{' '.join(path)} {'/'.join(names)}: give it a cli.common Number or PathOption type "
                    "(or list it in FREE_TEXT)")
                continue
            for value in bad:
                values = dict(templates[path])
                values[action.dest] = [value]
                cases.append((_argv(path, parser, values), "/".join(action.option_strings) or action.metavar
                              or action.dest))
    return cases


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _expect_one_line_exit_2(capsys, argv: list[str]) -> str:
    code = main(argv)  # returns the status of a bad option too (never raises SystemExit)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, (argv, code, captured.err)
    assert len(lines) == 1 and "Traceback" not in captured.err, (argv, captured.err)
    assert lines[0].startswith(f"videoflex {argv[0]}"), (argv, lines)
    return lines[0]


def test_bad_value_matrix_over_every_option_of_every_command(tmp_path, capsys):
    cases = _matrix(tmp_path)
    before = _files(tmp_path)
    options = {(tuple(argv[:2]), option) for argv, option in cases}
    assert len(options) >= 60 and len(cases) >= 500, (len(options), len(cases))  # the matrix is not empty
    for argv, option in cases:
        line = _expect_one_line_exit_2(capsys, argv)
        assert "error: argument" in line, (argv, line)  # refused while parsing: before any file is read
        assert _files(tmp_path) == before, (argv, _files(tmp_path) - before)  # nothing left behind


def test_every_frame_rate_and_seed_option_refuses_absurd_values(capsys):
    """`tokenize --fps 1e-9` was a ZeroDivisionError and `--seed 1e23` an overflow inside torch."""
    found = []
    for path, parser in _leaves(build_parser()):
        for action in parser._actions:
            if "--fps" in action.option_strings or "--seed" in action.option_strings:
                found.append((path, action.option_strings[-1]))
                kind = action.type
                for text in (["0", "1e-9", "nan"] if action.option_strings[-1] == "--fps"
                             else ["-1", str(2**63), "99999999999999999999999"]):
                    with pytest.raises(argparse.ArgumentTypeError):
                        kind(text)
    assert len(found) >= 7, found


# ----------------------------------------------------------------------------- the examples, one each


def _no_work(monkeypatch) -> None:
    """Loading a model or I3D, or running I3D, fails the test: the error must come before it."""
    def work(*args, **kwargs):
        raise AssertionError("the expensive work started before the error was found")

    for module in (cli_tokenize, cli_eval):
        if hasattr(module, "load_model"):
            monkeypatch.setattr(module, "load_model", work)
    monkeypatch.setattr(cli_eval, "load_i3d_weights", work)
    monkeypatch.setattr("videoflex.eval.i3d.i3d_embed", work)


@pytest.mark.parametrize("argv", [
    ["eval", "fvd", "A", "B", "--fps", "0"], ["eval", "fvd", "A", "B", "--fps", "-1"],
    ["eval", "fvd", "A", "B", "--fps", "nan"], ["eval", "fvd", "A", "B", "--frames", "8"],
    ["eval", "recon", "--data", str(CLIP), "--guidance", "-1"],
    ["tokenize", str(CLIP), "-o", "OUT", "--fps", "1e-9"],
    ["tokenize", str(CLIP), "-o", "/proc/x"], ["tokenize", str(CLIP), "-o", "OUT/" + "x" * 300],
    ["eval", "fvd", "A", "B", "--save-real-stats", "/proc/x/real.safetensors"],
])
def test_examples_of_bad_options_and_output_places(tmp_path, capsys, monkeypatch, argv):
    _no_work(monkeypatch)
    for folder in ("A", "B"):
        (tmp_path / folder).mkdir()
        for i in range(2):
            os.symlink(CLIP, tmp_path / folder / f"{i}.mp4")
    argv = [a.replace("OUT", str(tmp_path / "out")) if a.startswith("OUT") else
            str(tmp_path / a) if a in ("A", "B") else a for a in argv]
    before = _files(tmp_path)
    _expect_one_line_exit_2(capsys, argv)
    assert _files(tmp_path) == before


def test_tokenize_output_name_too_long_is_found_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """The input's name fits the file system (250 bytes) but its token file's name would not."""
    _no_work(monkeypatch)
    long_input = tmp_path / ("v" * 246 + ".mp4")
    os.symlink(CLIP, long_input)
    line = _expect_one_line_exit_2(capsys, ["tokenize", str(long_input), "-o", str(tmp_path / "out")])
    assert "file name too long" in line and not (tmp_path / "out").exists()


def _stats_file(path: Path, n: int = 401, dim: int = 400, seed: int = 0) -> Path:
    save_stats(feature_stats(np.random.default_rng(seed).normal(size=(n, dim))), path)
    return path


@pytest.mark.parametrize("damage", ["truncated", "unrelated", "not_safetensors", "nan"])
def test_damaged_or_foreign_statistics_files_are_one_line_before_i3d(tmp_path, capsys, monkeypatch, damage):
    _no_work(monkeypatch)
    good = _stats_file(tmp_path / "good.safetensors")
    bad = tmp_path / "bad.safetensors"
    if damage == "truncated":
        bad.write_bytes(good.read_bytes()[:-100])
    elif damage == "unrelated":
        from safetensors.numpy import save_file
        save_file({"weight": np.zeros((4, 4), np.float32)}, str(bad))
    elif damage == "not_safetensors":
        bad.write_bytes(b"\x00" * 64)
    else:
        stats = load_stats(good)
        from safetensors.numpy import save_file
        save_file({"mu": np.full(400, np.nan), "sigma": stats.sigma, "n": np.array([20])}, str(bad))
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(2):
        os.symlink(CLIP, videos / f"{i}.mp4")
    for argv in ([str(good), str(bad)], [str(videos), str(bad)]):
        line = _expect_one_line_exit_2(capsys, ["eval", "fvd", *argv])
        assert str(bad) in line


@pytest.mark.parametrize("content", [b"", b"this is not a pickle", b"\x80\x04\x95" + b"\x07" * 50])
def test_i3d_weights_that_are_not_a_pickle_are_one_line(tmp_path, capsys, content):
    weights = tmp_path / "i3d.ckpt"
    weights.write_bytes(content)
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(2):
        os.symlink(CLIP, videos / f"{i}.mp4")
    for argv in (["eval", "fvd", str(videos), str(videos)], ["eval", "classify", str(CLIP)],
                 ["eval", "recon", "--data", str(videos), "--model", "flex-tiny", "-o", str(tmp_path / "o")]):
        line = _expect_one_line_exit_2(capsys, [*argv, "--i3d-weights", str(weights)])
        assert str(weights) in line and "not an I3D checkpoint" in line, line
    assert not (tmp_path / "o").exists()


def test_save_real_stats_into_a_missing_folder_creates_it_and_writes_atomically(tmp_path, capsys):
    a, b = _stats_file(tmp_path / "a.safetensors"), _stats_file(tmp_path / "b.safetensors", seed=1)
    target = tmp_path / "new" / "deeper" / "real.safetensors"
    assert main(["eval", "fvd", str(a), str(b), "--save-real-stats", str(target)]) == 0
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(load_stats(target).mu, load_stats(a).mu)
    assert sorted(p.name for p in target.parent.iterdir()) == ["real.safetensors"]  # no temporary file
    line = _expect_one_line_exit_2(capsys, ["eval", "fvd", str(a), str(b), "--save-real-stats",
                                            str(tmp_path / "real.npz")])
    assert ".safetensors" in line


def _one_clip_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "one"
    folder.mkdir()
    os.symlink(CLIP, folder / "only.mp4")
    return folder


def test_eval_fvd_on_one_clip_is_refused_before_i3d(tmp_path, capsys, monkeypatch):
    _no_work(monkeypatch)
    one = _one_clip_folder(tmp_path)
    stats = _stats_file(tmp_path / "s.safetensors")
    for argv in ([str(one), str(one)], [str(stats), str(one)], [str(one), str(stats)]):
        line = _expect_one_line_exit_2(capsys, ["eval", "fvd", *argv])
        assert f"{one}: 1 video; FVD needs at least 2 clips" in line, line


def test_eval_recon_on_one_clip_skips_rfvd_with_a_warning_and_says_so(tmp_path, capsys, monkeypatch):
    """PSNR and SSIM of one clip are meaningful; its rFVD is not (no covariance): skipped, not a crash."""
    monkeypatch.setattr(cli_eval, "load_i3d_weights", lambda *a, **k: pytest.fail("I3D loaded for one clip"))
    out = tmp_path / "sweep"
    assert main(["eval", "recon", "--data", str(_one_clip_folder(tmp_path)), "--model", "flex-tiny", "--keep", "1,16",
                 "--steps", "1", "-o", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "rFVD skipped: 1 clip" in err[0], err
    results = json.loads((out / "results.json").read_text())
    assert results["num_clips"] == 1
    assert results["rfvd_skipped"] == "1 clip: rFVD needs at least 2 (a covariance)"
    assert all(r["rfvd"] is None and r["psnr"] > 0 for r in results["results"])


def test_a_warning_before_the_error_is_folded_into_the_one_line(tmp_path, capsys):
    """`eval recon --keep 99` warns (the model has 16 tokens), then the second video cannot be decoded."""
    videos = tmp_path / "videos"
    videos.mkdir()
    os.symlink(CLIP, videos / "a.mp4")
    (videos / "b.mp4").write_bytes(CLIP.read_bytes()[: CLIP.stat().st_size // 2])
    line = _expect_one_line_exit_2(capsys, ["eval", "recon", "--data", str(videos), "--model", "flex-tiny",
                                            "--keep", "1,99", "--no-fvd", "-o", str(tmp_path / "o"), "--quiet"])
    assert "b.mp4" in line and "[warnings: --keep: the model has 16 tokens per time step" in line, line
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not default_weights_path().is_file(), reason="I3D weights not fetched")
def test_eval_fvd_with_a_damaged_video_in_the_second_folder_is_one_line(tmp_path, capsys):
    """The example of issue 18: a warning (few samples) from the first folder, then the error of the second."""
    real, fake = tmp_path / "real", tmp_path / "fake"
    for folder in (real, fake):
        folder.mkdir()
        os.symlink(CLIP, folder / "1.mp4")
    os.symlink(CLIP, real / "2.mp4")
    (fake / "2.mp4").write_bytes(CLIP.read_bytes()[:5000])
    line = _expect_one_line_exit_2(capsys, ["eval", "fvd", str(real), str(fake), "--quiet"])
    assert str(fake / "2.mp4") in line


def test_prepare_data_with_a_broken_recipe_is_one_line_naming_it_once(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("data: [1, 2\n  x: :\n")
    line = _expect_one_line_exit_2(capsys, ["prepare-data", "--config", str(recipe), "--shards", str(tmp_path / "s")])
    assert line.count(str(recipe)) == 1 and not (tmp_path / "s").exists(), line
