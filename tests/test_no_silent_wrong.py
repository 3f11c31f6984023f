"""No silent wrong answer (issue 18, item 2): one test per example, each with the value it must give.

- ``--guidance nan`` is refused (one line, exit 2) by every command that takes it;
- a model with a NaN weight: the API raises ``NonFiniteOutputError`` (a ``RuntimeError``) naming the weight,
  and tokenize, detokenize, reconstruct and eval recon print one line naming it and the model, exit 2, and
  write nothing;
- every JSON file written is strict JSON (one helper, ``utils.json_io``); a NaN result is refused by name;
- padded clips are announced (a warning with their count) and recorded in ``results.json`` (``eval recon``)
  or announced (``eval fvd``, which writes no JSON);
- a 5-frame file declaring 0.001 fps gives 1,280 frames at 8 fps (256 per source frame), not 40,000, with a
  one-line warning.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from videoflex import registry
from videoflex.cli import eval as cli_eval
from videoflex.cli.main import main
from videoflex.eval.sweep import KeepResult, SweepResult, SweepSettings, save_sweep
from videoflex.io.video import MAX_FRAMES_PER_SOURCE_FRAME, read_video, write_video
from videoflex.utils.finite import NonFiniteOutputError
from videoflex.utils.json_io import NonFiniteJSONError, to_json_text, write_json

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "carphone.mp4"
DEMO = ROOT / "checkpoints" / "demo"
BAD_WEIGHT = {"decoder": "decoder.head.bias", "encoder": "encoder.to_codes.bias"}


def _strict(text: str):
    """``json.loads`` that refuses NaN, Infinity and -Infinity (what other JSON readers do)."""
    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _one_line_exit_2(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# ----------------------------------------------------------------------------- --guidance nan


@pytest.mark.parametrize("argv", [
    ["eval", "recon", "--data", str(CLIP), "--no-fvd", "-o", "OUT"],
    ["reconstruct", str(CLIP), "-o", "OUT"],
    ["detokenize", str(CLIP), "-o", "OUT/x.mp4"],
])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_guidance_nan_is_refused_in_one_line(tmp_path, capsys, argv, value):
    """It exited 0 with PSNR/SSIM = NaN in results.json; now the option type (cli.common) refuses it."""
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    line = _one_line_exit_2(capsys, [*argv, f"--guidance={value}"])
    assert "--guidance" in line and f"must be a finite number, got {value}" in line
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- a NaN weight


@pytest.fixture(scope="module")
def demo():
    if not (DEMO / "model.safetensors").is_file():
        pytest.skip("the demo model is not there")
    return registry.load_model(DEMO).eval()


def _nan_model(demo, part: str, folder: Path) -> Path:
    """The demo model with one NaN in ``BAD_WEIGHT[part]``, saved to ``folder``."""
    model = registry.load_model(DEMO).eval()
    with torch.no_grad():
        dict(model.named_parameters())[BAD_WEIGHT[part]].view(-1)[0] = float("nan")
    return model.save_pretrained(folder)


def test_api_names_the_nan_weight(demo):
    model = registry.load_model(DEMO).eval()
    video = torch.zeros(1, 3, model.clip_frames, *model.image_size)
    ids = model.tokenize(video)
    with torch.no_grad():
        dict(model.named_parameters())[BAD_WEIGHT["decoder"]].view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteOutputError, match=r"detokenize: the decoded video is not finite .*"
                                                   r"1 tensor \(decoder\.head\.bias\): a damaged") as info:
        model.detokenize(ids)
    assert isinstance(info.value, RuntimeError) and info.value.bad_weights == ("decoder.head.bias",)
    with torch.no_grad():
        dict(model.named_parameters())[BAD_WEIGHT["encoder"]].view(-1)[0] = float("inf")
    with pytest.raises(NonFiniteOutputError, match=r"tokenize: the encoder's output is not finite .*"
                                                   r"encoder\.to_codes\.bias"):
        model.tokenize(video)


def test_api_finite_weights_point_at_precision(demo):
    """Finite weights and a non-finite output: the message points at overflow in the model's dtype."""
    from videoflex.utils.finite import check_finite_output

    with pytest.raises(NonFiniteOutputError, match=r"2 of 3 values .* all finite: overflow in float32\?") as info:
        check_finite_output(torch.tensor([1.0, float("nan"), float("inf")]), "x", demo)
    assert info.value.bad_weights == ()


