"""A token dataset on disk: the ids a tokenizer gives every clip of a dataset, with labels and captions.

Written by :func:`write_token_shards` (``videoflex tokenize-dataset``) and read by
:class:`TokenShardDataset` (a generator's training data). Layout of a token dataset folder::

    index.json                  rewritten (atomically) after every shard; "complete": true once all are there
    tokens-000000.safetensors   tensors "ids" [n, t, k] (the smallest integer dtype of the codebook, as in
    tokens-000001.safetensors   token files: io/tokens.py's id_dtype) and "labels" int64 [n] (-1: none);
    ...                         metadata: format, format_version, tokenizer (its identity as JSON), first
                                (the index of its first clip), count, captions and sources (JSON lists)

``index.json`` holds ``format`` (``"videoflex-token-shards"``), ``format_version`` (1), ``tokenizer`` (the
:class:`~videoflex.models.identity.ModelIdentity` of the tokenizer that made the ids: kind, name, config
hash, weights hash), ``codebook_size``, ``tokens_per_step`` (k = the tokenizer's N), ``token_steps`` (t per
clip), ``num_frames``, ``fps``, ``image_size`` ``[H, W]``, ``class_names`` (a list, or null), ``num_clips``,
``clips_per_shard``, ``source`` (a description of where the clips came from, compared on resume),
``complete`` and ``shards`` (``[{"file", "count", "bytes"}]``, the shards finished so far, in order).

Everything is byte-reproducible: the same clips, tokenizer and options give the same bytes, and a write
resumed after an interruption gives the same bytes as one that ran through (batches never cross a shard,
and the noise of a batch, if the tokenizer draws any, is seeded by its first clip's index).

Reading raises :class:`TokenShardError` (a ``ValueError``, ``"<file>: <problem>"``): no index, an
incomplete dataset (an interrupted write), a newer format, bad fields, a missing, truncated or foreign shard,
and, given the identity of the tokenizer to use, ids made by another tokenizer (:class:`TokenShardMismatch`).
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import safetensors
import torch
from safetensors import safe_open
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from videoflex.data.sample import VideoSample
from videoflex.data.sharded import INDEX_NAME, ShardRecord, ShardRecords, read_index_json, read_shard_record
from videoflex.io.errors import FileError
from videoflex.io.safetensors_file import save_safetensors
from videoflex.io.tokens import TokenModel, id_dtype
from videoflex.io.video import atomic_output_path
from videoflex.models.identity import ModelIdentity
from videoflex.utils.json_io import to_json_text

TOKEN_SHARDS_FORMAT = "videoflex-token-shards"
TOKEN_SHARDS_VERSION = 1
SHARD_PATTERN = "tokens-{:06d}.safetensors"
_SAFETENSORS_DTYPES = {"U8": torch.uint8, "U16": torch.uint16, "I32": torch.int32, "I64": torch.int64}


class TokenShardError(FileError):
    """A token dataset cannot be used or written; ``str(error)`` is ``"<file or folder>: <problem>"``."""


class TokenShardMismatch(TokenShardError):
    """The ids of a token dataset were made by another tokenizer than the one given."""


class ShardTokenizer(TokenModel, Protocol):
    """What :func:`write_token_shards` uses of a tokenizer: the members of
    :class:`videoflex.tokenizers.base.Tokenizer` below (``data`` does not import the tokenizers)."""

    @property
    def device(self) -> torch.device: ...

    def tokenize(self, video: torch.Tensor, generator: torch.Generator | None = None,
                 chunk_batch: int | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class ShardEntry:
    """One finished shard: its file name in the folder, its clip count and its size in bytes."""

    file: str
    count: int
    bytes: int


@dataclass(frozen=True)
class TokenShardInfo:
    """The contents of a token dataset's ``index.json`` (see the module docstring)."""

    root: Path
    tokenizer: ModelIdentity
    codebook_size: int
    tokens_per_step: int
    token_steps: int
    num_frames: int
    fps: float
    image_size: tuple[int, int]
    class_names: tuple[str, ...] | None
    num_clips: int
    clips_per_shard: int
    source: str
    complete: bool
    shards: tuple[ShardEntry, ...]

    @property
    def num_shards(self) -> int:
        """Shards of the whole dataset (finished or not)."""
        return -(-self.num_clips // self.clips_per_shard)

    @property
    def clips_done(self) -> int:
        return sum(entry.count for entry in self.shards)

    def settings(self) -> dict[str, object]:
        """What two writes of one dataset must agree on (compared when a write resumes)."""
        return {"tokenizer": str(self.tokenizer), "codebook_size": self.codebook_size,
                "tokens_per_step": self.tokens_per_step, "token_steps": self.token_steps,
                "num_frames": self.num_frames, "fps": self.fps, "image_size": list(self.image_size),
                "class_names": None if self.class_names is None else list(self.class_names),
                "num_clips": self.num_clips, "clips_per_shard": self.clips_per_shard, "source": self.source}


@dataclass(frozen=True)
class TokenSample:
    """One clip of a token dataset.

    ids: int64 ``[t, k]`` in ``[0, codebook_size)``. label: class id, ``-1`` for none. caption: text or ``None``.
    source: where the clip came from (the dataset's source id).
    """

    ids: torch.Tensor
    label: int
    caption: str | None
    source: str


def _identity_json(identity: ModelIdentity) -> dict[str, str]:
    return {"kind": identity.kind, "name": identity.name, "config_hash": identity.config_hash,
            "weights_hash": identity.weights_hash}


def class_names_of(dataset: object) -> tuple[str, ...] | None:
    """The class names of a dataset, by class id: its ``classes`` list (folders, Atari), or for synthetic
    shapes the factors its labels encode (``"red circle left"``, ``"circle"``, ...); ``None`` when unknown."""
    from videoflex.data.shapes import ShapeFactors, ShapesDataset

    if isinstance(dataset, ShapesDataset):
        c = dataset.config
        names: dict[int, str] = {}
        for shape in c.shapes:
            for colour in c.colours:
                for motion in c.motions:
                    parts = {"all": (colour, shape, motion), "shape": (shape,), "colour": (colour,),
                             "motion": (motion,)}[c.label_by]
                    names[dataset.label(ShapeFactors(shape, colour, motion))] = " ".join(parts)
        return tuple(names[i] for i in range(len(names)))
    classes = getattr(dataset, "classes", None)
    return tuple(str(name) for name in classes) if classes else None


# ----------------------------------------------------------------------------- the index


def _index_dict(info: TokenShardInfo) -> dict[str, object]:
    return {
        "format": TOKEN_SHARDS_FORMAT,
        "format_version": TOKEN_SHARDS_VERSION,
        "tokenizer": _identity_json(info.tokenizer),
        "codebook_size": info.codebook_size,
        "tokens_per_step": info.tokens_per_step,
        "token_steps": info.token_steps,
        "num_frames": info.num_frames,
        "fps": info.fps,
        "image_size": list(info.image_size),
        "class_names": None if info.class_names is None else list(info.class_names),
        "num_clips": info.num_clips,
        "clips_per_shard": info.clips_per_shard,
        "source": info.source,
        "complete": info.complete,
        "shards": [{"file": e.file, "count": e.count, "bytes": e.bytes} for e in info.shards],
    }


def _write_index(info: TokenShardInfo) -> None:
    with atomic_output_path(info.root / INDEX_NAME) as tmp:
        tmp.write_text(to_json_text(_index_dict(info)), encoding="utf-8")


def _positive(index: dict, key: str) -> int:
    value = index[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value


def read_token_index(root: str | os.PathLike, *, allow_incomplete: bool = False) -> TokenShardInfo:
    """Read and check ``root/index.json``.

    allow_incomplete: accept the index of an interrupted write (what resuming reads); otherwise such a
        dataset is refused with a request to finish it.

    Raises:
        TokenShardError: no such folder, no index, not JSON, not a token dataset, a newer format version,
            a bad or missing field, or (unless ``allow_incomplete``) an incomplete dataset.
    """
    root = Path(root)
    path, index = read_index_json(root, TOKEN_SHARDS_FORMAT, TokenShardError, f"not a token dataset (no {INDEX_NAME})",
                                  f"not a videoflex token dataset index (format {TOKEN_SHARDS_FORMAT!r})")
    version = index.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TokenShardError(path, f"bad format_version {version!r}")
    if version > TOKEN_SHARDS_VERSION:
        raise TokenShardError(path, f"token dataset format version {version} is newer than this videoflex reads "
                                    f"({TOKEN_SHARDS_VERSION}); upgrade videoflex")
    try:
        names = index["class_names"]
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise ValueError(f"class_names must be a list of strings or null, got {names!r}")
        shards = tuple(ShardEntry(str(s["file"]), int(s["count"]), int(s["bytes"])) for s in index["shards"])
        fps = float(index["fps"])
        if not 0 < fps < math.inf:
            raise ValueError(f"fps must be positive and finite, got {fps}")
        size = tuple(int(v) for v in index["image_size"])
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"image_size must be [H, W], got {index['image_size']!r}")
        if not isinstance(index["complete"], bool) or not isinstance(index["source"], str):
            raise ValueError("complete must be true or false and source a string")
        info = TokenShardInfo(
            root=root,
            tokenizer=ModelIdentity(**{k: str(index["tokenizer"][k])
                                       for k in ("kind", "name", "config_hash", "weights_hash")}),
            codebook_size=_positive(index, "codebook_size"), tokens_per_step=_positive(index, "tokens_per_step"),
            token_steps=_positive(index, "token_steps"), num_frames=_positive(index, "num_frames"), fps=fps,
            image_size=size, class_names=None if names is None else tuple(names),
            num_clips=_positive(index, "num_clips"), clips_per_shard=_positive(index, "clips_per_shard"),
            source=index["source"], complete=index["complete"], shards=shards)
    except (KeyError, TypeError, ValueError) as err:
        raise TokenShardError(path, f"bad or missing field ({type(err).__name__}: {err})") from None
    for number, entry in enumerate(shards):
        expected = min(info.clips_per_shard, info.num_clips - number * info.clips_per_shard)
        if entry.file != SHARD_PATTERN.format(number) or entry.count != expected or entry.bytes < 1:
            raise TokenShardError(path, f"bad shard entry {number} ({entry}); expected {SHARD_PATTERN.format(number)} "
                                        f"with {expected} clips")
    if info.complete != (len(shards) == info.num_shards):
        raise TokenShardError(path, f"lists {len(shards)} of {info.num_shards} shards but says complete="
                                    f"{str(info.complete).lower()}")
    if not info.complete and not allow_incomplete:
        raise TokenShardError(root, f"incomplete token dataset ({len(shards)} of {info.num_shards} shards: an "
                                    "interrupted write); finish it with 'videoflex tokenize-dataset --resume'")
    return info


def check_token_shards_tokenizer(info: TokenShardInfo, identity: ModelIdentity) -> None:
    """Raise :class:`TokenShardMismatch` (one line naming both identities) unless the dataset's ids were made
    by the tokenizer of ``identity`` (same kind, config hash and weights hash)."""
    if not info.tokenizer.same_model(identity):
        raise TokenShardMismatch(info.root, f"token shards were made by {info.tokenizer}, not by the tokenizer "
                                            f"given, {identity}; tokenize the dataset again with it")


# ----------------------------------------------------------------------------- writing


def _keep(sample: VideoSample) -> VideoSample:  # DataLoader collate_fn: samples as they are (picklable)
    return sample


def _check_folder(out: Path, info: TokenShardInfo, resume: bool) -> TokenShardInfo:
    """The finished part of the dataset already in ``out`` (``info`` with its shards) to continue from."""
    existing = sorted(p.name for p in out.glob("tokens-*.safetensors"))
    if not (out / INDEX_NAME).exists():
        if existing and not resume:
            raise TokenShardError(out, f"holds token shards ({existing[0]}, ...) but no {INDEX_NAME}; pass "
                                       "resume (--resume) to write over them, or choose another folder")
        return info
    old = read_token_index(out, allow_incomplete=True)
    if not old.tokenizer.same_model(info.tokenizer):
        raise TokenShardMismatch(out, f"holds token shards made by another tokenizer, {old.tokenizer}; this one "
                                      f"is {info.tokenizer}; choose another folder")
    if not resume:
        state = "a complete" if old.complete else f"an incomplete ({len(old.shards)} of {old.num_shards} shards)"
        raise TokenShardError(out, f"holds {state} token dataset; pass resume (--resume) to continue it, or "
                                   "choose another folder")
    mine, theirs = info.settings(), old.settings()
    changed = [key for key in mine if mine[key] != theirs[key]]
    if changed:
        key = changed[0]
        raise TokenShardError(out, f"cannot resume: {key} was {theirs[key]!r}, now {mine[key]!r} "
                                   f"({', '.join(changed)} differ); use the same options or another folder")
    for entry in old.shards:
        path = out / entry.file
        size = path.stat().st_size if path.is_file() else -1
        if size != entry.bytes:
            what = "is missing" if size < 0 else f"holds {size} bytes, the index records {entry.bytes}"
            raise TokenShardError(path, f"a finished shard {what}; write the dataset again in a new folder")
    for stale in out.glob(".tokens-*.tmp.safetensors"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    return replace(info, shards=old.shards, complete=old.complete)


def _write_shard(out: Path, number: int, first: int, ids: torch.Tensor, samples: list[VideoSample],
                 info: TokenShardInfo) -> ShardEntry:
    name = SHARD_PATTERN.format(number)
    labels = torch.tensor([-1 if s.label is None else int(s.label) for s in samples], dtype=torch.int64)
    metadata = {
        "format": TOKEN_SHARDS_FORMAT,
        "format_version": str(TOKEN_SHARDS_VERSION),
        "tokenizer": to_json_text(_identity_json(info.tokenizer), canonical=True),
        "first": str(first),
        "count": str(len(samples)),
        "captions": to_json_text([s.caption for s in samples], canonical=True),
        "sources": to_json_text([s.source for s in samples], canonical=True),
    }
    path = out / name
    with atomic_output_path(path) as tmp:
        save_safetensors({"ids": ids.to(id_dtype(info.codebook_size)).contiguous(), "labels": labels}, tmp,
                         metadata)
    return ShardEntry(name, len(samples), path.stat().st_size)


@torch.no_grad()
def write_token_shards(
    samples: Dataset[VideoSample],
    tokenizer: ShardTokenizer,
    out: str | os.PathLike,
    *,
    clips_per_shard: int = 1024,
    batch_size: int = 8,
    chunk_batch: int | None = None,
    num_workers: int = 0,
    class_names: Sequence[str] | None = None,
    source: str = "",
    seed: int = 0,
    progress: bool = True,
    resume: bool = False,
) -> TokenShardInfo:
    """Tokenize every clip of ``samples`` into a token dataset folder ``out`` (see the module docstring).

    Args:
        samples: a map-style dataset of :class:`VideoSample` s of one shape ``[3, T, H, W]`` at the
            tokenizer's ``image_size`` (its length is the number of clips).
        tokenizer: runs in this process, on its device; ``tokenize(video [B,3,T,H,W]) -> ids [B, t, N]``.
        clips_per_shard: clips per shard file. batch_size: clips tokenized at once (a batch never crosses a
            shard). chunk_batch: passed to ``tokenizer.tokenize`` (chunks of one clip encoded at once).
        num_workers: ``DataLoader`` worker processes that decode the clips (0: this process).
        class_names: the names of the class ids (recorded in the index; every label must be below their count).
        source: a description of where the clips come from; a resumed write must give the same.
        seed: seeds the tokenizer's noise, if it draws any (batch ``b`` starting at clip ``i``: ``seed + i``).
        resume: continue an interrupted write in ``out``: its finished shards are kept and skipped.

    Returns:
        the :class:`TokenShardInfo` of the complete dataset.

    Raises:
        TokenShardError: ``out`` holds a token dataset and ``resume`` is false; it holds shards of another
            tokenizer (:class:`TokenShardMismatch`); a resumed write's settings differ from the first; a
            finished shard is missing or truncated.
        ValueError: bad arguments, no clips, clips of different shapes or of the wrong size, a label outside
            ``class_names``.
    """
    for name, value in (("clips_per_shard", clips_per_shard), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    total = len(samples)
    if total < 1:
        raise ValueError("no clips to tokenize")
    out = Path(out)
    first = samples[0]
    _, frames, h, w = first.video.shape
    if (h, w) != tuple(tokenizer.image_size):
        raise ValueError(f"{first.source}: clips are {h}x{w} pixels; the tokenizer takes "
                         f"{tokenizer.image_size[0]}x{tokenizer.image_size[1]}")
    info = TokenShardInfo(
        root=out, tokenizer=tokenizer.identity, codebook_size=tokenizer.codebook_size,
        tokens_per_step=tokenizer.layout.tokens_per_step, token_steps=tokenizer.plan(frames).token_steps,
        num_frames=frames, fps=float(first.fps), image_size=(h, w),
        class_names=None if class_names is None else tuple(str(n) for n in class_names), num_clips=total,
        clips_per_shard=clips_per_shard, source=source, complete=False, shards=())
    out.mkdir(parents=True, exist_ok=True)
    info = _check_folder(out, info, resume)
    if info.complete:
        return info
    start = info.clips_done
    device = tokenizer.device
    loader = DataLoader(Subset(samples, range(start, total)), batch_size=None, num_workers=num_workers,
                        collate_fn=_keep)
    bar = tqdm(total=total, initial=start, desc="tokenizing clips", unit="clip", disable=not progress)
    shard_ids: list[torch.Tensor] = []
    shard_samples: list[VideoSample] = []
    batch: list[VideoSample] = []
    shards = list(info.shards)
    position = start  # index of the next clip to come out of the loader
    for sample in loader:
        if sample.video.shape != first.video.shape:
            raise ValueError(f"clips must share one shape: {first.source} is {list(first.video.shape)}, "
                             f"{sample.source} is {list(sample.video.shape)}")
        if info.class_names is not None and sample.label is not None \
                and not 0 <= sample.label < len(info.class_names):
            raise ValueError(f"{sample.source}: label {sample.label} is not one of the "
                             f"{len(info.class_names)} class names")
        batch.append(sample)
        position += 1
        shard_end = min(total, (len(shards) + 1) * clips_per_shard)
        if len(batch) == batch_size or position == shard_end:
            batch_first = position - len(batch)
            generator = torch.Generator(device=device).manual_seed(seed + batch_first)
            video = torch.stack([s.video for s in batch]).to(device)
            ids = tokenizer.tokenize(video, generator=generator, chunk_batch=chunk_batch).cpu()
            shard_ids.append(ids)
            shard_samples.extend(batch)
            bar.update(len(batch))
            batch = []
        if position == shard_end:
            number = len(shards)
            shards.append(_write_shard(out, number, number * clips_per_shard, torch.cat(shard_ids),
                                       shard_samples, info))
            shard_ids, shard_samples = [], []
            info = replace(info, shards=tuple(shards), complete=len(shards) == info.num_shards)
            _write_index(info)
    bar.close()
    if not info.complete:  # the dataset gave fewer clips than its length
        raise ValueError(f"the dataset gave {position} clips; its length is {total}")
    return info


# ----------------------------------------------------------------------------- reading


class TokenShardDataset(ShardRecords, Dataset[TokenSample]):
    """The clips of a token dataset written by :func:`write_token_shards`, as :class:`TokenSample` s.

    Args:
        root: the dataset folder.
        tokenizer_identity: the identity of the tokenizer the ids are meant for (e.g. the one a generator
            records); a dataset made by another tokenizer is refused (:class:`TokenShardMismatch`).

    Only the index is read here; a shard is opened (and checked: size, format, tokenizer, tensor shapes and
    dtypes, metadata) the first time one of its clips is read, in each process (safe with ``DataLoader``
    workers), and an item reads only its own ids, so memory does not grow with the dataset.

    Raises:
        TokenShardError: see :func:`read_token_index`, and on reading a clip, a missing, truncated or foreign
            shard or ids outside the codebook.
    """

    def __init__(self, root: str | os.PathLike, tokenizer_identity: ModelIdentity | None = None) -> None:
        self.info = read_token_index(root)
        if tokenizer_identity is not None:
            check_token_shards_tokenizer(self.info, tokenizer_identity)
        self._ends = [min(self.info.num_clips, (i + 1) * self.info.clips_per_shard)
                      for i in range(len(self.info.shards))]
        self._records: dict[int, ShardRecord] = {}

    def __len__(self) -> int:
        return self.info.num_clips

    def _open_shard(self, shard: int) -> ShardRecord:
        info, entry = self.info, self.info.shards[shard]
        path = info.root / entry.file
        if not path.is_file():
            raise TokenShardError(path, "missing shard (listed in the index)")
        size = path.stat().st_size
        if size != entry.bytes:
            raise TokenShardError(path, f"truncated or damaged shard: {size} bytes, the index records {entry.bytes}")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                keys = set(f.keys())
                shapes = {k: (list(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in keys}
                labels = f.get_tensor("labels").tolist() if "labels" in keys else []
        except safetensors.SafetensorError as err:
            raise TokenShardError(path, f"not a complete safetensors file, truncated or corrupt ({err})") from None
        if metadata.get("format") != TOKEN_SHARDS_FORMAT or metadata.get("format_version") != str(TOKEN_SHARDS_VERSION):
            raise TokenShardError(path, "not a shard of this token dataset (format or version differs from the index)")
        if metadata.get("tokenizer") != to_json_text(_identity_json(info.tokenizer), canonical=True):
            raise TokenShardMismatch(path, f"shard made by another tokenizer than the index's, {info.tokenizer}")
        first = shard * info.clips_per_shard
        if metadata.get("first") != str(first) or metadata.get("count") != str(entry.count):
            raise TokenShardError(path, f"holds clips from {metadata.get('first')!r} ({metadata.get('count')!r} of "
                                        f"them); the index places {entry.count} from {first} here")
        dtype = str(id_dtype(info.codebook_size)).removeprefix("torch.")
        want = {"ids": ([entry.count, info.token_steps, info.tokens_per_step], dtype), "labels": ([entry.count], "int64")}
        got = {k: (shape, str(_SAFETENSORS_DTYPES.get(code, code)).removeprefix("torch."))
               for k, (shape, code) in shapes.items()}
        if got != want:
            raise TokenShardError(path, f"tensors {got} do not match the index ({want})")
        if any(label < -1 or (info.class_names is not None and label >= len(info.class_names)) for label in labels):
            raise TokenShardError(path, "a label is outside -1 .. the number of class names")
        return read_shard_record(path, metadata, labels, entry.count, TokenShardError)

    def __getitem__(self, index: int) -> TokenSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index %= len(self)
        shard = bisect.bisect_right(self._ends, index)
        offset = index - shard * self.info.clips_per_shard
        record = self._record(shard)
        path = self.info.root / self.info.shards[shard].file
        try:
            with safe_open(str(path), framework="pt") as f:
                ids = f.get_slice("ids")[offset : offset + 1][0].to(torch.int64)  # [t, k]
        except (safetensors.SafetensorError, FileNotFoundError) as err:
            raise TokenShardError(path, f"cannot read the ids ({err})") from None
        if int(ids.max()) >= self.info.codebook_size:
            raise TokenShardError(path, f"clip {index}: id {int(ids.max())} is outside the codebook of "
                                        f"{self.info.codebook_size} codes")
        return TokenSample(ids=ids, label=record.labels[offset], caption=record.captions[offset],
                           source=record.sources[offset])
