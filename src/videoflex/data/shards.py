"""WebDataset tar shards of clips: a writer and a streaming reader split across ranks and workers.

Shard format: plain tar files ``<prefix>-000000.tar``, ... Each sample is two members with one key:
``<key>.mp4`` (the clip, H.264) and ``<key>.json`` (``{"label", "caption", "source", "fps",
"num_frames", "height", "width"}``; ``label``/``caption`` may be null). Any tool that writes this
layout (e.g. ``webdataset.ShardWriter``) makes shards the reader accepts.

Two readers: :class:`VideoShardDataset` streams (iterable; split as below), and
:class:`IndexedShardDataset` is a map-style view for random access (the trainer's sampler picks clip
indices): it indexes the tar members once (byte offsets of each clip's ``.mp4`` and ``.json``) and
reads an item by seeking, so its memory is a few integers per clip.

Splitting: the shard list (shuffled per epoch when ``shuffle`` is on, identically on every rank) is
dealt round-robin to ranks, then each rank's shards to its DataLoader workers, so every sample is
read exactly once per epoch across all ranks and workers. Ranks may therefore see different sample
counts; give every rank the same number of equally sized shards when that matters (DDP).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch.distributed as dist
from torch.utils.data import Dataset, IterableDataset, get_worker_info
from tqdm import tqdm

from videoflex.data.sample import VideoSample, iterate_samples
from videoflex.data.transforms import ClipSpec, clip_start, cut_clip
from videoflex.io.errors import VideoReadError
from videoflex.io.video import atomic_output_path, encode_mp4, probe_video
from videoflex.utils.json_io import to_json_text


def write_shards(
    samples: Iterable[VideoSample] | Dataset,
    out_dir: str | os.PathLike,
    *,
    samples_per_shard: int = 256,
    prefix: str = "shard",
    crf: int = 12,
    progress: bool = True,
) -> list[Path]:
    """Encode ``samples`` (any iterable of :class:`VideoSample`, or a map-style dataset) into shards.

    Each shard is written under a temporary name and renamed when complete. Keys are the running
    sample number (``%09d``). Returns the shard paths in order.
    """
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples, total = iterate_samples(samples)
    paths: list[Path] = []
    batch: list[tuple[str, VideoSample]] = []
    for n, sample in enumerate(tqdm(samples, total=total, desc="writing shards", disable=not progress)):
        batch.append((f"{n:09d}", sample))
        if len(batch) == samples_per_shard:
            paths.append(_write_shard(out / f"{prefix}-{len(paths):06d}.tar", batch, crf))
            batch = []
    if batch:
        paths.append(_write_shard(out / f"{prefix}-{len(paths):06d}.tar", batch, crf))
    if not paths:
        raise ValueError("no samples to write")
    return paths


def _write_shard(path: Path, batch: list[tuple[str, VideoSample]], crf: int) -> Path:
    with atomic_output_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, sample in batch:
            _, t, h, w = sample.video.shape
            meta = {
                "label": sample.label,
                "caption": sample.caption,
                "source": sample.source,
                "fps": float(sample.fps),
                "num_frames": t,
                "height": h,
                "width": w,
            }
            _add_member(tar, f"{key}.mp4", encode_mp4(sample.video, sample.fps, crf=crf))
            _add_member(tar, f"{key}.json", to_json_text(meta, indent=None).encode())
    return path


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


def expand_shards(shards: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """A folder (its ``*.tar``, sorted), a brace pattern (``"d/shard-{000000..000009}.tar"``) or a list."""
    if isinstance(shards, (str, os.PathLike)):
        text = os.fspath(shards)
        if Path(text).is_dir():
            found = sorted(str(p) for p in Path(text).glob("*.tar"))
            if not found:
                raise ValueError(f"{text}: no .tar shards in this folder")
            return found
        import braceexpand

        return list(braceexpand.braceexpand(text))
    found = [os.fspath(s) for s in shards]
    if not found:
        raise ValueError("empty shard list")
    return found


class VideoShardDataset(IterableDataset[VideoSample]):
    """Stream clips from webdataset shards (see the module docstring for the format and splitting).

    Args:
        shards: a folder of ``.tar`` files, a brace pattern, or a list of paths/URLs (anything
            ``webdataset`` opens, e.g. ``pipe:`` commands).
        clip: frames to cut from each stored clip (default: 17 frames at 8 fps, 64x64, from the start;
            window ``"random"`` uses the stored length).
        shuffle: sample shuffle buffer size; 0 keeps shard order and sample order.
        seed: seeds shard order, the buffer and random windows, together with the epoch.
        rank, world_size: this process's share; default: from ``torch.distributed`` if
            initialised, else ``0`` and ``1``.
    """

    def __init__(
        self,
        shards: str | os.PathLike | Sequence[str | os.PathLike],
        clip: ClipSpec | None = None,
        *,
        shuffle: int = 0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.shards = expand_shards(shards)
        if shuffle < 0:
            raise ValueError(f"shuffle must be >= 0, got {shuffle}")
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if world_size is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.clip = clip if clip is not None else ClipSpec(window="start")
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently from now on (call once per epoch, before iterating).

        DataLoader workers copy the dataset when they start, so with ``persistent_workers=True`` they
        keep the epoch they started with.
        """
        self.epoch = epoch

    def _rank(self) -> tuple[int, int]:
        if self.world_size is not None:
            return self.rank, self.world_size
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def shards_for(self, rank: int, world_size: int, worker: int = 0, num_workers: int = 1) -> list[str]:
        """The shards read by one worker of one rank this epoch."""
        if len(self.shards) < world_size:
            raise ValueError(f"{len(self.shards)} shards cannot be split over {world_size} ranks")
        order = list(self.shards)
        if self.shuffle:
            np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        return order[rank::world_size][worker::num_workers]

    def __iter__(self) -> Iterator[VideoSample]:
        rank, world_size = self._rank()
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker])
        samples = self._decode_all(self.shards_for(rank, world_size, worker, num_workers), rng)
        if self.shuffle:
            samples = _shuffle(samples, self.shuffle, rng)
        yield from samples

    def _decode_all(self, shards: list[str], rng: np.random.Generator) -> Iterator[VideoSample]:
        from webdataset.tariterators import tarfile_samples

        for raw in tarfile_samples({"url": url} for url in shards):
            yield self._decode(raw, rng)

    def _decode(self, raw: dict, rng: np.random.Generator) -> VideoSample:
        name = f"{raw.get('__url__', '?')}:{raw['__key__']}"
        if "mp4" not in raw or "json" not in raw:
            raise VideoReadError(
                name, f"sample needs .mp4 and .json members, has {sorted(k for k in raw if k[0] != '_')}"
            )
        return decode_sample(raw["mp4"], raw["json"], self.clip, rng, name)


