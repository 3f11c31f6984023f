"""A latent cache: VAE latents of fixed-length clips, computed once, stored in safetensors shards.

The VAE is frozen, so encoding every clip at every training step repeats the same work; a cache
stores the latents (the posterior **mean**) once and training reads them back with
:class:`LatentCacheDataset` (then calls ``model.training_loss(latents)`` directly).

Layout of a cache folder::

    index.json                      written last: its presence marks a complete cache
    latents-000000.safetensors      tensors "latents" [n, C, t, h, w] and "labels" int64 [n] (-1: none);
    latents-000001.safetensors      metadata: format, format_version, vae (its identity as JSON), count,
    ...                             captions and sources (JSON lists, null for none)

``index.json`` holds ``format`` (``"videoflex-latents"``), ``format_version`` (2), ``vae`` (the VAE's
:class:`~videoflex.models.identity.ModelIdentity`, :func:`vae_identity`: kind ``"vae"``, the VAE kind
as its name, the hash of its config and of its weights: the same identity token files use for models),
``vae_config``, ``model_name`` (the model whose VAE made the latents, informational), ``latent_shape``
``[C, t, h, w]``, ``num_frames``, ``fps``, ``image_size`` ``[H, W]``, ``dtype``, ``num_samples`` and
``shards`` (``[{"file", "count"}]``). Latents made by a VAE of another identity are refused when the
dataset is given the training model's VAE. Caches of format version 1 (a fingerprint of another form) are
refused with a request to rebuild them.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import safetensors
import torch
from safetensors import safe_open
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from videoflex.data.sample import VideoSample, iterate_samples
from videoflex.data.sharded import INDEX_NAME, ShardRecord, ShardRecords, read_index_json, read_shard_record
from videoflex.io.errors import FileError
from videoflex.io.safetensors_file import save_safetensors
from videoflex.io.video import atomic_output_path
from videoflex.models.identity import ModelIdentity, weights_hash
from videoflex.utils.dataclass_io import config_hash, to_dict
from videoflex.utils.json_io import to_json_text
from videoflex.vae.base import VideoVAE

LATENT_FORMAT = "videoflex-latents"
LATENT_FORMAT_VERSION = 2
VAE_KIND = "vae"
SHARD_PATTERN = "latents-{:06d}.safetensors"
LATENT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class LatentCacheError(FileError):
    """A latent cache cannot be used; ``str(error)`` is ``"<file>: <problem>"``."""


@dataclass
class LatentSample:
    """One cached clip: ``latents`` float32 ``[C, t, h, w]``, its class id, caption and source."""

    latents: torch.Tensor
    label: int | None
    caption: str | None
    source: str


@dataclass
class LatentBatch:
    """Collated :class:`LatentSample` s: ``latents`` ``[B, C, t, h, w]``, ``labels`` long ``[B]`` or ``None``."""

    latents: torch.Tensor
    labels: torch.Tensor | None
    captions: list[str | None] | None
    sources: list[str]

    def __len__(self) -> int:
        return self.latents.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> LatentBatch:
        labels = None if self.labels is None else self.labels.to(device, non_blocking=non_blocking)
        return replace(self, latents=self.latents.to(device, non_blocking=non_blocking), labels=labels)


def collate_latents(samples: Sequence[LatentSample]) -> LatentBatch:
    """Stack samples (all of one latent shape) into a :class:`LatentBatch` (``DataLoader(collate_fn=...)``)."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    has_label = [s.label is not None for s in samples]
    if any(has_label) and not all(has_label):
        raise ValueError("some samples have a class label and some do not")
    captions = [s.caption for s in samples]
    return LatentBatch(
        latents=torch.stack([s.latents for s in samples]),
        labels=torch.tensor([s.label for s in samples], dtype=torch.long) if all(has_label) else None,
        captions=captions if any(c is not None for c in captions) else None,
        sources=[s.source for s in samples],
    )


@dataclass(frozen=True)
class LatentCacheInfo:
    """The contents of a cache's ``index.json``."""

    root: Path
    vae: ModelIdentity
    model_name: str
    latent_shape: tuple[int, int, int, int]
    num_frames: int
    fps: float
    image_size: tuple[int, int]
    dtype: str
    shards: tuple[tuple[str, int], ...]  # (file name, sample count)

    @property
    def num_samples(self) -> int:
        return sum(count for _, count in self.shards)

    @property
    def vae_fingerprint(self) -> str:
        """The VAE's identity as one line of text (kind, name, config hash, weights hash)."""
        return str(self.vae)


def vae_identity(vae: VideoVAE) -> ModelIdentity:
    """The VAE's identity: kind ``"vae"``, its VAE kind as the name, the hash of its config and of its
    weights (:func:`~videoflex.models.identity.weights_hash`: names, dtypes, shapes, values)."""
    return ModelIdentity(VAE_KIND, vae.config.kind, config_hash(vae.config), weights_hash(vae))


