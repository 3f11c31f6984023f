"""Video reading, writing, comparison panels and the errors for damaged inputs (real sample clips)."""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from videoflex.data.sample_clips import sample_clip_path
from videoflex.io import (
    VideoNotFoundError,
    VideoReadError,
    VideoWriteError,
    atomic_output_path,
    comparison_frames,
    encode_mp4,
    probe_video,
    read_video,
    video_to_uint8,
    write_comparison,
    write_video,
)
from videoflex.io.compare import GAP


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b) ** 2).mean().item() / 4  # [-1, 1] -> [0, 1]
    return 10 * math.log10(1 / mse)


@pytest.fixture(scope="module")
def bikes() -> Path:
    return sample_clip_path("bikes")


@pytest.fixture(scope="module")
def bikes_all_frames(bikes) -> torch.Tensor:
    """Every source frame of bikes.mp4 at 64x64: [3, 250, 64, 64]."""
    return read_video(bikes, fps=None, size=64).video


@pytest.fixture(scope="module")
def clip64(bikes) -> torch.Tensor:
    """A real 64x64 clip with motion and a scene cut: [3, 24, 64, 64]."""
    return read_video(bikes, fps=8, size=64, max_frames=24, start=2.0).video


def test_read_bikes_at_8fps(bikes):
    info = probe_video(bikes)
    assert (info.num_frames, info.fps, info.size) == (250, 25.0, (272, 640))
    out = read_video(bikes, fps=8, size=64)
    expected_t = math.ceil(info.num_frames / info.fps * 8)  # 10 s at 8 fps
    assert expected_t == 80
    assert out.video.shape == (3, expected_t, 64, 64)
    assert out.video.dtype == torch.float32
    assert out.video.min() >= -1 and out.video.max() <= 1
    assert out.video.max() - out.video.min() > 1.5  # uses the range, not a constant
    assert (out.fps, out.source_fps, out.source_num_frames, out.source_size) == (8.0, 25.0, 250, (272, 640))
    step = (out.video[:, 1:] - out.video[:, :-1]).abs().mean(dim=(0, 2, 3))
    assert (step > 1e-3).float().mean() > 0.9  # nearly every frame differs from the one before


