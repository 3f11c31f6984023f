"""The ``videoflex`` command line, run in-process (plus one real subprocess) with the ``flex-tiny`` preset.

Models here have random weights, so reconstructions are noise: the tests check files, shapes, frame
counts, exit statuses and messages, not quality.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from videoflex import VideoFlexTok
from videoflex.cli import common
from videoflex.cli.main import main
from videoflex.data.latent_cache import LatentCacheDataset, LatentCacheError, collate_latents, vae_identity
from videoflex.data.sample_clips import sample_clip_path
from videoflex.data.shapes import ShapesConfig, ShapesDataset
from videoflex.data.shards import VideoShardDataset
from videoflex.data.transforms import ClipSpec
from videoflex.io.compare import GAP
from videoflex.io.tokens import load_tokens
from videoflex.io.video import read_video, write_video


@pytest.fixture(scope="module")
def carphone() -> Path:
    return sample_clip_path("carphone_pristine")


@pytest.fixture(scope="module")
def own_mp4(tmp_path_factory, carphone) -> Path:
    """A 20-frame 32x32 mp4 written by us (index at the front, then the frame data)."""
    video = read_video(carphone, fps=8, size=32, max_frames=20).video
    return write_video(tmp_path_factory.mktemp("own") / "own.mp4", video, fps=8)


def run_cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"videoflex {command}: error: "), err
    return lines[0]


def read_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


# ----------------------------------------------------------------------------- user errors


def _bad_inputs(own: bytes) -> dict[str, bytes]:
    flipped = bytearray(own)
    mdat = own.find(b"mdat")
    for i in np.random.default_rng(0).integers(mdat + (len(own) - mdat) // 2, len(own), 200):
        flipped[i] ^= 0xFF
    return {
        "empty": b"",
        "not_a_video": b"this is a text file, not a video\n" * 30,
        "truncated_mid_stream": own[: int(len(own) * 0.6)],
        "corrupt": bytes(flipped),
    }


@pytest.mark.parametrize("case", ["empty", "not_a_video", "truncated_mid_stream", "corrupt"])
def test_bad_videos_exit_2_with_one_line(tmp_path, capsys, own_mp4, case):
    path = tmp_path / f"{case}.mp4"
    path.write_bytes(_bad_inputs(own_mp4.read_bytes())[case])
    out = tmp_path / "tokens"
    code, stdout, err = run_cli(capsys, "tokenize", path, "-o", out, "--model", "flex-tiny", "--quiet")
    assert code == 2 and stdout == ""
    line = one_error_line(err, "tokenize")
    assert str(path) in line
    assert not out.exists()  # nothing written, nothing half-written, no empty folder


def test_missing_input_bad_options_and_no_default_model(tmp_path, capsys, own_mp4, monkeypatch):
    code = main(["tokenize", str(tmp_path / "nope.mp4"), "-o", str(tmp_path), "--model", "flex-tiny"])  # found while parsing
    assert code == 2
    assert "nope.mp4: no such file" in one_error_line(capsys.readouterr().err, "tokenize")
    for argv in (["--keep", "0"], ["--fps", "-1"], ["--max-frames", "x"]):
        code = main(["tokenize", str(own_mp4), "-o", str(tmp_path), "--model", "flex-tiny", *argv])
        assert code == 2
        line = one_error_line(capsys.readouterr().err, "tokenize")
        assert argv[0] in line
    code, _, err = run_cli(capsys, "tokenize", own_mp4, "-o", tmp_path, "--model", "flex-tiny", "--keep", "17")
    assert code == 2 and "--keep 17: model 'flex-tiny' has 16 tokens" in one_error_line(err, "tokenize")
    code, _, err = run_cli(capsys, "tokenize", own_mp4, "-o", tmp_path, "--model", "no-such-model")
    assert code == 2 and "not a preset" in one_error_line(err, "tokenize")
    monkeypatch.setattr(common, "DEFAULT_MODEL", Path("no") / "such" / "demo")
    code, _, err = run_cli(capsys, "tokenize", own_mp4, "-o", tmp_path)
    assert code == 2 and "no model given" in one_error_line(err, "tokenize")
    code, _, err = run_cli(capsys, "reconstruct", own_mp4, "-o", tmp_path, "--model", "flex-tiny", "--device", "cuda:7")
    assert code == 2 and "--device cuda:7" in one_error_line(err, "reconstruct")


def test_subprocess_exit_status_and_single_stderr_line(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "videoflex.cli.main", "tokenize", str(empty), "-o", str(tmp_path / "out"),
         "--model", "flex-tiny"],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n")
    assert result.stderr.startswith(f"videoflex tokenize: error: {empty}: empty file")
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- commands


def test_reconstruct_writes_panels_strip_and_table(tmp_path, capsys, carphone):
    out = tmp_path / "rec"
    code, stdout, err = run_cli(capsys, "reconstruct", carphone, "-o", out, "--model", "flex-tiny", "--keep", "4,64",
                                "--frames", "5", "--steps", "2", "--quiet")
    assert code == 0, err
    assert "warning: --keep 64: the model has 16 tokens per time step; using 16" in err
    frames = read_frames(out / "comparison.mp4")
    panels = 3  # original, k=4, k=16
    width = panels * 32 + (panels - 1) * GAP
    assert frames.shape[0] == 5  # the requested frame count
    assert frames.shape[2] == width + width % 2  # yuv420p pads odd sizes by one column
    assert frames.shape[1] > 32  # label bar above the panels
    strip = Image.open(out / "strip.png")
    assert strip.format == "PNG" and strip.height > panels * 32
    lines = stdout.splitlines()
    table = lines[lines.index(next(line for line in lines if line.split()[:3] == ["k", "tokens", "PSNR"])) + 1:]
    rows = [line.split() for line in table if line.strip()][:2]
    assert [row[:2] for row in rows] == [["4", "8"], ["16", "32"]]  # k and k x 2 token steps
    for row in rows:
        assert 0 < float(row[2]) < 100 and -1 <= float(row[3]) <= 1
    assert "model     flex-tokenizer flex-tiny [config " in stdout and "2 euler steps" in stdout
    report = json.loads((out / "metrics.json").read_text())
    assert (report["frames"], report["token_steps"], report["steps"]) == (5, 2, 2)
    tiny = VideoFlexTok.from_preset("flex-tiny")  # the preset's seeded weights: the same identity here
    assert (report["model_kind"], report["model_name"], report["model_config_hash"],
            report["model_weights_hash"]) == tuple(vars(tiny.identity).values())
    assert [r["keep"] for r in report["results"]] == [4, 16]
    assert [round(r["psnr"], 2) for r in report["results"]] == [float(row[2]) for row in rows]
    assert leftovers(out) == []


def test_tokenize_detokenize_round_trip(tmp_path, capsys, own_mp4, tiny_model):
    out = tmp_path / "tokens"
    model_dir = tiny_model.save_pretrained(tmp_path / "model")
    code, stdout, err = run_cli(capsys, "tokenize", own_mp4, "-o", out, "--model", model_dir, "--keep", "8",
                                "--max-frames", "6", "--quiet")
    assert code == 0, err
    file = out / "own.tokens.safetensors"
    assert stdout.strip().startswith(f"{own_mp4} -> {file}: 6 frames at 8 fps")
    tokens = load_tokens(file, model=tiny_model)
    video = read_video(own_mp4, fps=8, size=32, max_frames=6).video
    expected = tiny_model.tokenize(video[None])[0, :, :8]  # 6 frames -> padded to 9 -> 3 steps
    assert torch.equal(tokens.ids, expected)
    assert (tokens.metadata.num_frames, tokens.metadata.source_size) == (6, (32, 32))

    gif = tmp_path / "decoded" / "clip.gif"
    code, stdout, err = run_cli(capsys, "detokenize", file, "-o", gif, "--model", model_dir, "--keep", "4",
                                "--steps", "2", "--quiet")
    assert code == 0, err
    with Image.open(gif) as image:
        assert image.size == (32, 32) and image.n_frames >= 2  # Pillow merges identical frames
    mp4 = tmp_path / "decoded" / "clip.mp4"
    code, _, err = run_cli(capsys, "detokenize", file, "-o", mp4, "--model", model_dir, "--steps", "2", "--quiet")
    assert code == 0, err
    assert read_frames(mp4).shape == (6, 32, 32, 3)  # the original frame count, padding trimmed

    # a token file from another model is refused, before anything is written
    code, _, err = run_cli(capsys, "detokenize", file, "-o", tmp_path / "other.mp4", "--model", "flex-demo")
    line = one_error_line(err, "detokenize")
    assert code == 2 and str(file) in line and f"made by {tiny_model.identity}" in line
    assert not (tmp_path / "other.mp4").exists()
    code = main(["detokenize", str(file), "-o", str(tmp_path / "x.avi"), "--model", str(model_dir)])  # found while parsing, before the token file is read
    assert code == 2
    assert "x.avi: the file name must end in .mp4" in one_error_line(capsys.readouterr().err, "detokenize")
    truncated = tmp_path / "cut.tokens.safetensors"
    truncated.write_bytes(file.read_bytes()[:-10])
    code, _, err = run_cli(capsys, "detokenize", truncated, "-o", tmp_path / "y.mp4", "--model", model_dir)
    assert code == 2 and "truncated" in one_error_line(err, "detokenize")
    assert leftovers(tmp_path) == []


def test_inspect_each_kind(tmp_path, capsys, own_mp4, tiny_model):
    model_dir = tiny_model.save_pretrained(tmp_path / "model")
    code, stdout, _ = run_cli(capsys, "inspect", model_dir)
    assert code == 0 and "flex-tokenizer (VideoFlexTok)" in stdout and "16 per time step" in stdout
    assert f"identity     {tiny_model.identity}" in stdout and "parameters" in stdout
    code, stdout, _ = run_cli(capsys, "inspect", own_mp4)
    assert code == 0 and "h264" in stdout and "20 at 8 fps" in stdout and "32x32" in stdout
    run_cli(capsys, "tokenize", own_mp4, "-o", tmp_path, "--model", model_dir, "--quiet")
    code, stdout, _ = run_cli(capsys, "inspect", tmp_path / "own.tokens.safetensors")
    assert code == 0 and "6 time steps x 16 tokens per step = 96 tokens" in stdout and "uint16" in stdout
    assert str(tiny_model.identity) in stdout and "videoflex-tokens v2" in stdout
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"neither a video nor tokens" * 10)
    code, _, err = run_cli(capsys, "inspect", bad)
    assert code == 2 and str(bad) in one_error_line(err, "inspect")


def test_prepare_data_shards_and_latent_cache(tmp_path, capsys):
    shards, latents = tmp_path / "shards", tmp_path / "latents"
    code, stdout, err = run_cli(capsys, "prepare-data", "--source", "shapes", "--count", "5", "--frames", "5",
                                "--shards", shards, "--samples-per-shard", "2", "--latents", latents,
                                "--model", "flex-tiny", "--batch-size", "2", "--latents-per-shard", "2", "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in shards.glob("*.tar")) == [f"shard-00000{i}.tar" for i in range(3)]
    stored = list(VideoShardDataset(shards, ClipSpec(num_frames=None, fps=None, size=None, window="start")))
    assert len(stored) == 5 and stored[0].video.shape == (3, 5, 32, 32)

    model = VideoFlexTok.from_preset("flex-tiny")
    cache = LatentCacheDataset(latents, vae=model.vae)
    assert len(cache) == 5 and len(cache.info.shards) == 3
    clips = ShapesDataset(ShapesConfig(num_samples=5, num_frames=5, size=32, fps=8.0))
    for i in (0, 2, 4):  # one item per shard
        item, clip = cache[i], clips[i]
        expected = model.vae.encode(clip.video[None])[0]
        assert item.latents.shape == (192, 2, 8, 8)
        torch.testing.assert_close(item.latents, expected)
        assert (item.label, item.caption) == (clip.label, clip.caption)
    batch = collate_latents([cache[i] for i in range(4)])
    assert batch.latents.shape == (4, 192, 2, 8, 8) and batch.labels.shape == (4,)
    assert torch.isfinite(model.training_loss(batch.latents, generator=torch.Generator().manual_seed(0)))

    with pytest.raises(LatentCacheError, match="another VAE"):
        LatentCacheDataset(latents, vae=VideoFlexTok.from_preset("flex-demo").vae)
    assert cache.info.vae == vae_identity(model.vae) and cache.info.vae.kind == "vae"
    code, stdout, _ = run_cli(capsys, "inspect", latents)
    assert code == 0 and "5 clips in 3 shard(s)" in stdout and str(vae_identity(model.vae)) in stdout
    index = json.loads((latents / "index.json").read_text())
    (latents / "index.json").write_text(json.dumps({**index, "format_version": 1}))  # an older cache
    with pytest.raises(LatentCacheError, match="format version 1.*rebuild the cache"):
        LatentCacheDataset(latents)
    (latents / "index.json").unlink()  # an interrupted write leaves no index: not a cache
    with pytest.raises(LatentCacheError, match="not a latent cache"):
        LatentCacheDataset(latents)
    code, _, err = run_cli(capsys, "prepare-data", "--source", "folder", "--shards", shards)
    assert code == 2 and "needs --path" in one_error_line(err, "prepare-data")
    empty = tmp_path / "no_videos"
    empty.mkdir()
    code, _, err = run_cli(capsys, "prepare-data", "--source", "folder", "--path", str(empty), "--shards", shards)
    line = one_error_line(err, "prepare-data")
    assert code == 2 and "no video files found" in line and line.count(str(empty)) == 1


def test_chunk_batch_changes_memory_not_tokens(tmp_path, capsys, carphone):
    """``--chunk-batch`` (chunks encoded at once) gives the same token file, byte for byte, at 1 and 64."""
    files = []
    for n in ("1", "64"):
        out = tmp_path / n
        code, _, err = run_cli(capsys, "tokenize", carphone, "-o", out, "--model", "flex-tiny", "--max-frames", "49",
                               "--chunk-batch", n, "--quiet")
        assert code == 0, err
        files.append(next(out.glob("*.tokens.safetensors")).read_bytes())
    assert files[0] == files[1]
    code, _, err = run_cli(capsys, "tokenize", carphone, "-o", tmp_path / "x", "--chunk-batch", "0")
    assert code == 2 and err.count("\n") == 1 and "--chunk-batch" in err
