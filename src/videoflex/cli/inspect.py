"""``videoflex inspect FILE``: describe a token file, a model, a training checkpoint, a latent cache or a
video."""

from __future__ import annotations

import argparse
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import safetensors
import torch
from safetensors import safe_open

from videoflex.cli.errors import UserError
from videoflex.data.latent_cache import LATENT_FORMAT, read_latent_index
from videoflex.data.sharded import INDEX_NAME
from videoflex.data.token_shards import TOKEN_SHARDS_FORMAT, read_token_index
from videoflex.generators.ar.config import ARConfig
from videoflex.generators.ar.model import ARGenerator
from videoflex.io.errors import VideoReadError
from videoflex.io.tokens import TOKEN_FORMAT, load_tokens, read_token_header
from videoflex.io.video import VideoInfo, probe_video
from videoflex.models.identity import ModelIdentity
from videoflex.models.pretrained import (
    LEGACY_FORMATS,
    MODEL_FORMAT,
    WEIGHTS_NAME,
    PretrainedModel,
    read_saved_model,
)
from videoflex.registry import LOADERS, get_kind
from videoflex.tokenizers.chunked import ChunkedFlowTokenizer
from videoflex.utils.dataclass_io import from_dict


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect", help="describe a token file, model, checkpoint, latent cache or video",
        description="Describe FILE: a token file (model identity, shape, tokens per step, source), a saved "
                    "model of any kind (folder or model.safetensors: kind, config summary, identity and "
                    "parameter counts), a released checkpoint a registered loader reads, a training checkpoint "
                    "(step_*.pt), a latent cache (folder or its index.json), webdataset shards (a .tar or a "
                    "folder of them), or a video (codec, size, frames, "
                    "frame rate, duration). Nothing is modified.")
    p.add_argument("file", metavar="FILE", help="the file or folder to describe")
    p.add_argument("--count", choices=COUNT_METHODS, default="auto",
                   help="how a video's frames are counted: 'decode' decodes every frame (exact), 'demux' counts "
                        "complete packets without decoding (fast, an estimate), 'auto' decodes when the video "
                        f"has at most {DECODE_BUDGET_PIXELS / 1e9:g} gigapixels (about 1,000 frames at 1080p), "
                        "else demuxes (default: auto)")
    p.set_defaults(run=run)


COUNT_METHODS = ("auto", "decode", "demux")
DECODE_BUDGET_PIXELS = 2e9
"""``--count auto`` decodes a video whose header frame count x H x W is at most this, else demuxes."""


def printable(text: object) -> str:
    """``str(text)`` safe to print on a terminal, one line: a backslash becomes ``\\\\``; a newline, carriage
    return and tab become ``\\n``, ``\\r``, ``\\t``; any other character Python does not call printable
    (control characters such as ESC, bidirectional overrides, line and paragraph separators, unassigned code
    points) becomes ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``. Printable text (any script, spaces included)
    is kept as is. Every string ``inspect`` prints goes through this: file names, and text read from files
    (paths, model names, captions, tensor names, JSON)."""
    out = []
    for ch in str(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _show(rows: list[tuple[str, str]]) -> None:
    """Print ``key  value`` rows, one line each: every key and value goes through :func:`printable`."""
    rows = [(printable(key), printable(value)) for key, value in rows]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / WEIGHTS_NAME).is_file():
            return _model(path / WEIGHTS_NAME, folder=path)
        if (path / INDEX_NAME).is_file():
            return _indexed(path)
        tars = sorted(path.glob("*.tar"))
        if tars:
            return _shards(path, tars)
        if (path / "meta.json").is_file() and (path / ".metadata").is_file():
            return _training_checkpoint(path)  # a sharded (FSDP) training checkpoint
        released = _released(path)
        if released is not None:
            return released
        raise UserError(f"{path}: a folder without {WEIGHTS_NAME} (a model), {INDEX_NAME} (a latent cache or "
                        "token dataset), "
                        ".tar shards or a sharded training checkpoint")
    if path.name == INDEX_NAME:
        return _indexed(path.parent)
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
        except safetensors.SafetensorError as err:
            raise UserError(f"{path}: not a complete safetensors file, truncated or corrupt ({err})") from None
        kind = metadata.get("format")
        if kind == TOKEN_FORMAT:
            return _tokens(path)
        if kind == MODEL_FORMAT or kind in LEGACY_FORMATS:
            return _model(path)
        if kind == LATENT_FORMAT:
            return _latent_shard(path, metadata)
        released = _released(path)
        return _foreign(path) if released is None else released
    if path.suffix == ".pt":
        return _training_checkpoint(path)
    if path.suffix == ".tar":
        return _shards(path, [path])
    return _video(path, args.count)


