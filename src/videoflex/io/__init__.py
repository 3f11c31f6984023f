"""Video input and output: reading, writing, comparison panels, and their errors."""

from videoflex.io.compare import ComparisonFiles, comparison_frames, comparison_strip, write_comparison
from videoflex.io.errors import VideoError, VideoNotFoundError, VideoReadError, VideoWriteError
from videoflex.io.safetensors_file import safetensors_bytes, save_safetensors
from videoflex.io.video import (
    DecodedVideo,
    VideoInfo,
    atomic_output_path,
    encode_mp4,
    probe_video,
    read_video,
    uint8_to_video,
    video_to_uint8,
    write_video,
)

__all__ = [
    "ComparisonFiles",
    "DecodedVideo",
    "VideoError",
    "VideoInfo",
    "VideoNotFoundError",
    "VideoReadError",
    "VideoWriteError",
    "atomic_output_path",
    "comparison_frames",
    "comparison_strip",
    "encode_mp4",
    "probe_video",
    "read_video",
    "safetensors_bytes",
    "save_safetensors",
    "uint8_to_video",
    "video_to_uint8",
    "write_comparison",
    "write_video",
]
