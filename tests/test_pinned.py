"""Focused tests that pin behaviour the end-to-end tests let slip (issue 18, items 8 and 9).

Each test names the deliberate bug it catches: ``inspect`` reporting a truncated video's header count or
printing file text raw; the ``guidance=`` override of ``detokenize`` not reaching the sampler; PSNR/SSIM on
[-1, 1] data instead of pixels; resume not restoring the global RNG; ``keep`` off by one; the FSQ digit
order; a frame repeated (or skipped) at a chunk seam.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import tarfile
from pathlib import Path

import av
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from videoflex.cli.inspect import printable
from videoflex.cli.main import main
from videoflex.data.sample_clips import sample_clip_path
from videoflex.eval.metrics import video_metrics
from videoflex.eval.sweep import SweepSettings, run_sweep
from videoflex.io.tokens import TokenMetadata, VideoTokens, save_tokens
from videoflex.io.video import read_video, write_video
from videoflex.models.identity import ModelIdentity
from videoflex.nn.fsq import FSQ
from videoflex.tokenizers.chunking import plan_chunks


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run_cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- inspect: decodable frames


@pytest.fixture(scope="module")
def mp4_33(tmp_path_factory) -> Path:
    """A 33-frame 32x32 mp4 at 8 fps written by us (index at the front, then the frame data)."""
    video = read_video(sample_clip_path("carphone_pristine"), fps=8, size=32, max_frames=33).video
    assert video.shape[1] == 33
    return write_video(tmp_path_factory.mktemp("mp4") / "whole.mp4", video, fps=8)


def cut_inside_packet(source: Path, target: Path, packet: int) -> Path:
    """Copy ``source`` up to the middle of its ``packet``-th video packet (0-based, file order): the
    packets before it are whole, it is cut, the rest are gone; the header still declares every frame."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        packets = [(p.pos, p.size) for p in container.demux(stream) if p.size > 0]
    positions = sorted(packets)
    pos, size = positions[packet]
    assert all(p + s <= pos for p, s in positions[:packet])  # the earlier packets lie before the cut
    target.write_bytes(source.read_bytes()[: pos + size // 2])
    return target


def test_inspect_counts_the_frames_a_truncated_video_decodes(tmp_path, capsys, mp4_33):
    """Header says 33 frames; 8 whole packets remain: inspect reports 8 (decoded) and names the header's 33."""
    cut = cut_inside_packet(mp4_33, tmp_path / "cut.mp4", packet=8)
    code, out, err = run_cli(capsys, "inspect", cut)
    assert code == 0, err
    rows = dict(line.split(maxsplit=1) for line in out.splitlines())
    assert rows["frames"] == ("8 at 8 fps (all decoded; the header declares 33; 1 damaged packet(s): "
                              "the file is truncated or damaged)")
    assert rows["duration"] == "1.00 s"
    code, out, _ = run_cli(capsys, "inspect", "--count", "demux", cut)  # the fast count says it is an estimate
    rows = dict(line.split(maxsplit=1) for line in out.splitlines())
    assert code == 0 and rows["frames"].startswith(
        "8 at 8 fps (estimate: complete packets counted by demuxing, not decoded; the header declares 33")
    assert rows["duration"] == "1.00 s (estimate)"
    code, out, _ = run_cli(capsys, "inspect", mp4_33)  # an intact file: the counts agree, nothing else said
    rows = dict(line.split(maxsplit=1) for line in out.splitlines())
    assert code == 0 and rows["frames"] == "33 at 8 fps (all decoded)" and rows["duration"] == "4.12 s"


# ----------------------------------------------------------------------------- inspect: untrusted text

HOSTILE = "\x1b[31mred\x1b[0m\nfake row  x\r\t\\\u202e\x07"
HOSTILE_ESCAPED = "\\x1b[31mred\\x1b[0m\\nfake row  x\\r\\t\\\\\\u202e\\x07"


def test_printable_escapes_control_characters_and_keeps_text():
    assert printable(HOSTILE) == HOSTILE_ESCAPED
    assert printable("clips/été 日本 a b.mp4") == "clips/été 日本 a b.mp4"  # printable text of any script stays
    assert printable("\u2028\x00\U000e0001") == "\\u2028\\x00\\U000e0001"


def _one_line_per_row(out: str, rows: int) -> list[str]:
    lines = out.splitlines()
    assert len(lines) == rows, out
    assert not any(c in out for c in "\x1b\r\x07\u202e"), out
    return lines


def test_inspect_escapes_text_read_from_token_files(tmp_path, capsys, tiny_model):
    meta = TokenMetadata.for_model(tiny_model, num_frames=17, fps=8.0, source_size=(32, 32), source_path=HOSTILE)
    path = save_tokens(tmp_path / "x.tokens.safetensors", VideoTokens(torch.zeros(5, 16, dtype=torch.int64), meta))
    with safe_open(str(path), framework="pt") as f:  # a model name with escape codes too
        metadata, ids = {**f.metadata(), "model_name": "tiny\x1b]0;title\x07\nmodel"}, f.get_tensor("ids")
    save_file({"ids": ids}, str(path), metadata=metadata)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0, err
    lines = _one_line_per_row(out, 7)
    assert lines[-1] == f"source      {HOSTILE_ESCAPED} (32x32)"
    assert "'tiny\\x1b]0;title\\x07\\nmodel'" in lines[1]


def test_inspect_escapes_text_read_from_shards_and_tensor_names(tmp_path, capsys):
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as archive:
        for name, data in (("0000.mp4", b"not decoded by inspect"),
                           ("0000.json", json.dumps({"caption": HOSTILE, "label": 3}).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    code, out, err = run_cli(capsys, "inspect", shard)
    assert code == 0, err
    lines = _one_line_per_row(out, 2)
    assert lines[1] == f"first clip  caption '{HOSTILE_ESCAPED}', label 3"
    foreign = tmp_path / "foreign.safetensors"
    save_file({"a\nb\x1b[2J": torch.zeros(2)}, str(foreign))
    code, out, _ = run_cli(capsys, "inspect", foreign)
    lines = _one_line_per_row(out, 2)
    assert code == 0 and lines[1].startswith("a\\nb\\x1b[2J  F32 [2]")


# ----------------------------------------------------------------------------- detokenize: guidance


def test_detokenize_guidance_override_reaches_the_sampler(tiny_model, video):
    """``guidance=g`` decodes exactly like a sampler config with guidance g, and unlike the default."""
    ids = tiny_model.tokenize(video[:1])
    default = tiny_model.config.sampler
    assert default.guidance == 3.0
    overridden = tiny_model.detokenize(ids, guidance=7.0, generator=gen())
    configured = tiny_model.detokenize(ids, sampler=dataclasses.replace(default, guidance=7.0), generator=gen())
    plain = tiny_model.detokenize(ids, generator=gen())
    assert torch.equal(overridden, configured)
    assert (overridden - plain).abs().max() > 1e-2
    steps = tiny_model.detokenize(ids, steps=2, generator=gen())  # the other override, the same way
    assert torch.equal(steps, tiny_model.detokenize(ids, sampler=dataclasses.replace(default, steps=2),
                                                    generator=gen()))


# ----------------------------------------------------------------------------- eval recon: PSNR on pixels


class _OffsetTokenizer:
    """A stand-in tokenizer for :func:`run_sweep`: its reconstruction is the input brightened by
    ``levels`` 8-bit levels (the ids are the input itself, kept aside)."""

    def __init__(self, levels: int) -> None:
        self.levels = levels
        self.device = torch.device("cpu")
        self.identity = ModelIdentity("test-offset", "offset", "0" * 16, "0" * 16)
        self._video: torch.Tensor | None = None

    def check_keep(self, keep: int) -> int:
        return keep

    def tokenize(self, video: torch.Tensor) -> torch.Tensor:
        self._video = video
        return torch.zeros(video.shape[0], 1 + (video.shape[2] - 1) // 4, 16, dtype=torch.int64)

    def detokenize(self, ids, keep=None, steps=None, guidance=None, num_frames=None, generator=None):
        assert self._video is not None and num_frames == self._video.shape[2]
        return self._video + self.levels / 127.5


def test_sweep_psnr_is_measured_on_8_bit_pixels():
    """A reconstruction off by 8 levels in every pixel has PSNR 20 log10(255 / 8) = 30.07 dB (on [-1, 1]
    data it would read 24.05 dB); SSIM is that of the [0, 1] pair."""
    pixels = torch.randint(0, 240, (2, 3, 9, 32, 32), generator=gen(3))
    clips = pixels.float() / 127.5 - 1
    result = run_sweep(_OffsetTokenizer(8), clips, SweepSettings((4,), steps=1, guidance=1.0), progress=False)
    (only,) = result.results
    assert only.psnr == pytest.approx(20 * math.log10(255 / 8), abs=1e-3)
    recon = (pixels.float() + 8) / 255
    expected_ssim = float(video_metrics(recon, pixels.float() / 255).ssim.mean())
    on_wrong_scale = float(video_metrics(recon * 2 - 1, clips).ssim.mean())
    assert only.ssim == pytest.approx(expected_ssim, abs=1e-5)
    assert abs(expected_ssim - on_wrong_scale) > 1e-3  # the scale matters for SSIM too
    assert (only.keep, only.tokens_per_clip, result.num_clips, result.frames) == (4, 12, 2, 9)


# ----------------------------------------------------------------------------- resume: the RNG state


def test_restore_puts_back_the_global_rng_state(tmp_path):
    """Resuming sets torch's global RNG to the state the checkpoint holds, whatever it was before."""
    from test_train import recipe

    from videoflex.train.checkpoint import list_checkpoints, load_checkpoint
    from videoflex.train.loop import restore, setup
    from videoflex.train.tasks.tokenizer import TokenizerTask
    from videoflex.train.tasks.tokenizer_config import load_train_config

    out = tmp_path / "run"
    assert main(["train", "tokenizer", "--quiet", *recipe(out, tmp_path / "cache", steps=2)]) == 0
    checkpoint = list_checkpoints(out / "checkpoints")[-1]
    saved = load_checkpoint(checkpoint).rng
    run = setup(TokenizerTask(load_train_config(None, recipe(out, tmp_path / "cache", steps=2))))
    torch.manual_seed(12345)
    assert not torch.equal(torch.get_rng_state(), saved)
    assert restore(run, checkpoint) == 2
    assert torch.equal(torch.get_rng_state(), saved)
    after = torch.rand(4)  # a draw that depends on it
    torch.set_rng_state(saved)
    assert torch.equal(after, torch.rand(4))


# ----------------------------------------------------------------------------- keep: exactly k tokens


@pytest.mark.parametrize("keep", [1, 4, 15])
def test_keep_k_reads_exactly_the_first_k_tokens(tiny_model, video, keep):
    """Token k-1 (the last kept) changes the output, token k (the first dropped) does not."""
    ids = tiny_model.tokenize(video[:1])
    base = tiny_model.detokenize(ids, keep=keep, generator=gen())
    for position, matters in ((keep - 1, True), (keep, False)):
        changed = ids.clone()
        changed[..., position] = (changed[..., position] + 31_999) % 64_000
        out = tiny_model.detokenize(changed, keep=keep, generator=gen())
        assert (not torch.equal(out, base)) == matters, (position, matters)


def test_embed_tokens_masks_positions_from_keep_on(tiny_model):
    decoder = tiny_model.decoder
    codes = tiny_model.fsq.ids_to_codes(torch.randint(0, 64_000, (2, 3, 16), generator=gen(2)))
    x = decoder.embed_tokens(codes, torch.tensor([1, 5]))
    mask = decoder.nested_mask_token.to(x.dtype).expand_as(x[0, 0, 0])
    for sample, keep in enumerate((1, 5)):
        masked = [bool(torch.equal(x[sample, step, i], mask)) for step in range(3) for i in range(16)]
        assert masked == [i >= keep for _ in range(3) for i in range(16)]


# ----------------------------------------------------------------------------- FSQ: digit order


FSQ_PAIRS = [  # id, code for levels (8, 8, 8, 5, 5, 5); the first channel varies fastest
    (0, (-1, -1, -1, -1, -1, -1)),
    (1, (-0.75, -1, -1, -1, -1, -1)),
    (8, (-1, -0.75, -1, -1, -1, -1)),
    (512, (-1, -1, -1, -0.5, -1, -1)),
    (12_800, (-1, -1, -1, -1, -1, -0.5)),
    (1 + 8 * 2 + 64 * 3 + 512 * 1 + 2560 * 2 + 12_800 * 3, (-0.75, -0.5, -0.25, -0.5, 0, 0.5)),
    (63_999, (0.75, 0.75, 0.75, 1, 1, 1)),
]


def test_fsq_ids_and_codes_are_pinned():
    fsq = FSQ((8, 8, 8, 5, 5, 5))
    ids = torch.tensor([i for i, _ in FSQ_PAIRS])
    codes = torch.tensor([c for _, c in FSQ_PAIRS], dtype=torch.float32)
    assert torch.equal(fsq.ids_to_codes(ids), codes)
    assert torch.equal(fsq.codes_to_ids(codes), ids)
    assert torch.equal(fsq(codes * 10).ids[[0, -1]], ids[[0, -1]])  # the corners of the grid, quantised


# ----------------------------------------------------------------------------- chunk seams


def covered_frames(num_frames: int, chunk_frames: int, overlap: int, tf: int) -> list[range]:
    """The frames each chunk of a plan contributes to the stitched video (its own frames, the shared
    ones going to the chunk before)."""
    plan = plan_chunks(num_frames, chunk_frames, overlap, tf)
    return [range(c.start + (overlap if i else 0), c.start + c.frames) for i, c in enumerate(plan.chunks)]


def test_chunks_cover_every_frame_once():
    assert [(c.start, c.frames) for c in plan_chunks(49, 17, 1, 4).chunks] == [(0, 17), (16, 17), (32, 17)]
    assert covered_frames(49, 17, 1, 4) == [range(17), range(17, 33), range(33, 49)]
    # overlap 5 (stride 12), 30 frames padded to 33
    assert [(c.start, c.frames) for c in plan_chunks(30, 17, 5, 4).chunks] == [(0, 17), (12, 17), (24, 9)]
    assert covered_frames(30, 17, 5, 4) == [range(17), range(17, 29), range(29, 33)]
    for frames in range(1, 80):
        for overlap in (1, 5):
            plan = plan_chunks(frames, 17, overlap, 4)
            stitched = [f for r in covered_frames(frames, 17, overlap, 4) for f in r]
            assert stitched == list(range(plan.padded_frames)), (frames, overlap)


def test_tokenize_reads_each_chunk_from_its_first_frame(tiny_model):
    """The tokens of chunk 2 of a 33-frame video are those of frames 16..32 alone (first step shared)."""
    video = torch.rand(1, 3, 33, 32, 32, generator=gen(6)) * 2 - 1
    ids = tiny_model.tokenize(video)
    assert ids.shape[1] == 9
    assert torch.equal(ids[:, :5], tiny_model.tokenize(video[:, :, :17]))
    assert torch.equal(ids[:, 5:], tiny_model.tokenize(video[:, :, 16:33])[:, 1:])


def test_decoded_long_video_repeats_no_frame_at_a_seam(tiny_model):
    """Chunk 2 starts from the frame chunk 1 ended on (the exact space-to-depth VAE reproduces it): the
    stitched video must keep it once. With random weights every other pair of neighbouring frames differs."""
    ids = tiny_model.tokenize(torch.rand(1, 3, 49, 32, 32, generator=gen(7)) * 2 - 1)
    out = tiny_model.detokenize(ids, generator=gen())
    assert out.shape[2] == 49
    step = (out[:, :, 1:] - out[:, :, :-1]).abs().amax(dim=(0, 1, 3, 4))  # [48]: frame t+1 vs frame t
    assert step.min() > 0.05, step