def _tokens(path: Path) -> int:
    header = read_token_header(path)
    tokens = load_tokens(path)  # validates the ids too
    m = header.metadata
    _show([
        ("token file", f"{path} ({_bytes(path.stat().st_size)}, format {TOKEN_FORMAT} v{header.format_version})"),
        ("model", _identity(m.model)),
        ("codes", f"{m.num_registers} tokens per step, codebook {m.codebook_size}"),
        ("tokens", (f"{tokens.token_steps} time steps x {tokens.tokens_per_step} tokens per step = "
                    f"{header.num_tokens} tokens")),
        ("stored", (f"{str(header.dtype).removeprefix('torch.')} [{header.tokens_per_step}, {header.token_steps}] "
                    "(token-major: a prefix of k tokens per step is one slice)")),
        ("video", f"{m.num_frames} frames at {m.fps:g} fps, {m.image_size[1]}x{m.image_size[0]}"),
        ("source", f"{m.source_path or '?'} ({m.source_size[1]}x{m.source_size[0]})"),
    ])
    return 0


def _identity(identity: ModelIdentity) -> str:
    """``str(identity)`` with the name quoted as is rather than by ``repr`` (:func:`_show` escapes it once)."""
    return (f"{identity.kind} '{identity.name}' (config {identity.config_hash}, "
            f"weights {identity.weights_hash})")


def _config_rows(model: PretrainedModel) -> list[tuple[str, str]]:
    """Rows describing a model's config (``model`` may be on the meta device: no weights needed)."""
    config = model.config
    parts = model.parameter_parts()
    rows = [("kind", f"{model.kind} ({type(model).__name__})"), ("name", config.name),
            ("config hash", model.config_hash)]
    if isinstance(model, ChunkedFlowTokenizer):
        rows += _tokenizer_rows(model)
    elif isinstance(model, ARGenerator):
        rows += _ar_rows(config)
    counted = ", ".join(f"{p.name} {p.parameters / 1e6:.2f}M" for p in parts)
    total = sum(p.numel() for p in model.parameters())
    return rows + [("parameters", f"{counted}; total {total / 1e6:.2f}M")]


def _tokenizer_rows(model: ChunkedFlowTokenizer) -> list[tuple[str, str]]:
    """A flow tokenizer's (flex or grid) frames, VAE, transformers, tokens and sampler."""
    config, layout = model.config, model.layout
    e, d, v = config.encoder, config.decoder, config.vae
    s = config.sampler
    return [
        ("frames", (f"{config.image_size[1]}x{config.image_size[0]}, chunks of {config.chunk_frames} frames "
                    f"overlapping {config.chunk_overlap}")),
        ("VAE", (f"{v.kind}, {v.latent_channels} latent channels, {v.temporal_factor}x{v.spatial_factor}x"
                 f"{v.spatial_factor} (t x h x w) compression")),
        ("encoder", f"depth {e.depth}, width {e.width}, {e.heads} heads, patch {e.patch_size}"),
        ("decoder", (f"depth {d.depth}, width {d.width}, {d.heads} heads, patch {d.patch_size}, "
                     f"{d.attention} attention, predicts {d.prediction}")),
        ("tokens", (f"{layout.tokens_per_step} per time step"
                    + ("" if layout.prefix_decodable else f" ({layout.grid[0]}x{layout.grid[1]} grid)")
                    + f", codebook {config.fsq.codebook_size} "
                    f"(FSQ levels {list(config.fsq.levels)})")),
        ("sampler", f"{s.method}, {s.steps} steps, guidance {s.guidance:g} ({s.guidance_method})"),
    ]


def _ar_rows(config: ARConfig) -> list[tuple[str, str]]:
    classes = f"{config.num_classes} (and a null class for CFG)" if config.num_classes else "unconditional"
    return [
        ("tokens", (f"vocabulary {config.vocab_size}, up to {config.tokens_per_step} per step x "
                    f"{config.max_steps} steps = {config.max_positions} ids a window, {config.order} order")),
        ("classes", classes),
        ("transformer", (f"depth {config.depth}, width {config.width}, {config.heads} heads, SwiGLU hidden "
                         f"{config.mlp_hidden}, RoPE base {config.rope_base:g}")),
    ]


def _model(file: Path, folder: Path | None = None) -> int:
    """A saved model of any kind: its kind, config, identity (the weights are read to hash them)."""
    try:
        saved = read_saved_model(file)
        kind = get_kind(saved.kind)
        model = kind.model_class.from_pretrained(file)
    except (ValueError, FileNotFoundError) as err:  # these name the file and the problem
        message = str(err)
        raise UserError(message if message.startswith(str(file)) else f"{file}: {message}") from None
    with safe_open(str(file), framework="pt") as f:
        keys = list(f.keys())
        dtypes = sorted({f.get_slice(k).get_dtype() for k in keys})
    stored = "videoflex-tokenizer (earlier format)" if saved.legacy else MODEL_FORMAT
    rows = [("model", str(folder or file)),
            ("weights", (f"{file.name}: {_bytes(file.stat().st_size)}, {len(keys)} tensors "
                         f"({', '.join(dtypes)}), format {stored}"))]
    _show(rows + _config_rows(model) + [("identity", _identity(model.identity))])
    return 0