def test_cli_nan_decoder_weight_is_one_line_and_writes_nothing(demo, tmp_path, capsys):
    """It decoded a black video, printed PSNR nan, exit 0, and metrics.json held bare NaN."""
    model_dir = _nan_model(demo, "decoder", tmp_path / "nan-model")
    out = tmp_path / "out"
    # tokenize runs the encoder only: it works; the decoder's NaN shows in every command that decodes
    assert main(["tokenize", str(CLIP), "-o", str(out), "--model", str(model_dir), "--max-frames", "9"]) == 0
    capsys.readouterr()
    tokens = out / "carphone.tokens.safetensors"
    before = _files(tmp_path)
    for argv in (["detokenize", str(tokens), "-o", str(out / "x.mp4")],
                 ["reconstruct", str(CLIP), "-o", str(out / "recon"), "--frames", "9", "--keep", "1"],
                 ["eval", "recon", "--data", str(CLIP), "--no-fvd", "-o", str(out / "eval"), "--keep", "1"]):
        line = _one_line_exit_2(capsys, [*argv, "--model", str(model_dir), "--quiet"])
        assert line.startswith(f"videoflex {argv[0]}: error: --model {model_dir}: detokenize: the decoded video is "
                               "not finite"), line
        assert "(decoder.head.bias): a damaged or diverged checkpoint?" in line
    assert _files(tmp_path) == before  # no video, metrics.json or results.json


def test_cli_nan_encoder_weight_is_one_line_in_tokenize(demo, tmp_path, capsys):
    model_dir = _nan_model(demo, "encoder", tmp_path / "nan-model")
    line = _one_line_exit_2(capsys, ["tokenize", str(CLIP), "-o", str(tmp_path / "out"), "--model",
                                     str(model_dir), "--max-frames", "9"])
    assert f"--model {model_dir}: tokenize: the encoder's output is not finite" in line
    assert "(encoder.to_codes.bias)" in line
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- strict JSON


def test_strict_json_names_the_non_finite_field(tmp_path):
    assert _strict(to_json_text({"a": [1, 2.5, None], "b": "x"})) == {"a": [1, 2.5, None], "b": "x"}
    for bad in (float("nan"), float("inf"), -float("inf")):
        obj = {"results": [{"psnr": 1.0}, {"psnr": bad}]}
        with pytest.raises(NonFiniteJSONError, match=rf"^results\[1\]\.psnr is {bad}: JSON has no non-finite"):
            write_json(tmp_path / "x.json", obj)
        assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left


def test_canonical_json_of_configs_is_strict_and_unchanged():
    """Config hashes go through the same helper: the bytes are those of json.dumps(sort_keys, no spaces)."""
    from videoflex.utils.dataclass_io import to_json

    settings = SweepSettings((1, 2), steps=4, guidance=1.5)
    assert to_json(settings) == '{"batch_size":4,"guidance":1.5,"keeps":[1,2],"seed":0,"steps":4}'
    with pytest.raises(NonFiniteJSONError, match=r"^guidance is nan"):
        to_json(SweepSettings((1,), steps=4, guidance=float("nan")))


