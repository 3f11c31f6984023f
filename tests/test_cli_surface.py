"""One CLI surface: `videoflex --help` lists every command, every (nested) sub-command's --help works, the
old module command lines are gone, and output options are spelled -o/--output."""

import argparse
import importlib

import pytest

from videoflex.cli.common import frame_rate
from videoflex.cli.errors import UserError
from videoflex.cli.main import COMMANDS, build_parser, main


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below parser, e.g. ('eval',), ('eval', 'probe'), ('eval', 'probe', 'train')."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append((*path, name))
                found.extend(_subcommands(child, (*path, name)))
    return found


def test_help_lists_every_command(capsys):
    code = main(["--help"])
    assert code == 0
    listed = capsys.readouterr().out
    for name in COMMANDS:
        assert f"\n    {name} " in listed or f"\n    {name}\n" in listed, name
    assert {"fetch", "eval"} <= set(COMMANDS)


def test_every_subcommand_help_works(capsys):
    paths = _subcommands(build_parser())
    expected = {("fetch", "i3d-weights"), ("fetch", "opencv-samples"), ("eval", "recon"), ("eval", "fvd"),
                ("eval", "classify"), ("eval", "probe", "train"), ("eval", "probe", "score")}
    assert expected <= set(paths)
    for path in paths:
        code = main([*path, "--help"])
        out = capsys.readouterr().out
        assert code == 0, path
        assert out.startswith(f"usage: videoflex {' '.join(path)}"), (path, out[:200])


def test_output_options_are_dash_o_output():
    """Every command that writes a file or folder names it -o/--output (prepare-data writes two kinds of
    output, --shards and --latents; train's -o is its recipe's out_dir)."""
    parser = build_parser()
    writers = {("tokenize",), ("detokenize",), ("reconstruct",), ("convert",), ("eval", "recon"), ("tokenize-dataset",),
               ("eval", "probe", "train"), ("fetch", "i3d-weights"), ("fetch", "opencv-samples"), ("generate",),
               ("eval", "generator"), ("train", "tokenizer"), ("train", "generator")}
    for path in writers:
        sub = parser
        for name in path:
            sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        option = next((a for a in sub._actions if a.dest == "output"), None)
        assert option is not None and option.option_strings == ["-o", "--output"], path
    for path in _subcommands(parser):
        sub = parser
        for name in path:
            sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        assert not any("--out" in a.option_strings or "--dest" in a.option_strings for a in sub._actions), path


def _parser_of(path: tuple[str, ...]) -> argparse.ArgumentParser:
    sub = build_parser()
    for name in path:
        sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return sub


def test_every_command_that_reads_video_has_fps_checked_by_one_type():
    """--fps on every command that samples frames from video files, all with the frame-rate type (finite, > 0:
    the bad-input matrix of test_bad_input.py tries NaN, infinities and negatives on each)."""
    readers = [("tokenize",), ("reconstruct",), ("eval", "recon"), ("eval", "fvd"), ("eval", "classify"),
               ("eval", "probe", "train"), ("eval", "probe", "score"), ("prepare-data",), ("tokenize-dataset",)]
    for path in readers:
        option = next((a for a in _parser_of(path)._actions if "--fps" in a.option_strings), None)
        assert option is not None and option.type is frame_rate, path


def test_seed_help_says_what_it_seeds():
    for path in _subcommands(build_parser()):
        option = next((a for a in _parser_of(path)._actions if "--seed" in a.option_strings), None)
        if option is not None:
            assert "seed of" in option.help or "seeded" in option.help, (path, option.help)
    helps = {path: next(a.help for a in _parser_of(path)._actions if "--seed" in a.option_strings)
             for path in [("tokenize",), ("detokenize",), ("reconstruct",)]}
    assert "encoder" in helps[("tokenize",)] and "decoder" not in helps[("tokenize",)]
    assert "decoder" in helps[("detokenize",)] and "encoder" in helps[("reconstruct",)]


def test_train_output_is_the_run_folder(tmp_path, capsys):
    from videoflex.cli.train import run

    args = build_parser().parse_args(["train", "tokenizer", "-o", str(tmp_path / "a"), f"out_dir={tmp_path / 'b'}"])
    with pytest.raises(UserError, match="name different run folders"):
        run(args)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # without data, the usual one-line refusal, which points at the minimal recipe
    assert main(["train", "tokenizer", "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--config" in err and "minimal.yaml" in err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("module", ["videoflex.eval.i3d", "videoflex.eval.i3d_weights", "videoflex.eval.class_probe",
                                    "videoflex.data.opencv_samples"])
def test_library_modules_have_no_command_line(module):
    """Their command lines moved to `videoflex fetch` / `videoflex eval`."""
    assert not hasattr(importlib.import_module(module), "main")


def test_bad_options_of_new_commands_are_one_line(capsys, tmp_path):
    cases = [
        (["eval", "classify", "--top", "0"], "--top"),
        (["eval", "classify", "--frames", "x"], "--frames"),
        (["eval", "probe", "train", str(tmp_path)], "-o/--output"),
        (["eval", "probe", "score", str(tmp_path)], "VIDEOS"),
        (["eval", "probe", "train", str(tmp_path), "-o", str(tmp_path / "p"), "--lr", "-1"], "--lr"),
        (["fetch", "nothing"], "invalid choice"),
    ]
    for argv, needle in cases:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, argv
        assert len(err.strip().splitlines()) == 1 and needle in err, (argv, err)


def test_unrecognized_arguments_are_one_line_naming_the_command(capsys, tmp_path):
    assert main(["eval", "recon", "--data", str(tmp_path), "--bogus", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("videoflex eval recon: error: unrecognized arguments: --bogus 1")