def _released(path: Path) -> int | None:
    """A checkpoint a registered foreign loader reads (e.g. apple/ml-videoflextok), or None."""
    for loader in LOADERS:
        if loader.detect(path):
            try:
                model = loader.load(path, "cpu")
            except (ValueError, FileNotFoundError) as err:
                raise UserError(str(err)) from None
            _show([("checkpoint", f"{path}: {loader.name} format (convert it with 'videoflex convert')")]
                  + _config_rows(model) + [("identity", _identity(model.identity))])
            return 0
    return None


def _training_checkpoint(path: Path) -> int:
    """A training checkpoint of any kind: a ``step_*.pt`` file or a sharded (FSDP) ``step_*`` folder. Only its
    header is read from a sharded folder (``meta.json``; DCP's files are not opened)."""
    from videoflex.train.checkpoint import META, load_checkpoint

    if path.is_dir():
        try:
            meta = json.loads((path / META).read_text())
            step, model_config, kind = int(meta["step"]), meta["model_config"], meta.get("model_kind", "flex-tokenizer")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path}: not a readable sharded training checkpoint ({err})") from None
        size = sum(p.stat().st_size for p in path.iterdir())
        counts = f"{len(meta.get('model_keys', []))} model tensors, sharded over {len(list(path.glob('*.distcp')))} files"
    else:
        try:
            state = load_checkpoint(path)
        except ValueError as err:  # load_checkpoint names the file and the problem
            raise UserError(str(err)) from None
        step, model_config, kind, size = state.step, state.model_config, state.model_kind, path.stat().st_size
        counts = f"{len(state.model)} model tensors, {len(state.ema)} EMA tensors"
    try:
        model_class = get_kind(kind).model_class
        config = from_dict(model_class.config_class, json.loads(model_config))
    except (json.JSONDecodeError, ValueError) as err:
        raise UserError(f"{path}: the model config in this checkpoint cannot be read ({err})") from None
    with torch.device("meta"):
        model = model_class(config)
    rows = [("checkpoint", f"{path} ({_bytes(size)}), training step {step}"), ("weights", counts)]
    _show(rows + _config_rows(model))
    return 0