def test_save_sweep_refuses_a_nan_result_and_writes_nothing(tmp_path):
    settings = SweepSettings((1, 2), steps=1, guidance=1.0)
    result = SweepResult("m", "flex-tokenizer", "c", "w", 2, 17, settings,
                         (KeepResult(1, 5, 20.0, 0.5, None), KeepResult(2, 10, float("nan"), 0.6, None)), 1.0)
    with pytest.raises(NonFiniteJSONError, match=r"^results\[1\]\.psnr is nan"):
        save_sweep(result, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    json_path, _ = save_sweep(SweepResult(**{**result.__dict__, "results": result.results[:1]}), tmp_path / "ok")
    assert _strict(json_path.read_text())["results"][0]["psnr"] == 20.0


def test_reconstruct_and_eval_recon_write_through_the_strict_helper():
    src = ROOT / "src" / "videoflex"
    for name in ("cli/reconstruct.py", "eval/sweep.py"):
        text = (src / name).read_text()
        assert "json.dump" not in text and "write_json(" in text, name


# ----------------------------------------------------------------------------- padding


def _short_videos(folder: Path, lengths: tuple[int, ...], size: int = 32) -> list[Path]:
    folder.mkdir()
    paths = []
    for i, t in enumerate(lengths):
        g = torch.Generator().manual_seed(i)
        paths.append(write_video(folder / f"v{i}.mp4", torch.rand(3, t, size, size, generator=g) * 2 - 1, 8.0))
    return paths


def test_eval_recon_announces_and_records_padded_clips(demo, tmp_path, capsys):
    """1- and 2-frame videos were padded to 17 frames silently."""
    data = tmp_path / "data"
    _short_videos(data, (1, 2, 20))
    out = tmp_path / "out"
    assert main(["eval", "recon", "--data", str(data), "--no-fvd", "-o", str(out), "--keep", "1", "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"warning: {data}: 2 of 3 clips had fewer than 17 frames at 8 fps (the shortest 1) and were "
                    "padded by repeating their last frame; PSNR and SSIM include the repeated frames")]
    results = _strict((out / "results.json").read_text())
    assert results["padded_clips"] == 2 and results["num_clips"] == 3 and results["frames"] == 17
    assert results["padding"].startswith("2 of 3 clips had fewer than 17 frames")


def test_eval_recon_records_no_padding_when_none(demo, tmp_path, capsys):
    data = tmp_path / "data"
    _short_videos(data, (17, 20))
    out = tmp_path / "out"
    assert main(["eval", "recon", "--data", str(data), "--no-fvd", "-o", str(out), "--keep", "1", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    results = _strict((out / "results.json").read_text())
    assert results["padded_clips"] == 0 and results["padding"] is None


def test_read_clips_counts_the_frames_read(tmp_path):
    files = _short_videos(tmp_path / "data", (1, 6, 16, 30))
    clips = cli_eval.read_clips(files, 16, 32, None, progress=False)
    assert clips.video.shape == (4, 3, 16, 32, 32)
    assert clips.frames_read == (1, 6, 16, 16) and clips.padded == 2
    # the padding repeats the last frame read
    assert torch.equal(clips.video[1, :, 6:], clips.video[1, :, 5:6].expand(-1, 10, -1, -1))
    assert cli_eval.read_clips(files, 16, 32, None, progress=False, max_clips=2).frames_read == (1, 6)


def test_eval_fvd_announces_padded_clips(tmp_path, capsys, monkeypatch):
    """6-frame clips gave an FVD (741) with no word that they were padded to 16 frames."""
    real, fake = tmp_path / "real", tmp_path / "fake"
    _short_videos(real, (6, 6, 20))
    _short_videos(fake, (20, 20, 20))
    monkeypatch.setattr(cli_eval, "load_i3d_weights", lambda *a, **k: object())
    seen = []

    def embed(i3d, clips, progress=True):  # stands in for I3D: finite 2-d "logits" per clip (N > D: no warning)
        seen.append(tuple(clips.shape))
        g = torch.Generator().manual_seed(len(seen))
        return SimpleNamespace(logits=torch.randn(clips.shape[0], 2, generator=g, dtype=torch.float64))

    monkeypatch.setattr("videoflex.eval.i3d.i3d_embed", embed)
    assert main(["eval", "fvd", str(real), str(fake), "--size", "32", "--quiet"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("FVD ") and seen == [(3, 3, 16, 32, 32), (3, 3, 16, 32, 32)]
    assert out.err.strip().splitlines() == [
        (f"warning: {real}: 2 of 3 clips had fewer than 16 frames (the shortest 6) and were padded by repeating "
         "their last frame; the FVD compares padded clips")]


# ----------------------------------------------------------------------------- absurd frame counts


@pytest.fixture(scope="module")
def slow_file(tmp_path_factory) -> Path:
    """5 frames (64x64) in a file that declares 0.001 fps: 5,000 seconds."""
    path = tmp_path_factory.mktemp("slow") / "slow.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                      rate=Fraction(1, 1000))
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_read_video_caps_an_absurd_frame_count(slow_file):
    with pytest.warns(UserWarning, match=r"5 frames declared at 0\.001 fps \(5000 s\) would give 40000 frames at "
                                         r"8 fps; read the first 1280 \(256 per source frame\)"):
        decoded = read_video(slow_file, fps=8.0, size=32)
    assert MAX_FRAMES_PER_SOURCE_FRAME == 256 and decoded.num_frames == 5 * 256
    assert decoded.source_num_frames == 5
    # what stays under the cap is read as before, without a warning
    assert read_video(slow_file, fps=8.0, size=32, max_frames=100).num_frames == 100
    assert read_video(slow_file, fps=None, size=32).num_frames == 5
    assert read_video(CLIP, fps=2.0, size=32).num_frames == 9  # 33 frames at 8 fps: 4.125 s


def test_tokenize_caps_it_with_one_warning_line(demo, slow_file, tmp_path, capsys):
    from videoflex.io.tokens import load_tokens

    assert main(["tokenize", str(slow_file), "-o", str(tmp_path), "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {slow_file}: 5 frames declared at 0.001 fps") and \
        err[0].endswith("read the first 1280 (256 per source frame)")
    assert load_tokens(tmp_path / "slow.tokens.safetensors").metadata.num_frames == 1280
