"""An in-memory cache of training clips: every clip decoded once, stored as uint8 in safetensors files.

For small CPU runs (``data.in_memory: true``, the shipped demo recipes): decoding video (or running an
emulator) for every step would dominate training on a CPU, so each source of a recipe is cached once in
its own file (named by the hash of the source and the clip shape) and the files are read into memory.
Large datasets stream instead (:class:`videoflex.data.sources.SourceClips` through ``DataLoader`` workers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from videoflex.data.config import DataConfig, SourceConfig
from videoflex.data.sources import source_dataset, to_uint8
from videoflex.io.safetensors_file import save_safetensors
from videoflex.utils.dataclass_io import config_hash, to_json


@dataclass(frozen=True)
class ClipCache(Dataset[torch.Tensor]):
    """Clips ``[N,3,T,H,W]`` uint8 (pixel value = round((x + 1) * 127.5)); ``cache[i]`` is clip ``i``."""

    clips: torch.Tensor

    def __len__(self) -> int:
        return self.clips.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.clips[index]


def cache_path(data: DataConfig, source: SourceConfig, split: str) -> Path:
    """The cache file of one source's clips (its name hashes the source and the clip shape, so adding a
    source to a recipe reuses the files of the others)."""
    key = config_hash({"frames": data.frames, "size": data.size, "fps": data.fps,  # a list of one source:
                       "sources": [json.loads(to_json(source))]})  # a one-source recipe keeps its old file
    return Path(data.cache_dir) / f"{split}-{key}.safetensors"


def build_source_cache(data: DataConfig, source: SourceConfig, split: str,
                       progress: bool = True) -> torch.Tensor:
    """Decode one source's clips into ``[N,3,T,H,W]`` uint8 and write its cache file (atomic rename).

    Raises :class:`~videoflex.data.sources.DataSourceError` when the source cannot be read.
    """
    dataset = source_dataset(source, data, split)
    count = min(source.count, len(dataset))
    loader = DataLoader(Subset(dataset, range(count)), batch_size=None, shuffle=False, num_workers=2)
    clips = [to_uint8(sample.video) for sample in tqdm(loader, total=count, desc=f"caching {split} clips: "
                                                       f"{source.kind}", disable=not progress)]
    if not clips:
        raise ValueError(f"the {split} source {source.kind} yielded no clips")
    stacked = torch.stack(clips)
    path = cache_path(data, source, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_safetensors({"clips": stacked}, tmp, metadata={"source": to_json(source), "split": split,
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
