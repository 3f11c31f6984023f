"""Datasets from a recipe's sources: :func:`build_source` for one source, :class:`SourceClips` for a split.

The trainer streams :class:`SourceClips` through ``DataLoader`` workers (random access: the sampler picks
clip indices); :mod:`videoflex.data.clip_cache` holds the same clips in memory for small CPU runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from videoflex.data.config import DataConfig, SourceConfig
from videoflex.data.sample import VideoSample


class DataSourceError(ValueError):
    """A recipe's data source cannot be read: a missing folder, file or package, an unknown name."""


def build_source(source: SourceConfig, data: DataConfig, labels: bool = False) -> Dataset[VideoSample]:
    """The dataset a source names, yielding clips of ``data.frames`` frames at ``data.size`` pixels.

    labels: give ``folder`` clips the class of their first sub-folder (training does not need them).

    Every source is map-style (``shards`` through :class:`~videoflex.data.shards.IndexedShardDataset`), and
    item ``i`` is a pure function of the source and ``i``. Raises ValueError (naming the path) when a source
    cannot be read.
    """
    from videoflex.data.transforms import ClipSpec

    if source.kind == "shapes":
        from videoflex.data.shapes import ShapesConfig, ShapesDataset

        return ShapesDataset(ShapesConfig(num_samples=source.count, num_frames=data.frames, size=data.size,
                                          fps=data.fps, seed=source.seed, label_by=source.label_by,
                                          combinations=source.combinations))
    if source.kind == "atari":
        from videoflex.data.atari import ATARI_GAMES, AtariConfig, AtariDataset

        games = source.names or ATARI_GAMES
        per_game = -(-source.count // len(games))
        return AtariDataset(AtariConfig(games=tuple(games), num_frames=data.frames, size=data.size,
                                        clips_per_game=per_game, seed=source.seed))
    if source.kind == "stills":
        from videoflex.data.stills import StillPansConfig, StillPansDataset

        return StillPansDataset(StillPansConfig(
            num_samples=source.count, num_frames=data.frames, size=data.size, fps=data.fps,
            names=source.names, folder=source.path, crop_scale=source.crop_scale or StillPansConfig.crop_scale,
            flip=source.flip, seed=source.seed))
    clip = ClipSpec(num_frames=data.frames, size=data.size, fps=data.fps, window="random",
                    crop_scale=source.crop_scale, flip=source.flip)
    if source.kind == "sample_clips":
        from videoflex.data.sample_clips import SAMPLE_CLIPS, SampleClipsDataset

        names = source.names or tuple(SAMPLE_CLIPS)
        return SampleClipsDataset(clip, names=names, clips_per_video=-(-source.count // len(names)), seed=source.seed)
    if source.kind == "folder":
        from videoflex.data.folder import VideoFileDataset, VideoFolderDataset

        root = Path(source.path).expanduser()
        folder = VideoFolderDataset(root, labels=labels)
        entries = folder.entries
        if source.names:  # these files only (names relative to the folder), in this order
            by_name = {entry.path.relative_to(root).as_posix(): entry for entry in entries}
            unknown = [name for name in source.names if name not in by_name]
            if unknown:
                raise ValueError(f"{source.path}: no video(s) {unknown}; it has {', '.join(by_name)}")
            entries = [by_name[name] for name in source.names]
        # `count` clips spread evenly over the files (random windows and crops of each)
        return VideoFileDataset(entries, clip, clips_per_video=-(-source.count // len(entries)), seed=source.seed,
                                classes=folder.classes)
    from videoflex.data.shards import IndexedShardDataset

    return IndexedShardDataset(os.path.expanduser(source.path), clip, seed=source.seed)


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """A float clip in [-1, 1] -> uint8 (pixel value = round((x + 1) * 127.5)), the stored form of a clip."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def source_dataset(source: SourceConfig, data: DataConfig, split: str) -> Dataset[VideoSample]:
    """:func:`build_source`, with a failure as :class:`DataSourceError` naming the split and source."""
    try:
        return build_source(source, data)
    except ValueError as err:  # the datasets check their arguments and files with ValueError
        raise DataSourceError(f"the {split} source {source.kind!r}: {err}") from None


class SourceClips(Dataset[torch.Tensor]):
    """The clips of a split's sources, in recipe order: the first ``count`` of each source (or all it has).

    ``dataset[i]`` is a uint8 clip ``[3, T, H, W]`` (see :func:`to_uint8`), decoded on demand; the same
    clips, in the same order, as the in-memory cache of :func:`videoflex.data.clip_cache.load_or_build_cache`
    builds for a map-style source. Raises :class:`DataSourceError` when a source cannot be read.
    """

    def __init__(self, data: DataConfig, split: str) -> None:
        sources = data.train if split == "train" else data.eval
        if not sources:
            raise ValueError(f"the data config lists no {split} sources")
        self.parts = [source_dataset(source, data, split) for source in sources]
        counts = [min(source.count, len(part)) for source, part in zip(sources, self.parts)]
        self.ends = torch.tensor(counts).cumsum(0).tolist()

    def __len__(self) -> int:
        return self.ends[-1]

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"clip {index} of {len(self)}")
        part = next(i for i, end in enumerate(self.ends) if index < end)
        start = self.ends[part - 1] if part else 0
        return to_uint8(self.parts[part][index - start].video)