def decode_sample(data: bytes, meta_bytes: bytes, clip: ClipSpec, rng: np.random.Generator,
                  name: str) -> VideoSample:
    """One stored sample (its ``.mp4`` and ``.json`` members) -> the clip ``clip`` names (float
    ``[3, T, H, W]`` in [-1, 1]). Raises :class:`VideoReadError` naming ``name`` on bad members."""
    try:
        meta = json.loads(meta_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise VideoReadError(name + ".json", f"not valid JSON ({err})") from None
    start = 0.0
    if clip.num_frames is not None and clip.window != "start":
        if meta.get("num_frames") and meta.get("fps"):
            duration, source_fps = meta["num_frames"] / meta["fps"], meta["fps"]
        else:
            probed = probe_video(data, name=name + ".mp4")
            duration, source_fps = probed.duration, probed.fps
        rate = clip.fps if clip.fps is not None else source_fps
        start = clip_start(duration, clip.num_frames / rate, clip.window, rng)
    decoded = cut_clip(data, clip, start, rng, name=name + ".mp4")
    label = meta.get("label")
    return VideoSample(
        video=decoded.video,
        label=None if label is None else int(label),
        caption=meta.get("caption"),
        source=meta.get("source") or name,
        fps=decoded.fps,
    )


def _shuffle(
    items: Iterator[VideoSample], buffer_size: int, rng: np.random.Generator
) -> Iterator[VideoSample]:
    """Buffered shuffle: fill a buffer, then yield a random element for each new one."""
    buffer: list[VideoSample] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        i = int(rng.integers(len(buffer)))
        buffer[i], item = item, buffer[i]
        yield item
    rng.shuffle(buffer)
    yield from buffer


class IndexedShardDataset(Dataset[VideoSample]):
    """Map-style random access to the clips of webdataset shards (format: the module docstring).

    The shards are indexed once at construction (tar headers only: each clip's ``.mp4`` and ``.json``
    byte ranges, five integers a clip); ``dataset[i]`` seeks and reads those two members. Item ``i``'s
    random window, crop and flip come from a generator seeded by ``(seed, epoch, i)``, so an item is the
    same in every worker, process and run. Memory: O(number of clips) integers, never clip data.

    Args:
        shards: a folder of ``.tar`` files, a brace pattern or a list of local paths (no URLs: random
            access needs seekable files).
        clip: frames to cut from each stored clip (default: 17 frames at 8 fps, 64x64, from the start).
        seed: seeds the random windows and crops.

    Raises ValueError naming the shard when a file is missing or not a tar, or a clip lacks a member.
    """

    def __init__(self, shards: str | os.PathLike | Sequence[str | os.PathLike], clip: ClipSpec | None = None,
                 *, seed: int = 0) -> None:
        self.shards = expand_shards(shards)
        self.clip = clip if clip is not None else ClipSpec(window="start")
        self.seed = seed
        self.epoch = 0
        rows: list[tuple[int, int, int, int, int]] = []
        for number, shard in enumerate(self.shards):
            rows.extend((number, *ranges) for ranges in _index_shard(shard))
        if not rows:
            raise ValueError(f"{self.shards[0]}: the shards hold no clips")
        self.index = np.asarray(rows, dtype=np.int64)  # [N, 5]: shard, mp4 offset, size, json offset, size

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """Draw different random windows from now on."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> VideoSample:
        shard, mp4_at, mp4_size, json_at, json_size = (int(v) for v in self.index[index])
        path = self.shards[shard]
        with open(path, "rb") as f:
            f.seek(mp4_at)
            data = f.read(mp4_size)
            f.seek(json_at)
            meta = f.read(json_size)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return decode_sample(data, meta, self.clip, rng, f"{path}:#{index}")


def _index_shard(path: str) -> list[tuple[int, int, int, int]]:
    """``(mp4 offset, mp4 size, json offset, json size)`` of each clip of one tar, in member order."""
    members: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile() or "." not in info.name:
                    continue
                key, ext = info.name.split(".", 1)
                members.setdefault(key, {})[ext] = (info.offset_data, info.size)
    except (OSError, tarfile.TarError) as err:
        raise ValueError(f"{path}: not a readable tar shard ({err})") from None
    rows = []
    for key, found in members.items():
        if "mp4" not in found or "json" not in found:
            raise ValueError(f"{path}: clip {key} needs .mp4 and .json members, has {sorted(found)}")
        rows.append((*found["mp4"], *found["json"]))
    return rows