def test_every_frame_and_sample_and_hold(bikes, bikes_all_frames):
    assert bikes_all_frames.shape == (3, 250, 64, 64)
    at8 = read_video(bikes, fps=8, size=64).video
    # output frame j shows source frame floor(j * 25 / 8)
    index = torch.tensor([j * 25 // 8 for j in range(at8.shape[1])])
    torch.testing.assert_close(at8, bikes_all_frames[:, index], atol=0, rtol=0)


def test_start_and_max_frames_seek_exactly(bikes, bikes_all_frames):
    window = read_video(bikes, fps=None, size=64, start=2.0, max_frames=10)
    assert window.video.shape == (3, 10, 64, 64) and window.fps == 25.0 and window.start == 2.0
    torch.testing.assert_close(window.video, bikes_all_frames[:, 50:60], atol=0, rtol=0)
    tail = read_video(bikes, fps=8, size=64, start=9.5)
    assert tail.video.shape[1] == 4  # times 9.5, 9.625, 9.75, 9.875 lie before the 10 s end
    with pytest.raises(VideoReadError, match="past the end"):
        read_video(bikes, fps=8, size=64, start=11.0)


def test_sizes(bikes):
    assert read_video(bikes, size=(32, 48), max_frames=2).video.shape == (3, 2, 32, 48)
    assert read_video(bikes, size=None, max_frames=1).video.shape == (3, 1, 272, 640)
    with pytest.raises(ValueError, match="fps"):
        read_video(bikes, fps=0)


def test_mp4_round_trip(tmp_path, clip64):
    path = write_video(tmp_path / "clip.mp4", clip64, fps=8)
    back = read_video(path, fps=None)
    assert back.video.shape == clip64.shape
    assert back.source_fps == 8.0
    assert psnr(back.video, clip64) > 35
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left
    assert read_video(encode_mp4(clip64, fps=8), fps=None).video.shape == clip64.shape


def test_mp4_odd_size_is_padded(tmp_path, clip64):
    odd = clip64[:, :3, :33, :47]
    back = read_video(write_video(tmp_path / "odd.mp4", odd, fps=8), fps=None).video
    assert back.shape == (3, 3, 34, 48)
    assert psnr(back[:, :, :33, :47], odd) > 30


def test_gif(tmp_path, clip64):
    path = write_video(tmp_path / "clip.gif", clip64[:, :10], fps=8)
    with Image.open(path) as image:
        assert image.format == "GIF"
        assert image.n_frames == 10
        assert image.size == (64, 64)
        assert image.info["duration"] in (120, 130)  # 125 ms; GIF delays have 10 ms steps


def test_write_errors(tmp_path, clip64):
    with pytest.raises(VideoWriteError, match="does not exist"):
        write_video(tmp_path / "missing" / "a.mp4", clip64, fps=8)
    with pytest.raises(VideoWriteError, match="suffix"):
        write_video(tmp_path / "a.xyz", clip64, fps=8)
    with pytest.raises(ValueError, match=r"\[3, T, H, W\]"):
        write_video(tmp_path / "a.mp4", clip64[0], fps=8)


def test_atomic_output_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def _wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def own_mp4(tmp_path_factory, bikes) -> bytes:
    """An mp4 written by us: index (moov) at the front, then the frame data (mdat)."""
    video = read_video(bikes, fps=8, size=64, max_frames=40).video
    return write_video(tmp_path_factory.mktemp("own") / "own.mp4", video, fps=8).read_bytes()


def _bad_inputs(bikes: Path, own: bytes) -> dict[str, tuple[bytes, str]]:
    original = bikes.read_bytes()  # index at the end
    flipped = bytearray(own)
    mdat = own.find(b"mdat")
    for i in np.random.default_rng(0).integers(mdat + (len(own) - mdat) // 2, len(own), 100):
        flipped[i] ^= 0xFF
    return {
        "empty": (b"", "empty"),
        "text": (b"this is not a video\n" * 20, "not a readable video"),
        "random_bytes": (
            np.random.default_rng(1).integers(0, 256, 50_000, np.uint8).tobytes(),
            "not a readable",
        ),
        "header_only": (original[:40], "not a readable"),
        "truncated_index_at_end": (original[: len(original) // 2], "not a readable"),
        "truncated_mid_stream": (own[: int(len(own) * 0.6)], "truncated"),
        "corrupt_mid_stream": (bytes(flipped), "corrupt|decoding failed"),
        "audio_only": (_wav_bytes(), "no video stream"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "text",
        "random_bytes",
        "header_only",
        "truncated_index_at_end",
        "truncated_mid_stream",
        "corrupt_mid_stream",
        "audio_only",
    ],
)
def test_bad_inputs_raise_video_read_error(tmp_path, bikes, own_mp4, case):
    data, message = _bad_inputs(bikes, own_mp4)[case]
    path = tmp_path / f"{case}.mp4"
    path.write_bytes(data)
    with pytest.raises(VideoReadError, match=message) as error:
        read_video(path, size=32)
    assert str(error.value).startswith(str(path) + ": ")
    assert "\n" not in str(error.value)
    assert isinstance(error.value, ValueError)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(VideoNotFoundError, match="no such file") as error:
        read_video(tmp_path / "nope.mp4")
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, VideoReadError)
    with pytest.raises(VideoReadError, match="folder"):
        probe_video(tmp_path)


def test_bytes_source_is_named_in_errors():
    with pytest.raises(VideoReadError, match="^shard.tar:key.mp4: "):
        read_video(b"garbage" * 100, name="shard.tar:key.mp4")


def test_rotation_metadata_is_applied(tmp_path):
    video = -torch.ones(3, 4, 32, 64)
    video[:, :, :8, :16] = 1  # white block top-left of a landscape frame
    data = bytearray(write_video(tmp_path / "flat.mp4", video, fps=8).read_bytes())
    tkhd = data.find(b"tkhd")
    assert data[tkhd + 4] == 0  # version 0 track header: the matrix starts 44 bytes after the type
    one = 1 << 16
    data[tkhd + 44 : tkhd + 80] = struct.pack(">9i", 0, one, 0, -one, 0, 0, 0, 0, 1 << 30)  # 90 deg clockwise
    path = tmp_path / "portrait.mp4"
    path.write_bytes(bytes(data))
    out = read_video(path, fps=None)
    assert out.source_size == (64, 32) and out.video.shape == (3, 4, 64, 32)
    rows, cols = np.nonzero(video_to_uint8(out.video)[0].mean(-1) > 128)
    assert rows.max() < 20 and cols.min() > 20  # the block is now top-right


def test_comparison_video_and_strip(tmp_path, clip64):
    recons = {f"k={k}": (clip64 * k / 16).clamp(-1, 1) for k in (1, 4, 16)}
    files = write_comparison(
        clip64,
        recons,
        fps=8,
        video_path=tmp_path / "cmp.mp4",
        strip_path=tmp_path / "cmp.png",
        num_strip_frames=5,
    )
    back = read_video(files.video, fps=None).video
    width = 4 * 64 + 3 * GAP
    assert back.shape[1] == clip64.shape[1] and back.shape[3] == width
    frames = comparison_frames(clip64, recons)
    bar = frames.shape[2] - 64
    assert bar > 5
    for i in range(4):  # every panel has text drawn in its label bar, and its video below
        header = frames[:, 0, :bar, i * (64 + GAP) : i * (64 + GAP) + 64]
        assert header.max() > 0.5
    torch.testing.assert_close(
        frames[:, :, bar:, 64 + GAP : 2 * 64 + GAP], recons["k=1"], atol=1 / 127, rtol=0
    )
    with Image.open(files.strip) as strip:
        assert strip.format == "PNG"
        assert strip.height == bar + 4 * (64 + GAP)
        assert strip.width > 5 * (64 + GAP)
    with pytest.raises(ValueError, match="k=2"):
        comparison_frames(clip64, {"k=2": clip64[:, :5]})


# ----------------------------------------------------------------------------- reproducible bytes

WRITE_EVERY_KIND = r'''
import sys
from pathlib import Path

import torch

from videoflex import VideoFlexTok
from videoflex.data.latent_cache import write_latent_cache
from videoflex.data.sample import VideoSample
from videoflex.io import write_comparison, write_video
from videoflex.io.tokens import TokenMetadata, VideoTokens, save_tokens

out = Path(sys.argv[1])
g = torch.Generator().manual_seed(0)
video = torch.rand(3, 17, 36, 50, generator=g) * 2 - 1  # [3, T, H, W]; odd-free but not square
for suffix in (".mp4", ".m4v", ".mov", ".mkv", ".gif"):
    write_video(out / f"clip{suffix}", video, 8.0)
write_video(out / "odd.mp4", video[:, :9, :35, :49], 7.5)  # odd size: padded
noisy = (video + 0.1 * torch.randn(video.shape, generator=g)).clamp(-1, 1)
write_comparison(video, {"k=4": noisy, "k=8": video}, 8.0, video_path=out / "compare.mp4",
                 strip_path=out / "strip.png")
write_comparison(video, {"k=4": noisy}, 8.0, video_path=out / "compare.gif")
torch.manual_seed(0)
model = VideoFlexTok.from_preset("flex-tiny").eval()
ids = torch.randint(0, model.codebook_size, (5, model.num_registers), generator=g)
meta = TokenMetadata.for_model(model, num_frames=17, fps=8.0, source_size=(36, 50), source_path="clip.mp4")
save_tokens(out / "clip.tokens.safetensors", VideoTokens(ids, meta))
model.save_pretrained(out / "model")
samples = [VideoSample(torch.rand(3, 9, 32, 32, generator=g) * 2 - 1, i % 2 or None, f"clip {i}", f"s/{i}", 8.0)
           for i in range(5)]
write_latent_cache(samples, model.vae, out / "latents", samples_per_shard=2, progress=False)
from videoflex.eval.class_probe import LinearProbe, ProbeConfig
from videoflex.eval.fvd import feature_stats, save_stats

save_stats(feature_stats(torch.randn(8, 400, generator=g, dtype=torch.float64)), out / "stats.safetensors", "test")
LinearProbe(ProbeConfig(class_names=("a", "b"), feature_dim=4)).save_pretrained(out / "probe")
'''


def test_every_written_file_is_byte_identical_across_processes(tmp_path):
    """Item 5 of issue 18: the same input gives the same bytes in two processes (other hash seeds), for
    every kind of file the io layer writes: mp4/m4v/mov/mkv/gif videos, comparison video and PNG strip,
    token files, saved models, latent caches, FVD statistics and class probes (safetensors metadata used to
    come out in a random order)."""
    import os
    import subprocess
    import sys

    runs = []
    for seed in ("1", "2"):
        out = tmp_path / f"run{seed}"
        out.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", WRITE_EVERY_KIND, str(out)], check=True, env=env, timeout=300)
        runs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    first, second = runs
    assert sorted(first) == sorted(second)
    expected = {"clip.mp4", "clip.m4v", "clip.mov", "clip.mkv", "clip.gif", "odd.mp4", "compare.mp4", "strip.png",
                "compare.gif", "clip.tokens.safetensors", "model/model.safetensors", "model/config.json",
                "latents/index.json", "latents/latents-000000.safetensors", "latents/latents-000002.safetensors",
                "stats.safetensors", "probe/model.safetensors", "probe/config.json"}
    assert expected <= set(first), expected - set(first)
    different = [name for name in first if first[name] != second[name]]
    assert different == []


def test_mp4_bytes_are_those_of_x264s_plain_c_code():
    """x264's AVX-512 routines made the bytes of a comparison video change between processes (flat panels
    with text); the writer's bytes equal those of x264 without any assembly, so they match on every machine."""
    from fractions import Fraction

    if "libx264" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx264")
    g = torch.Generator().manual_seed(0)
    video = torch.rand(3, 17, 36, 50, generator=g) * 2 - 1
    noisy = (video + 0.1 * torch.randn(video.shape, generator=g)).clamp(-1, 1)
    frames = comparison_frames(video, {"k=4": noisy, "k=8": video})
    reference = io.BytesIO()
    with av.open(reference, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = frames.shape[3], frames.shape[2], "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "12", "preset": "medium", "flags": "+bitexact", "x264-params": "asm=0"}
        for i, rgb in enumerate(video_to_uint8(frames)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert encode_mp4(frames, 8.0) == reference.getvalue()


# ----------------------------------------------------------------------------- the top-level API


def test_top_level_read_video_takes_the_models_frame_size_and_rate(bikes):
    import videoflex

    class Model:  # what read_video needs of a tokenizer
        image_size = (48, 32)

    clip = videoflex.read_video(bikes, Model(), max_frames=3)
    assert clip.video.shape == (3, 3, 48, 32) and clip.fps == videoflex.MODEL_FPS == 8.0
    assert torch.equal(clip.video, read_video(bikes, fps=8, size=(48, 32), max_frames=3).video)
    # an explicit size or rate wins over the model's
    assert videoflex.read_video(bikes, Model(), size=16, max_frames=1).video.shape == (3, 1, 16, 16)
    assert videoflex.read_video(bikes, Model(), fps=None, max_frames=2).fps == 25.0
    with pytest.raises(ValueError, match="fps"):
        videoflex.read_video(bikes, Model(), fps=0)


def test_top_level_write_video_defaults_to_the_models_rate_and_takes_a_batch_of_one(tmp_path, clip64):
    import videoflex

    path = videoflex.write_video(tmp_path / "a.mp4", clip64[None, :, :8])  # [1, 3, T, H, W]
    info = probe_video(path)
    assert (info.fps, info.num_frames, info.size) == (videoflex.MODEL_FPS, 8, (64, 64))
    assert path.read_bytes() == videoflex.write_video(tmp_path / "c.mp4", clip64[:, :8], 8.0).read_bytes()
    with pytest.raises(ValueError):
        videoflex.write_video(tmp_path / "b.mp4", clip64[None].expand(2, -1, -1, -1, -1))  # two videos


def test_three_lines_from_a_file_to_tokens_and_back(tmp_path, bikes):
    """The README's example: load a model, tokenize a real clip, write its reconstruction."""
    import videoflex

    model = videoflex.load_model("flex-tiny")
    ids = model.tokenize(videoflex.read_video(bikes, model, max_frames=5).video[None])
    videoflex.write_video(tmp_path / "reconstruction.mp4", model.detokenize(ids, keep=4, steps=1, num_frames=5))
    assert ids.shape[-1] == model.layout.tokens_per_step and ids.dtype == torch.int64
    info = probe_video(tmp_path / "reconstruction.mp4")
    assert (info.num_frames, info.size, info.fps) == (5, tuple(model.image_size), 8.0)
