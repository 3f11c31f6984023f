"""Token files: the ids of one video, with what is needed to decode them and check their origin.

Format ``videoflex-tokens`` version 2, a safetensors file holding one tensor:

- ``ids``: shape ``[k, t]`` (**token-major**: row ``i`` holds token ``i`` of every time step), so the
  first ``k' <= k`` tokens of every step are rows ``0 .. k'-1``, one contiguous block at the start of
  the data; :func:`load_tokens` with ``keep=k'`` reads only that block (``safe_open(...).get_slice``).
  The dtype is the smallest integer type that holds every id of the codebook (``uint8`` up to 256
  codes, ``uint16`` up to 65,536 — the 64,000-code FSQ —, ``int32``, else ``int64``).

String metadata (safetensors stores strings only; numbers in decimal, sizes as ``"HxW"``):

=====================  =========================================================================
``format``             ``"videoflex-tokens"``
``format_version``     ``"2"``
``model_kind``         kind of the model that made the ids (e.g. ``"flex-tokenizer"``)
``model_name``         name of its config (e.g. ``"demo"``; informational, not compared)
``model_config_hash``  its config hash (:class:`~videoflex.models.identity.ModelIdentity`)
``model_weights_hash`` the hash of its weights (:func:`~videoflex.models.identity.weights_hash`)
``codebook_size``      number of codes; every id is below it
``num_registers``      the model's tokens per step N (the file may keep fewer)
``tokens_per_step``    k, tokens per step kept in the file (= rows of ``ids``)
``token_steps``        t, time steps (= columns of ``ids``)
``num_frames``         frames of the tokenized video before the padding ``tokenize`` adds
``fps``                frame rate of the tokenized video
``image_size``         ``"HxW"`` of the tokenized frames (the model's size)
``source_size``        ``"HxW"`` of the source video's frames before resizing
``source_path``        the source video as given (may be empty)
=====================  =========================================================================

Loading validates all of it and raises :class:`TokenFileError` (a ``ValueError``) naming the file and
the problem: missing, truncated or not safetensors, a foreign safetensors file, a newer format, bad
metadata, a wrong dtype or shape, ids outside the codebook, or (given a model) ids made by a model of
another identity: another kind, config or weights (:class:`TokenModelMismatch`). Version-1 files (written
before model identities) record no weights hash, so they cannot show which weights made their ids: they are
refused with a request to tokenize the video again. Files are written under a temporary name and renamed when
complete.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import safetensors
import torch
from safetensors import safe_open

from videoflex.io.errors import FileError
from videoflex.io.safetensors_file import save_safetensors
from videoflex.io.video import atomic_output_path
from videoflex.models.identity import ModelIdentity

TOKEN_FORMAT = "videoflex-tokens"
TOKEN_FORMAT_VERSION = 2
TOKEN_SUFFIX = ".tokens.safetensors"
IDS_KEY = "ids"

_ID_DTYPES = ((torch.uint8, 2**8), (torch.uint16, 2**16), (torch.int32, 2**31), (torch.int64, 2**63))
_TORCH_DTYPES = {"U8": torch.uint8, "U16": torch.uint16, "I32": torch.int32, "I64": torch.int64}
_METADATA_KEYS = frozenset({
    "format", "format_version", "model_kind", "model_name", "model_config_hash", "model_weights_hash",
    "codebook_size", "num_registers",
    "tokens_per_step", "token_steps", "num_frames", "fps", "image_size", "source_size", "source_path",
})


class _StepLayout(Protocol):
    @property
    def tokens_per_step(self) -> int: ...


class _StepPlan(Protocol):
    @property
    def token_steps(self) -> int: ...


class TokenModel(Protocol):
    """What token files read from a model: the members of :class:`videoflex.tokenizers.base.Tokenizer` they
    use (every tokenizer has them; this layer does not import the tokenizers, which sit above it)."""

    @property
    def identity(self) -> ModelIdentity: ...

    @property
    def codebook_size(self) -> int: ...

    @property
    def layout(self) -> _StepLayout: ...

    @property
    def image_size(self) -> tuple[int, int]: ...

    def plan(self, num_frames: int) -> _StepPlan: ...


class TokenFileError(FileError):
    """A token file cannot be used; ``str(error)`` is ``"<file>: <problem>"``."""


class TokenModelMismatch(TokenFileError):
    """The ids in a token file were made by a different model than the one given."""


def id_dtype(codebook_size: int) -> torch.dtype:
    """The smallest integer dtype holding ids ``0 .. codebook_size - 1``."""
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
    return next(dtype for dtype, limit in _ID_DTYPES if codebook_size <= limit)


@dataclass(frozen=True)
class TokenMetadata:
    """Where the ids of a token file come from (everything but their sizes).

    model: the identity of the model that made the ids. num_registers: its tokens per step N.
    """

    model: ModelIdentity
    codebook_size: int
    num_registers: int
    num_frames: int
    fps: float
    image_size: tuple[int, int]
    source_size: tuple[int, int]
    source_path: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelIdentity):
            raise ValueError(f"model must be a ModelIdentity, got {type(self.model).__name__}")
        for name in ("codebook_size", "num_registers", "num_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 < self.fps < math.inf:
            raise ValueError(f"fps must be positive and finite, got {self.fps!r}")
        for name in ("image_size", "source_size"):
            size = getattr(self, name)
            if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
                raise ValueError(f"{name} must be two positive integers (H, W), got {size!r}")

    @classmethod
    def for_model(cls, model: TokenModel, *, num_frames: int, fps: float, source_size: tuple[int, int],
                  source_path: str | os.PathLike = "") -> TokenMetadata:
        """Metadata for ids that ``model`` made from a video of ``num_frames`` frames at ``fps``."""
        return cls(model=model.identity, codebook_size=model.codebook_size,
                   num_registers=model.layout.tokens_per_step,
                   num_frames=int(num_frames), fps=float(fps), image_size=tuple(model.image_size),
                   source_size=(int(source_size[0]), int(source_size[1])), source_path=str(source_path))


@dataclass(frozen=True)
class VideoTokens:
    """The token ids of one video: ``ids`` int64 ``[t, k]`` (step-major in memory, as the model's
    ``[B, t, N]`` without the batch), every id in ``[0, codebook_size)``."""

    ids: torch.Tensor
    metadata: TokenMetadata

    def __post_init__(self) -> None:
        ids = self.ids
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64 or ids.ndim != 2:
            desc = f"{ids.dtype} {list(ids.shape)}" if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must be an int64 tensor [t, k], got {desc}")
        t, k = ids.shape
        if t < 1 or k < 1:
            raise ValueError(f"ids must hold at least one step and one token, got shape {list(ids.shape)}")
        if k > self.metadata.num_registers:
            raise ValueError(f"ids hold {k} tokens per step; the model has {self.metadata.num_registers}")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.metadata.codebook_size:
            raise ValueError(f"ids must lie in [0, {self.metadata.codebook_size}), got [{lo}, {hi}]")

    @property
    def token_steps(self) -> int:
        return self.ids.shape[0]

    @property
    def tokens_per_step(self) -> int:
        return self.ids.shape[1]


@dataclass(frozen=True)
class TokenFileHeader:
    """What a token file declares, read without its ids (:func:`read_token_header`)."""

    path: Path
    format_version: int
    dtype: torch.dtype
    tokens_per_step: int
    token_steps: int
    metadata: TokenMetadata

    @property
    def num_tokens(self) -> int:
        return self.tokens_per_step * self.token_steps


# ----------------------------------------------------------------------------- writing


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def save_tokens(path: str | os.PathLike, tokens: VideoTokens) -> Path:
    """Write ``tokens`` to ``path`` (conventionally ``<stem>.tokens.safetensors``), atomically."""
    meta = tokens.metadata
    dtype = id_dtype(meta.codebook_size)
    stored = tokens.ids.t().contiguous().to(dtype)  # [k, t]: token-major, a prefix of tokens is a slice
    metadata = {
        "format": TOKEN_FORMAT,
        "format_version": str(TOKEN_FORMAT_VERSION),
        "model_kind": meta.model.kind,
        "model_name": meta.model.name,
        "model_config_hash": meta.model.config_hash,
        "model_weights_hash": meta.model.weights_hash,
        "codebook_size": str(meta.codebook_size),
        "num_registers": str(meta.num_registers),
        "tokens_per_step": str(tokens.tokens_per_step),
        "token_steps": str(tokens.token_steps),
        "num_frames": str(meta.num_frames),
        "fps": repr(float(meta.fps)),
        "image_size": _size_text(meta.image_size),
        "source_size": _size_text(meta.source_size),
        "source_path": meta.source_path,
    }
    path = Path(path)
    with atomic_output_path(path) as tmp:
        save_safetensors({IDS_KEY: stored}, tmp, metadata)
    return path


# ----------------------------------------------------------------------------- reading


def _int(path: Path, metadata: dict[str, str], key: str) -> int:
    text = metadata[key]
    if not (text.isascii() and text.isdigit()):
        raise TokenFileError(path, f"metadata {key!r} must be a non-negative integer, got {text!r}")
    return int(text)


def _size(path: Path, metadata: dict[str, str], key: str) -> tuple[int, int]:
    parts = metadata[key].split("x")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise TokenFileError(path, f"metadata {key!r} must read HxW, got {metadata[key]!r}")
    return int(parts[0]), int(parts[1])


def read_token_header(path: str | os.PathLike) -> TokenFileHeader:
    """Open ``path`` and validate everything but the id values; the ids are not read."""
    path = Path(path)
    if not path.exists():
        raise TokenFileError(path, "no such file")
    if not path.is_file():
        raise TokenFileError(path, "not a file")
    if path.stat().st_size == 0:
        raise TokenFileError(path, "empty file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            keys = list(f.keys())
            shape = dtype = None
            if keys == [IDS_KEY]:
                ids = f.get_slice(IDS_KEY)
                shape, dtype = list(ids.get_shape()), ids.get_dtype()
    except safetensors.SafetensorError as err:
        raise TokenFileError(path, f"not a complete safetensors file, truncated or corrupt ({err})") from None
    if metadata.get("format") != TOKEN_FORMAT:
        what = f"format {metadata['format']!r}" if "format" in metadata else "no videoflex format in its metadata"
        raise TokenFileError(path, f"not a videoflex token file ({what}; tensors {sorted(keys)})")
    version = metadata.get("format_version", "")
    if not (version.isascii() and version.isdigit()):
        raise TokenFileError(path, f"bad format_version {version!r}")
    if int(version) > TOKEN_FORMAT_VERSION:
        raise TokenFileError(path, f"token file format version {version} is newer than this videoflex reads "
                                   f"({TOKEN_FORMAT_VERSION}); upgrade videoflex")
    if int(version) < TOKEN_FORMAT_VERSION:
        raise TokenFileError(path, f"token file format version {version} records no hash of the weights that "
                                   "made its ids, so they cannot be checked against a model; tokenize the "
                                   "video again")
    missing = sorted(_METADATA_KEYS - set(metadata))
    if missing:
        raise TokenFileError(path, f"metadata lacks {', '.join(missing)}")
    if keys != [IDS_KEY]:
        raise TokenFileError(path, f"expected exactly one tensor {IDS_KEY!r}, found {sorted(keys)}")
    try:
        fps = float(metadata["fps"])
    except ValueError:
        raise TokenFileError(path, f"metadata 'fps' must be a number, got {metadata['fps']!r}") from None
    try:
        meta = TokenMetadata(
            model=ModelIdentity(metadata["model_kind"], metadata["model_name"], metadata["model_config_hash"],
                                metadata["model_weights_hash"]),
            codebook_size=_int(path, metadata, "codebook_size"),
            num_registers=_int(path, metadata, "num_registers"),
            num_frames=_int(path, metadata, "num_frames"),
            fps=fps,
            image_size=_size(path, metadata, "image_size"),
            source_size=_size(path, metadata, "source_size"),
            source_path=metadata["source_path"],
        )
    except TokenFileError:
        raise
    except ValueError as err:
        raise TokenFileError(path, f"bad metadata: {err}") from None
    k, t = _int(path, metadata, "tokens_per_step"), _int(path, metadata, "token_steps")
    if shape != [k, t]:
        raise TokenFileError(path, f"ids have shape {shape}; the metadata declares [{k}, {t}] "
                                   "(tokens_per_step, token_steps)")
    if k < 1 or t < 1:
        raise TokenFileError(path, f"ids hold no tokens (shape {shape})")
    if k > meta.num_registers:
        raise TokenFileError(path, f"{k} tokens per step, more than the model's {meta.num_registers}")
    expected = id_dtype(meta.codebook_size)
    stored = _TORCH_DTYPES.get(dtype)
    if stored != expected:
        raise TokenFileError(path, f"ids are stored as {dtype}; a codebook of {meta.codebook_size} codes "
                                   f"is stored as {str(expected).removeprefix('torch.')}")
    return TokenFileHeader(path, int(version), expected, k, t, meta)


def load_tokens(path: str | os.PathLike, keep: int | None = None,
                model: TokenModel | None = None) -> VideoTokens:
    """Read a token file; ``keep`` reads only the first ``keep`` tokens of every step.

    Given ``model``, ids made by another model (a different kind, config hash or weights hash) are refused,
    as is a file whose frame count does not fit its token steps under that model.

    Returns:
        :class:`VideoTokens` with ids int64 ``[t, keep or k]``.

    Raises:
        TokenFileError: see the module docstring (:class:`TokenModelMismatch` for the wrong model).
    """
    header = read_token_header(path)
    path = header.path
    k = header.tokens_per_step
    if keep is None:
        keep = k
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be a positive integer, got {keep!r}")
    if keep > k:
        raise TokenFileError(path, f"holds {k} tokens per step; cannot read {keep}")
    if model is not None:
        check_tokens_model(header.metadata, header.token_steps, model, path)
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = f.get_slice(IDS_KEY)[:keep]  # [keep, t], the leading rows only
    except safetensors.SafetensorError as err:
        raise TokenFileError(path, f"cannot read the ids ({err})") from None
    ids = stored.to(torch.int64).t().contiguous()  # [t, keep]
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= header.metadata.codebook_size:
        bad = lo if lo < 0 else hi
        raise TokenFileError(path, f"id {bad} is outside the codebook of {header.metadata.codebook_size} codes")
    return VideoTokens(ids, header.metadata)


def check_tokens_model(metadata: TokenMetadata, token_steps: int, model: TokenModel,
                       source: str | os.PathLike) -> None:
    """Raise :class:`TokenModelMismatch` (one line naming both identities) unless ``model`` made these tokens
    (same kind, config hash and weights hash), and :class:`TokenFileError` unless the frame count fits
    ``token_steps`` under it."""
    mine = model.identity
    if not metadata.model.same_model(mine):
        raise TokenModelMismatch(source, f"tokens were made by {metadata.model}, not by the model given, {mine}; "
                                         "decode them with the model that made them")
    n = model.layout.tokens_per_step
    if metadata.codebook_size != model.codebook_size or metadata.num_registers != n:
        raise TokenModelMismatch(source, f"codebook {metadata.codebook_size} x {metadata.num_registers} "
                                         f"tokens per step does not match the model's "
                                         f"{model.codebook_size} x {n}")
    steps = model.plan(metadata.num_frames).token_steps
    if steps != token_steps:
        raise TokenFileError(source, f"{metadata.num_frames} frames make {steps} token steps under this "
                                     f"model, but the file holds {token_steps}")
