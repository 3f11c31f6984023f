"""Token files: exact round trip, prefix reads that touch only the prefix, and refusal of damaged,
foreign or mismatched files."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from videoflex import VideoFlexTok, load_model
from videoflex.cli.main import main
from videoflex.io.tokens import (
    IDS_KEY,
    TokenFileError,
    TokenMetadata,
    TokenModelMismatch,
    VideoTokens,
    id_dtype,
    load_tokens,
    read_token_header,
    save_tokens,
)
from videoflex.tokenizers.flex.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo"
CLIP = ROOT / "assets" / "carphone.mp4"


def make_tokens(model: VideoFlexTok, steps: int = 5, keep: int = 12, num_frames: int = 17,
                seed: int = 0) -> VideoTokens:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.codebook_size, (steps, keep), generator=g)
    ids[0, 0], ids[-1, -1] = 0, model.codebook_size - 1  # both ends of the codebook
    meta = TokenMetadata.for_model(model, num_frames=num_frames, fps=7.5, source_size=(144, 176),
                                   source_path="clips/carphone.mp4")
    return VideoTokens(ids, meta)


@pytest.fixture
def token_file(tmp_path, tiny_model) -> tuple[Path, VideoTokens]:
    tokens = make_tokens(tiny_model)
    return save_tokens(tmp_path / "clip.tokens.safetensors", tokens), tokens


def rewrite(path: Path, tensors: dict[str, torch.Tensor] | None = None, **metadata: str) -> Path:
    """Write a copy of a token file with some tensors or metadata entries replaced."""
    with safe_open(str(path), framework="pt") as f:
        meta = {**f.metadata(), **metadata}
        data = {k: f.get_tensor(k) for k in list(f.keys())}
    out = path.with_name("edited.tokens.safetensors")
    save_file(tensors if tensors is not None else data, str(out), metadata=meta)
    return out


def test_id_dtype_is_the_smallest_that_holds_the_codebook():
    assert id_dtype(256) == torch.uint8
    assert id_dtype(257) == torch.uint16
    assert id_dtype(64000) == torch.uint16
    assert id_dtype(65536) == torch.uint16
    assert id_dtype(65537) == torch.int32


def test_round_trip_is_exact(token_file, tiny_model):
    path, tokens = token_file
    loaded = load_tokens(path, model=tiny_model)
    assert loaded.ids.dtype == torch.int64
    assert torch.equal(loaded.ids, tokens.ids)
    assert loaded.metadata == tokens.metadata
    assert (loaded.token_steps, loaded.tokens_per_step) == (5, 12)
    header = read_token_header(path)
    assert header.dtype == torch.uint16 and (header.tokens_per_step, header.token_steps) == (12, 5)
    with safe_open(str(path), framework="pt") as f:  # token-major on disk
        stored = f.get_tensor(IDS_KEY)
    assert stored.dtype == torch.uint16 and stored.shape == (12, 5)
    assert torch.equal(stored.to(torch.int64), tokens.ids.t())


def test_prefix_read_is_the_slice_and_reads_only_it(token_file):
    path, tokens = token_file
    for keep in (1, 4, 12):
        assert torch.equal(load_tokens(path, keep=keep).ids, tokens.ids[:, :keep])
    # Overwrite every id after the first 4 tokens of each step with 65535 (outside the codebook) in place:
    # a full read is refused, a 4-token read never looks at those bytes.
    raw = bytearray(path.read_bytes())
    header_len = struct.unpack("<Q", raw[:8])[0]
    start, end = json.loads(raw[8 : 8 + header_len])[IDS_KEY]["data_offsets"]
    data = 8 + header_len + start
    prefix_bytes = 4 * tokens.token_steps * 2  # 4 rows of t uint16
    raw[data + prefix_bytes : 8 + header_len + end] = b"\xff" * (end - start - prefix_bytes)
    path.write_bytes(bytes(raw))
    assert torch.equal(load_tokens(path, keep=4).ids, tokens.ids[:, :4])
    with pytest.raises(TokenFileError, match="outside the codebook"):
        load_tokens(path)


def test_truncated_empty_and_garbage_files_are_refused(token_file, tmp_path):
    path, _ = token_file
    raw = path.read_bytes()
    for size in (len(raw) - 1, len(raw) // 2, 20, 5):
        cut = tmp_path / f"cut{size}.tokens.safetensors"
        cut.write_bytes(raw[:size])
        with pytest.raises(TokenFileError, match=f"{cut.name}.*(truncated|corrupt)"):
            load_tokens(cut)
    empty = tmp_path / "empty.tokens.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(TokenFileError, match="empty file"):
        load_tokens(empty)
    garbage = tmp_path / "garbage.tokens.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file at all" * 10)
    with pytest.raises(TokenFileError, match="garbage"):
        load_tokens(garbage)
    with pytest.raises(TokenFileError, match="no such file"):
        load_tokens(tmp_path / "missing.tokens.safetensors")


def test_foreign_safetensors_files_are_refused(tmp_path, tiny_model):
    plain = tmp_path / "weights.safetensors"
    save_file({"weight": torch.zeros(3, 4)}, str(plain))
    with pytest.raises(TokenFileError, match="not a videoflex token file"):
        load_tokens(plain)
    model_dir = tiny_model.save_pretrained(tmp_path / "model")
    with pytest.raises(TokenFileError, match="not a videoflex token file.*videoflex-model"):
        load_tokens(model_dir / "model.safetensors")


def test_wrong_model_is_refused(token_file, tiny_model):
    path, _ = token_file
    other = VideoFlexTok(dataclasses.replace(get_preset("flex-tiny"), name="flex-tiny-b", num_registers=12))
    assert other.config_hash != tiny_model.config_hash
    with pytest.raises(TokenModelMismatch, match="made by flex-tokenizer 'flex-tiny'.*not by the model given, "
                                                 "flex-tokenizer 'flex-tiny-b'"):
        load_tokens(path, model=other)
    load_tokens(path, model=tiny_model)  # the right model is accepted


def test_same_config_other_weights_is_refused(token_file, tiny_model):
    """The weights are part of the identity: a copy of the model with one weight changed is another model."""
    path, _ = token_file
    other = VideoFlexTok(tiny_model.config).eval()
    other.load_state_dict(tiny_model.state_dict())
    load_tokens(path, model=other)  # equal weights: accepted
    with torch.no_grad():
        other.decoder.head.bias[0] += 1e-3
    assert other.config_hash == tiny_model.config_hash and other.identity != tiny_model.identity
    with pytest.raises(TokenModelMismatch) as err:
        load_tokens(path, model=other)
    message = str(err.value)
    assert "\n" not in message and tiny_model.identity.weights_hash in message
    assert other.identity.weights_hash in message


def test_version_1_files_are_refused_with_a_request_to_retokenize(token_file):
    """Version-1 files hold no weights hash: they cannot show which weights made their ids."""
    path, _ = token_file
    with safe_open(str(path), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k not in ("model_kind", "model_weights_hash")}
        data = {k: f.get_tensor(k) for k in list(f.keys())}
    old = path.with_name("old.tokens.safetensors")
    save_file(data, str(old), metadata={**meta, "format_version": "1"})
    with pytest.raises(TokenFileError, match="version 1 records no hash of the weights.*tokenize the video again"):
        load_tokens(old)


def test_tokens_of_the_random_demo_preset_are_refused_by_the_trained_demo(tmp_path, capsys):
    """The acceptance check of issue 15: ids made by the random-weight preset flex-demo-256 (the demo's
    architecture) are not decoded by the trained checkpoints/demo, through the API and the CLI."""
    out = tmp_path / "tokens"
    assert main(["tokenize", str(CLIP), "--model", "flex-demo-256", "--max-frames", "5", "-o", str(out),
                 "--quiet"]) == 0
    path = out / "carphone.tokens.safetensors"
    preset = load_model("flex-demo-256")
    assert read_token_header(path).metadata.model == preset.identity
    trained = load_model(DEMO)
    with pytest.raises(TokenModelMismatch, match="made by flex-tokenizer 'flex-demo-256'.*not by the model given, "
                                                 "flex-tokenizer 'demo'"):
        load_tokens(path, model=trained)
    capsys.readouterr()
    code = main(["detokenize", str(path), "--model", str(DEMO), "-o", str(tmp_path / "out.mp4"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "made by flex-tokenizer 'flex-demo-256'" in err
    assert not (tmp_path / "out.mp4").exists()
    assert main(["detokenize", str(path), "--model", "flex-demo-256", "-o", str(tmp_path / "ok.mp4"), "--quiet"]) == 0


def test_bad_contents_are_refused(token_file, tiny_model):
    path, tokens = token_file
    stored = tokens.ids.t().contiguous()
    cases = [
        ({}, {"format_version": "3"}, "newer than this videoflex reads"),
        ({}, {"num_frames": "seventeen"}, "'num_frames' must be a non-negative integer"),
        ({}, {"fps": "fast"}, "'fps' must be a number"),
        ({}, {"fps": "0"}, "fps must be positive"),
        ({}, {"source_size": "144"}, "'source_size' must read HxW"),
        ({}, {"tokens_per_step": "11"}, r"shape \[12, 5\]; the metadata declares \[11, 5\]"),
        ({IDS_KEY: stored.to(torch.int64)}, {}, "stored as I64.*stored as uint16"),
        ({IDS_KEY: stored.to(torch.uint16), "extra": torch.zeros(1)}, {}, "exactly one tensor"),
        ({}, {"codebook_size": "100"}, "stored as U16.*100 codes is stored as uint8"),
        ({}, {"num_frames": "4"}, "4 frames make 2 token steps under this model, but the file holds 5"),
    ]
    for tensors, metadata, message in cases:
        edited = rewrite(path, tensors or None, **metadata)
        with pytest.raises(TokenFileError, match=message):
            load_tokens(edited, model=tiny_model)
    big = stored.to(torch.int64)
    big[3, 2] = 64000
    with pytest.raises(TokenFileError, match="id 64000 is outside the codebook"):
        load_tokens(rewrite(path, {IDS_KEY: big.to(torch.uint16)}))
    with pytest.raises(TokenFileError, match="holds 12 tokens per step; cannot read 13"):
        load_tokens(path, keep=13)


def test_tokens_validate_on_construction(tiny_model):
    meta = make_tokens(tiny_model).metadata
    with pytest.raises(ValueError, match="int64"):
        VideoTokens(torch.zeros(2, 3, dtype=torch.int32), meta)
    with pytest.raises(ValueError, match="must lie in"):
        VideoTokens(torch.full((2, 3), 64000), meta)
    with pytest.raises(ValueError, match="17 tokens per step"):
        VideoTokens(torch.zeros(2, 17, dtype=torch.int64), meta)
