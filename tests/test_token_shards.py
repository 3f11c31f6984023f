"""Token datasets (``data/token_shards.py``, ``videoflex tokenize-dataset``) with the flex-tiny preset on shapes.

7 clips of 9 frames at 32x32, 3 clips a shard: shards of 3, 3 and 1 clips, ids [3 steps, 16 tokens] each.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import randomize_
from safetensors import safe_open

from videoflex import VideoFlexTok
from videoflex.cli.main import main
from videoflex.data import token_shards
from videoflex.data.shapes import ShapesConfig, ShapesDataset
from videoflex.data.token_shards import (
    TokenShardDataset,
    TokenShardError,
    TokenShardMismatch,
    class_names_of,
    read_token_index,
    write_token_shards,
)

CLIPS, FRAMES, PER_SHARD = 7, 9, 3
CLI = ["tokenize-dataset", "--source", "shapes", "--count", str(CLIPS), "--frames", str(FRAMES), "--model",
       "flex-tiny", "--clips-per-shard", str(PER_SHARD), "--batch-size", "2", "--quiet"]


@pytest.fixture(scope="module")
def preset() -> VideoFlexTok:
    return VideoFlexTok.from_preset("flex-tiny").eval()


@pytest.fixture(scope="module")
def clips() -> ShapesDataset:
    """The clips ``--source shapes --count 7 --frames 9`` reads at the tiny model's 32 pixels."""
    return ShapesDataset(ShapesConfig(num_samples=CLIPS, num_frames=FRAMES, size=32, fps=8.0))


@pytest.fixture(scope="module")
def written(tmp_path_factory, clips, preset) -> Path:
    out = tmp_path_factory.mktemp("tokens") / "ds"
    write_token_shards(clips, preset, out, clips_per_shard=PER_SHARD, batch_size=2,
                       class_names=class_names_of(clips), progress=False)
    return out


def _bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def _one_line(capsys, argv: list[str]) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    assert lines[0].startswith("videoflex tokenize-dataset: error: "), lines
    return lines[0]


def test_round_trip_equals_tokenizing_each_clip(written, clips, preset):
    dataset = TokenShardDataset(written, preset.identity)
    info = dataset.info
    assert (info.num_clips, info.token_steps, info.tokens_per_step, info.codebook_size) == (7, 3, 16, 64000)
    assert [(e.file, e.count) for e in info.shards] == [("tokens-000000.safetensors", 3),
                                                       ("tokens-000001.safetensors", 3),
                                                       ("tokens-000002.safetensors", 1)]
    assert info.complete and info.tokenizer == preset.identity and info.image_size == (32, 32)
    assert info.class_names == class_names_of(clips) and len(info.class_names) == clips.num_classes
    assert len(dataset) == CLIPS
    for i in range(CLIPS):
        sample, clip = dataset[i], clips[i]
        assert sample.ids.dtype == torch.int64 and sample.ids.shape == (3, 16)
        assert torch.equal(sample.ids, preset.tokenize(clip.video[None])[0])
        assert sample.label == clip.label and sample.caption == clip.caption and sample.source == clip.source
        factors = clips.factors(i)
        assert info.class_names[sample.label] == f"{factors.colour} {factors.shape} {factors.motion}"
    with safe_open(str(written / "tokens-000000.safetensors"), framework="pt") as f:
        assert f.get_tensor("ids").dtype == torch.uint16  # 64,000 codes: the smallest dtype, as token files
        assert json.loads(f.metadata()["captions"]) == [clips[i].caption for i in range(3)]
    assert dataset[-1].source == clips[CLIPS - 1].source
    with pytest.raises(IndexError):
        dataset[CLIPS]


def test_cli_is_byte_identical_across_runs_and_workers(tmp_path, written, capsys):
    assert main([*CLI, "-o", str(tmp_path / "a")]) == 0
    assert "7 clips of 9 frames" in capsys.readouterr().out
    assert main([*CLI, "-o", str(tmp_path / "b"), "--num-workers", "2"]) == 0
    first = _bytes(tmp_path / "a")
    assert sorted(first) == ["index.json", "tokens-000000.safetensors", "tokens-000001.safetensors",
                             "tokens-000002.safetensors"]
    assert first == _bytes(tmp_path / "b")
    index = json.loads(first["index.json"])
    assert index["format"] == "videoflex-token-shards" and index["format_version"] == 1
    assert json.loads(index["source"])["sources"][0]["kind"] == "shapes"
    # the library call of the fixture wrote the same ids and labels (its source description is empty)
    for name in ("tokens-000000.safetensors", "tokens-000002.safetensors"):
        assert first[name] == (written / name).read_bytes()


