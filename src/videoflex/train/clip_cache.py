"""A cache of training clips: every clip decoded once, stored as uint8 in safetensors files.

Decoding video (or running an emulator) for every step would dominate training on a CPU; each source
of a recipe is cached once in its own file (named by the hash of the source and the clip shape) and
the files are read into memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from videoflex.data.sample import VideoSample
from videoflex.tokenizers.flex.model import VideoFlexTok
from videoflex.train.config import DataConfig, SourceConfig
from videoflex.utils.dataclass_io import config_hash, to_json
from videoflex.vae.base import VideoVAE


class DataSourceError(ValueError):
    """A recipe's data source cannot be read: a missing folder, file or package, an unknown name."""


def build_source(source: SourceConfig, data: DataConfig, labels: bool = False) -> Dataset[VideoSample]:
    """The dataset a source names, yielding clips of ``data.frames`` frames at ``data.size`` pixels.

    labels: give ``folder`` clips the class of their first sub-folder (training does not need them).
    """
    from videoflex.data.transforms import ClipSpec

    if source.kind == "shapes":
        from videoflex.data.shapes import ShapesConfig, ShapesDataset

        return ShapesDataset(ShapesConfig(num_samples=source.count, num_frames=data.frames, size=data.size,
                                          fps=data.fps, seed=source.seed))
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
    from videoflex.data.shards import VideoShardDataset

    return VideoShardDataset(os.path.expanduser(source.path), clip)


@dataclass(frozen=True)
class ClipCache:
    """Clips ``[N,3,T,H,W]`` uint8 (pixel value = round((x + 1) * 127.5))."""

    clips: torch.Tensor

    def __len__(self) -> int:
        return self.clips.shape[0]

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Float clips ``[B,3,T,H,W]`` in [-1, 1]."""
        return self.clips[indices].float() / 127.5 - 1.0

    def latent_shape(self, vae: VideoVAE) -> tuple[int, int, int, int]:
        """``(C, t, h, w)`` of one clip's latents."""
        _, frames, h, w = self.clips.shape[1:]
        return vae.latent_channels, vae.latent_steps(frames), h // vae.spatial_factor, w // vae.spatial_factor

    def latents(self, indices: torch.Tensor, model: VideoFlexTok, generator: torch.Generator) -> torch.Tensor:
        """Latents ``[B,C,t,h,w]`` of the clips at ``indices`` (the frozen VAE runs here)."""
        with torch.no_grad():
            return model.encode_video(self.batch(indices).to(model.device), generator)


@dataclass(frozen=True)
class LatentTensorCache:
    """Precomputed VAE latents ``[N,C,t,h,w]`` (a latent cache read into memory)."""

    values: torch.Tensor

    def __len__(self) -> int:
        return self.values.shape[0]

    def latent_shape(self, vae: VideoVAE) -> tuple[int, int, int, int]:
        return tuple(self.values.shape[1:])

    def latents(self, indices: torch.Tensor, model: VideoFlexTok, generator: torch.Generator) -> torch.Tensor:
        return self.values[indices].to(model.device, torch.float32)


def load_latent_cache(root: str | Path, vae: VideoVAE, progress: bool = True) -> LatentTensorCache:
    """Read a latent cache (checked against ``vae``) into memory."""
    from videoflex.data.latent_cache import LatentCacheDataset

    dataset = LatentCacheDataset(root, vae=vae)
    values = [dataset[i].latents for i in tqdm(range(len(dataset)), desc="reading latents", disable=not progress)]
    return LatentTensorCache(torch.stack(values))


def cache_path(data: DataConfig, source: SourceConfig, split: str) -> Path:
    """The cache file of one source's clips (its name hashes the source and the clip shape, so adding a
    source to a recipe reuses the files of the others)."""
    key = config_hash({"frames": data.frames, "size": data.size, "fps": data.fps,  # a list of one source:
                       "sources": [json.loads(to_json(source))]})  # a one-source recipe keeps its old file
    return Path(data.cache_dir) / f"{split}-{key}.safetensors"


def build_source_cache(data: DataConfig, source: SourceConfig, split: str,
                       progress: bool = True) -> torch.Tensor:
    """Decode one source's clips into ``[N,3,T,H,W]`` uint8 and write its cache file (atomic rename).

    Raises :class:`DataSourceError` when the source cannot be read.
    """
    try:
        dataset = build_source(source, data)
    except ValueError as err:  # the datasets check their arguments and files with ValueError
        raise DataSourceError(f"the {split} source {source.kind!r}: {err}") from None
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=2)
    count = min(source.count, len(dataset)) if hasattr(dataset, "__len__") else source.count
    clips = []
    bar = tqdm(total=count, desc=f"caching {split} clips: {source.kind}", disable=not progress)
    for i, sample in enumerate(loader):
        if i >= count:
            break
        clips.append(((sample.video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
        bar.update()
    bar.close()
    if not clips:
        raise ValueError(f"the {split} source {source.kind} yielded no clips")
    stacked = torch.stack(clips)
    path = cache_path(data, source, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"clips": stacked}, str(tmp), metadata={"source": to_json(source), "split": split,
                                                       "frames": str(data.frames), "size": str(data.size),
                                                       "fps": str(data.fps)})
    tmp.replace(path)
    return stacked


def load_or_build_cache(data: DataConfig, split: str, progress: bool = True) -> ClipCache:
    """The clips of a split's sources, in recipe order: each source's cache file is read, or built first
    when it does not exist."""
    sources = data.train if split == "train" else data.eval
    if not sources:
        raise ValueError(f"the data config lists no {split} sources")
    parts = []
    for source in sources:
        path = cache_path(data, source, split)
        parts.append(load_file(str(path))["clips"] if path.is_file()
                     else build_source_cache(data, source, split, progress))
    return ClipCache(torch.cat(parts) if len(parts) > 1 else parts[0])