def _indexed(root: Path) -> int:
    """A folder with an ``index.json``: a token dataset or a latent cache, by the index's ``format``."""
    try:
        fmt = json.loads((root / INDEX_NAME).read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        fmt = None  # the latent-cache reader names the problem
    return _token_dataset(root) if fmt == TOKEN_SHARDS_FORMAT else _latent_cache(root)


def _token_dataset(root: Path) -> int:
    info = read_token_index(root, allow_incomplete=True)
    done = sum(shard.count for shard in info.shards)
    state = "complete" if info.complete else f"INCOMPLETE: {done} clips written (continue with --resume)"
    classes = info.class_names
    _show([
        ("token dataset", f"{root}: {info.num_clips} clips in {info.num_shards} shard(s), {state}"),
        ("tokens", (f"{info.token_steps} time steps x {info.tokens_per_step} tokens per clip "
                    f"(codebook {info.codebook_size})")),
        ("clips", f"{info.num_frames} frames at {info.fps:g} fps, {info.image_size[1]}x{info.image_size[0]}"),
        ("classes", f"{len(classes)}: {', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''}"
         if classes else "none recorded"),
        ("tokenizer", _identity(info.tokenizer)),
    ])
    return 0


def _latent_cache(root: Path) -> int:
    info = read_latent_index(root)
    c, t, h, w = info.latent_shape
    _show([
        ("latent cache", f"{root}: {info.num_samples} clips in {len(info.shards)} shard(s)"),
        ("latents", f"[{c}, {t}, {h}, {w}] (C, t, h, w) stored as {info.dtype}"),
        ("clips", f"{info.num_frames} frames at {info.fps:g} fps, {info.image_size[1]}x{info.image_size[0]}"),
        ("VAE", f"{_identity(info.vae)}, from model {info.model_name or '?'}"),
    ])
    return 0


def _latent_shard(path: Path, metadata: dict[str, str]) -> int:
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        shape = f.get_slice("latents").get_shape() if "latents" in keys else "?"
    _show([("latent shard", f"{path} ({_bytes(path.stat().st_size)}), {metadata.get('count', '?')} clips"),
           ("latents", f"{list(shape)}"), ("VAE", metadata.get("vae", "?")),
           ("cache", f"see {path.parent / INDEX_NAME}")])
    return 0


def _shards(where: Path, tars: list[Path]) -> int:
    counts, first = [], None
    for tar in tars:
        try:
            with tarfile.open(tar) as archive:
                names = archive.getnames()
                if first is None and any(n.endswith(".json") for n in names):
                    member = archive.extractfile(next(n for n in names if n.endswith(".json")))
                    first = json.loads(member.read()) if member is not None else None
        except (tarfile.TarError, OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{tar}: not a readable .tar shard ({err})") from None
        counts.append(sum(n.endswith(".mp4") for n in names))
    rows = [("shards", f"{where}: {sum(counts)} clips in {len(tars)} .tar file(s)")]
    if first is not None:
        rows.append(("first clip", ", ".join(f"{k} {_field(v)}" for k, v in first.items())))
    _show(rows)
    return 0


def _field(value: object) -> str:
    """A JSON value for display: a string quoted as is (:func:`_show` escapes it once), anything else as JSON."""
    return f"'{value}'" if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _foreign(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        tensors = [(k, f.get_slice(k)) for k in keys]
        rows = [(k, f"{s.get_dtype()} {list(s.get_shape())}") for k, s in tensors[:20]]
    if len(keys) > 20:
        rows.append(("...", f"{len(keys) - 20} more"))
    _show([("safetensors", f"{path} ({_bytes(path.stat().st_size)}), {len(keys)} tensors; not a videoflex file")]
          + rows)
    return 0


@dataclass(frozen=True)
class FrameCount:
    """How many frames of a video's first stream are there.

    Attributes:
        frames: decoded frames (``method == "decode"``), else complete packets found by demuxing.
        method: ``"decode"`` (every packet decoded: exact) or ``"demux"`` (packets counted, not decoded: an
            estimate; a complete packet may still fail to decode).
        declared: the frame count in the container header, 0 when it declares none.
        failed: packets the demuxer flagged as damaged (demux), or that the decoder refused (decode).
    """

    frames: int
    method: str
    declared: int
    failed: int


def count_frames(path: Path, info: VideoInfo, method: str = "auto") -> FrameCount:
    """Count the frames of ``path``'s first video stream (``info`` from :func:`probe_video`).

    method: ``"decode"``, ``"demux"`` or ``"auto"`` (decode when the header count x H x W is at most
    :data:`DECODE_BUDGET_PIXELS`, else demux). Decoding skips packets the decoder refuses and drains the
    decoder at the end; demuxing skips empty packets and those flagged corrupt (a truncated last packet).

    Raises:
        VideoReadError: the file cannot be opened or demuxing fails (naming the file).
        ValueError: an unknown ``method``.
    """
    if method not in COUNT_METHODS:
        raise ValueError(f"method must be one of {COUNT_METHODS}, got {method!r}")
    if method == "auto":
        method = "decode" if info.num_frames * info.size[0] * info.size[1] <= DECODE_BUDGET_PIXELS else "demux"
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            declared = max(int(stream.frames or 0), 0)
            frames = failed = 0
            for packet in container.demux(stream):
                if method == "demux":
                    complete = packet.size > 0 and not packet.is_corrupt
                    frames += complete
                    failed += packet.size > 0 and packet.is_corrupt
                    continue
                try:  # the last (empty) packet drains the decoder
                    frames += len(stream.decode(packet))
                except av.error.FFmpegError:
                    failed += 1
    except av.error.FFmpegError as err:
        raise VideoReadError(path, f"demuxing failed ({' '.join(str(err).split())})") from None
    return FrameCount(frames, method, declared, failed)


def _frames_row(count: FrameCount, fps: float) -> str:
    how = ("all decoded" if count.method == "decode"
           else "estimate: complete packets counted by demuxing, not decoded")
    text = f"{count.frames} at {fps:.4g} fps ({how}"
    if count.declared and count.declared != count.frames:
        text += f"; the header declares {count.declared}"
    if count.failed:
        text += f"; {count.failed} damaged packet(s)"
    if count.frames < count.declared or count.failed:
        text += ": the file is truncated or damaged"
    return text + ")"


def _video(path: Path, method: str) -> int:
    info = probe_video(path)
    count = count_frames(path, info, method)
    duration = "" if count.method == "decode" else " (estimate)"
    _show([
        ("video", f"{path} ({_bytes(path.stat().st_size)})"),
        ("codec", info.codec),
        ("size", f"{info.size[1]}x{info.size[0]}"),
        ("frames", _frames_row(count, info.fps)),
        ("duration", f"{count.frames / info.fps:.2f} s{duration}"),
    ])
    return 0