def _identity_json(identity: ModelIdentity) -> dict[str, str]:
    return {"kind": identity.kind, "name": identity.name, "config_hash": identity.config_hash,
            "weights_hash": identity.weights_hash}


# ----------------------------------------------------------------------------- writing


def _batches(samples: Iterable[VideoSample], size: int) -> Iterator[list[VideoSample]]:
    batch: list[VideoSample] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def write_latent_cache(
    samples: Iterable[VideoSample] | Dataset,
    vae: VideoVAE,
    out_dir: str | os.PathLike,
    *,
    model_name: str = "",
    limit: int | None = None,
    batch_size: int = 8,
    samples_per_shard: int = 1024,
    dtype: str = "float32",
    progress: bool = True,
) -> LatentCacheInfo:
    """Encode clips with ``vae`` (posterior mean, on the VAE's device) into a cache folder.

    Args:
        samples: :class:`VideoSample` s of one shape ``[3, T, H, W]``, ``T = 1 + tf*m`` (a dataset or
            any iterable).
        limit: stop after this many clips (default: all).
        dtype: storage type of the latents, ``"float32"``, ``"float16"`` or ``"bfloat16"``.

    Every shard is written under a temporary name and renamed; ``index.json`` is written last.
    """
    if batch_size < 1 or samples_per_shard < 1:
        raise ValueError(f"batch_size and samples_per_shard must be >= 1, got {batch_size}, {samples_per_shard}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if dtype not in LATENT_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(LATENT_DTYPES)}, got {dtype!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples, total = iterate_samples(samples)
    if limit is not None:
        total = limit if total is None else min(total, limit)
        samples = (s for _, s in zip(range(limit), samples))
    identity = vae_identity(vae)
    device = next((t.device for t in (*vae.parameters(), *vae.buffers())), torch.device("cpu"))
    shards: list[tuple[str, int]] = []
    pending: list[tuple[torch.Tensor, VideoSample]] = []
    first: VideoSample | None = None
    latent_shape: tuple[int, ...] | None = None
    bar = tqdm(total=total, desc="encoding latents", unit="clip", disable=not progress)
    for batch in _batches(samples, batch_size):
        first = first or batch[0]
        for sample in batch:
            if sample.video.shape != first.video.shape:
                raise ValueError(f"clips must share one shape: {first.source} is {list(first.video.shape)}, "
                                 f"{sample.source} is {list(sample.video.shape)}")
        vae.check_num_frames(first.video.shape[1])
        video = torch.stack([sample.video for sample in batch]).to(device)
        latents = vae.encode(video, sample=False).to("cpu", LATENT_DTYPES[dtype])
        latent_shape = tuple(latents.shape[1:])
        pending.extend(zip(latents, batch))
        while len(pending) >= samples_per_shard:
            shards.append(_write_shard(out, len(shards), pending[:samples_per_shard], identity))
            pending = pending[samples_per_shard:]
        bar.update(len(batch))
    bar.close()
    if pending:
        shards.append(_write_shard(out, len(shards), pending, identity))
    if first is None:
        raise ValueError("no clips to encode")
    _, t, h, w = first.video.shape
    info = LatentCacheInfo(root=out, vae=identity, model_name=model_name,
                           latent_shape=latent_shape, num_frames=t, fps=float(first.fps), image_size=(h, w),
                           dtype=dtype, shards=tuple(shards))
    index = {
        "format": LATENT_FORMAT,
        "format_version": LATENT_FORMAT_VERSION,
        "vae": _identity_json(identity),
        "vae_config": to_dict(vae.config),
        "model_name": model_name,
        "latent_shape": list(info.latent_shape),
        "num_frames": t,
        "fps": info.fps,
        "image_size": [h, w],
        "dtype": dtype,
        "posterior": "mean",
        "num_samples": info.num_samples,
        "shards": [{"file": name, "count": count} for name, count in shards],
    }
    with atomic_output_path(out / INDEX_NAME) as tmp:
        tmp.write_text(to_json_text(index))
    return info


def _write_shard(out: Path, number: int, items: list[tuple[torch.Tensor, VideoSample]],
                 identity: ModelIdentity) -> tuple[str, int]:
    name = SHARD_PATTERN.format(number)
    latents = torch.stack([latent for latent, _ in items]).contiguous()
    labels = torch.tensor([-1 if s.label is None else int(s.label) for _, s in items], dtype=torch.int64)
    metadata = {
        "format": LATENT_FORMAT,
        "format_version": str(LATENT_FORMAT_VERSION),
        "vae": json.dumps(_identity_json(identity), sort_keys=True),
        "count": str(len(items)),
        "captions": json.dumps([s.caption for _, s in items]),
        "sources": json.dumps([s.source for _, s in items]),
    }
    with atomic_output_path(out / name) as tmp:
        save_safetensors({"latents": latents, "labels": labels}, tmp, metadata)
    return name, len(items)


# ----------------------------------------------------------------------------- reading


def read_latent_index(root: str | os.PathLike) -> LatentCacheInfo:
    """Read and check ``root/index.json`` (raises :class:`LatentCacheError`)."""
    root = Path(root)
    path, index = read_index_json(root, LATENT_FORMAT, LatentCacheError,
                                  f"not a latent cache (no {INDEX_NAME}; an interrupted write leaves none)",
                                  "not a videoflex latent cache index")
    if index.get("format_version") == 1:
        raise LatentCacheError(path, "format version 1 names its VAE by a fingerprint this videoflex no longer "
                                     "computes (it records the VAE's model identity instead); rebuild the cache "
                                     "with 'videoflex prepare-data --latents'")
    if index.get("format_version") != LATENT_FORMAT_VERSION:
        raise LatentCacheError(path, f"format version {index.get('format_version')!r}; this videoflex reads "
                                     f"{LATENT_FORMAT_VERSION}")
    try:
        shards = tuple((str(s["file"]), int(s["count"])) for s in index["shards"])
        info = LatentCacheInfo(
            root=root, vae=ModelIdentity(**{k: str(index["vae"][k]) for k in
                                            ("kind", "name", "config_hash", "weights_hash")}),
            model_name=str(index["model_name"]),
            latent_shape=tuple(int(v) for v in index["latent_shape"]), num_frames=int(index["num_frames"]),
            fps=float(index["fps"]), image_size=tuple(int(v) for v in index["image_size"]),
            dtype=str(index["dtype"]), shards=shards)
    except (KeyError, TypeError, ValueError) as err:
        raise LatentCacheError(path, f"bad or missing field ({type(err).__name__}: {err})") from None
    if len(info.latent_shape) != 4 or info.dtype not in LATENT_DTYPES or not shards:
        raise LatentCacheError(path, "bad latent_shape, dtype or empty shard list")
    if any(count < 1 or Path(name).name != name for name, count in shards):
        raise LatentCacheError(path, "bad shard entry (a file name inside the folder and a count >= 1)")
    if index.get("num_samples") != info.num_samples:
        raise LatentCacheError(path, f"num_samples {index.get('num_samples')} != the shards' {info.num_samples}")
    return info


class LatentCacheDataset(ShardRecords, Dataset[LatentSample]):
    """The clips of a cache folder written by :func:`write_latent_cache`, as :class:`LatentSample` s.

    Args:
        root: the cache folder.
        vae: the VAE of the model to train; latents made by a VAE of another identity
            (:func:`vae_identity`) are refused.

    Shards are opened lazily in each process (safe with DataLoader workers); an item reads only its
    own latents from the shard. Latents are returned as float32.
    """

    def __init__(self, root: str | os.PathLike, vae: VideoVAE | None = None) -> None:
        self.info = read_latent_index(root)
        if vae is not None:
            check_latent_vae(self.info, vae)
        self._ends = []
        total = 0
        for _, count in self.info.shards:
            total += count
            self._ends.append(total)
        self._records: dict[int, ShardRecord] = {}

    def __len__(self) -> int:
        return self._ends[-1]

    def _open_shard(self, shard: int) -> ShardRecord:
        name, count = self.info.shards[shard]
        path = self.info.root / name
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                keys = set(f.keys())
                shapes = {k: list(f.get_slice(k).get_shape()) for k in keys}
                labels = f.get_tensor("labels").tolist() if "labels" in keys else None
        except (safetensors.SafetensorError, FileNotFoundError) as err:
            raise LatentCacheError(path, f"missing, truncated or not safetensors ({err})") from None
        if metadata.get("format") != LATENT_FORMAT or metadata.get("vae") != json.dumps(
                _identity_json(self.info.vae), sort_keys=True):
            raise LatentCacheError(path, "not a shard of this cache (format or VAE identity differs from the index)")
        if keys != {"latents", "labels"} or shapes["latents"] != [count, *self.info.latent_shape] \
                or shapes["labels"] != [count]:
            raise LatentCacheError(path, f"tensors {shapes} do not match the index ({count} x "
                                         f"{list(self.info.latent_shape)})")
        return read_shard_record(path, metadata, labels, count, LatentCacheError)

    def __getitem__(self, index: int) -> LatentSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index %= len(self)
        shard = bisect.bisect_right(self._ends, index)
        offset = index - (self._ends[shard - 1] if shard else 0)
        record = self._record(shard)
        path = self.info.root / self.info.shards[shard][0]
        with safe_open(str(path), framework="pt") as f:
            latents = f.get_slice("latents")[offset : offset + 1][0].float()
        label = record.labels[offset]
        return LatentSample(latents=latents, label=None if label < 0 else label,
                            caption=record.captions[offset], source=record.sources[offset])


def check_latent_vae(info: LatentCacheInfo, vae: VideoVAE) -> None:
    """Raise :class:`LatentCacheError` unless the cache's latents were made by this VAE (same kind, config
    hash and weights hash)."""
    mine = vae_identity(vae)
    if not info.vae.same_model(mine):
        raise LatentCacheError(info.root, f"latents were made by another VAE ({info.vae}, model "
                                          f"{info.model_name or '?'}); this model's VAE is {mine}")