def test_resume_after_an_interruption_gives_the_same_bytes(tmp_path, capsys, monkeypatch):
    assert main([*CLI, "-o", str(tmp_path / "whole")]) == 0
    write_shard = token_shards._write_shard
    written_now: list[int] = []

    def interrupted(out, number, *args):
        if number == 2:
            raise KeyboardInterrupt  # as Ctrl-C (or a kill) during the third shard
        written_now.append(number)
        return write_shard(out, number, *args)

    monkeypatch.setattr(token_shards, "_write_shard", interrupted)
    part = tmp_path / "part"
    assert main([*CLI, "-o", str(part)]) == 130
    assert written_now == [0, 1]
    index = read_token_index(part, allow_incomplete=True)
    assert not index.complete and len(index.shards) == 2
    with pytest.raises(TokenShardError, match="incomplete token dataset .2 of 3 shards.*--resume"):
        TokenShardDataset(part)
    capsys.readouterr()
    assert "holds an incomplete (2 of 3 shards) token dataset; pass resume (--resume)" in _one_line(
        capsys, [*CLI, "-o", part])
    line = _one_line(capsys, [*CLI, "-o", part, "--resume", "--count", "8"])
    assert "cannot resume: num_clips was 7, now 8" in line
    assert main(["inspect", str(part)]) == 0
    assert "INCOMPLETE: 6 clips written (continue with --resume)" in capsys.readouterr().out
    (part / ".tokens-000002.999.deadbeef.tmp.safetensors").write_bytes(b"half")  # left by a killed process
    monkeypatch.setattr(token_shards, "_write_shard", lambda out, number, *args: (written_now.append(number),
                                                                                   write_shard(out, number, *args))[1])
    written_now.clear()
    assert main([*CLI, "-o", str(part), "--resume"]) == 0
    assert written_now == [2]  # the finished shards were skipped
    assert _bytes(part) == _bytes(tmp_path / "whole")
    assert main([*CLI, "-o", str(part), "--resume"]) == 0 and written_now == [2]  # complete: nothing to do


def test_another_tokenizer_is_refused(tmp_path, written, preset, capsys):
    other = randomize_(VideoFlexTok.from_preset("flex-tiny"), seed=3).eval()
    model_dir = other.save_pretrained(tmp_path / "model")
    assert other.identity.config_hash == preset.identity.config_hash
    assert other.identity.weights_hash != preset.identity.weights_hash
    with pytest.raises(TokenShardMismatch) as caught:
        TokenShardDataset(written, other.identity)
    message = str(caught.value)
    assert message.startswith(f"{written}: token shards were made by ") and preset.identity.weights_hash in message
    assert other.identity.weights_hash in message
    for extra in ([], ["--resume"]):
        line = _one_line(capsys, [*CLI, "-o", written, "--model", model_dir, *extra])
        assert "holds token shards made by another tokenizer" in line and other.identity.weights_hash in line
    assert len(TokenShardDataset(written, preset.identity)) == CLIPS  # untouched


def test_truncated_shard_and_newer_format_are_refused(tmp_path, written, preset):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in _bytes(written).items():
        (copy / name).write_bytes(data)
    shard = copy / "tokens-000001.safetensors"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[: size // 2])
    dataset = TokenShardDataset(copy, preset.identity)
    assert torch.equal(dataset[0].ids, TokenShardDataset(written)[0].ids)  # shards are read lazily
    with pytest.raises(TokenShardError, match=f"tokens-000001.safetensors: truncated or damaged shard: "
                                              f"{size // 2} bytes, the index records {size}"):
        dataset[4]
    index = json.loads((copy / "index.json").read_text())
    (copy / "index.json").write_text(json.dumps({**index, "format_version": 2}))
    with pytest.raises(TokenShardError, match="format version 2 is newer than this videoflex reads .1.; upgrade"):
        TokenShardDataset(copy)
    with pytest.raises(TokenShardError, match="not a token dataset .no index.json."):
        TokenShardDataset(tmp_path)


def test_cli_errors_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert "give exactly one of --source KIND or --config RECIPE" in _one_line(
        capsys, ["tokenize-dataset", "--model", "flex-tiny", "-o", out])
    assert "--size 64: the tokenizer takes 32x32 frames" in _one_line(capsys, [*CLI, "-o", out, "--size", "64"])
    assert "--model nothing: no such file or folder, and not a preset" in _one_line(
        capsys, [*CLI, "-o", out, "--model", "nothing"])
    code = main([*CLI, "-o", out, "--clips-per-shard", "0"])
    assert code == 2 and "--clips-per-shard" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written by a refused command


def test_inspect_describes_a_token_dataset(written, capsys):
    assert main(["inspect", str(written)]) == 0
    out = capsys.readouterr().out
    assert f"{written}: {CLIPS} clips in 3 shard(s), complete" in out
    assert "x 16 tokens per clip (codebook 64000)" in out and "flex-tokenizer 'flex-tiny'" in out
