"""Clip windows and tensor resizing shared by the datasets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from videoflex.io.video import DecodedVideo, Size, VideoSource, read_video, resize_crop_geometry

Window = Literal["random", "start", "center", "uniform"]
"""Where a clip sits in a longer video: a seeded random start, the start, the centre, or (with several
clips per video) evenly spaced from the start to the end."""


@dataclass(frozen=True)
class ClipSpec:
    """Which frames a dataset cuts out of a video file.

    Attributes:
        num_frames: frames per clip; ``None`` = the whole video (clips then differ in length).
        fps: sampling rate; ``None`` = every source frame.
        size: ``S`` (short side to ``S``, centre crop ``S x S``), ``(H, W)``, or ``None`` (source size).
        window: where the clip starts, see :data:`Window`.
        crop_scale: ``(lo, hi)``: a random resized crop (training augmentation): the clip is cut from a
            window of the output's aspect whose side is a fraction drawn uniformly from ``[lo, hi]`` of the
            largest such window in the frame, at a random position (the same for all frames), then resized
            to ``size``. ``None``: the centred crop. Drawn from the same seeded generator as the window.
        flip: mirror the clip left-right with probability 1/2 (same generator).
    """

    num_frames: int | None = 17
    fps: float | None = 8.0
    size: Size | None = 64
    window: Window = "random"
    crop_scale: tuple[float, float] | None = None
    flip: bool = False

    def __post_init__(self) -> None:
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1 or None, got {self.num_frames}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be positive or None, got {self.fps}")
        if self.window not in ("random", "start", "center", "uniform"):
            raise ValueError(f"window must be random, start, center or uniform, got {self.window!r}")
        if self.size is not None:
            sizes = (self.size,) if isinstance(self.size, int) else tuple(self.size)
            if len(sizes) not in (1, 2) or any(int(s) < 1 for s in sizes):
                raise ValueError(f"size must be a positive int or (H, W), got {self.size}")
        if self.crop_scale is not None:
            lo, hi = self.crop_scale
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {self.crop_scale}")
            if self.size is None:
                raise ValueError("a random crop (crop_scale) needs an output size")


def clip_start(
    duration: float,
    clip_seconds: float,
    window: Window,
    rng: np.random.Generator | None = None,
    clip_index: int = 0,
    clips_per_video: int = 1,
) -> float:
    """Start time (seconds) of a ``clip_seconds`` window in a video of ``duration`` seconds.

    A video shorter than the window starts at 0. ``"random"`` needs ``rng``; ``"uniform"`` spaces
    ``clips_per_video`` windows evenly from the start to the end (one window: the centre).
    """
    latest = max(0.0, duration - clip_seconds)
    if window == "start":
        return 0.0
    if window == "center":
        return latest / 2
    if window == "uniform":
        return latest / 2 if clips_per_video == 1 else latest * clip_index / (clips_per_video - 1)
    if window == "random":
        if rng is None:
            raise ValueError("a random window needs a random generator")
        return float(rng.uniform(0.0, latest)) if latest > 0 else 0.0
    raise ValueError(f"unknown window {window!r}")


def pad_frames(video: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Repeat the last frame of ``[3, T, H, W]`` until it has ``num_frames`` frames (no-op if T is enough)."""
    missing = num_frames - video.shape[1]
    if missing <= 0:
        return video
    return torch.cat([video, video[:, -1:].expand(-1, missing, -1, -1)], dim=1)


def resize_video(video: torch.Tensor, size: Size, mode: Literal["crop", "squash"] = "crop") -> torch.Tensor:
    """Resize ``[3, T, H, W]`` (float) to ``size``: ``"crop"`` keeps the aspect and centre-crops,
    ``"squash"`` stretches the whole frame. Antialiased bilinear; returns float ``[3, T, h, w]``."""
    _, _, h, w = video.shape
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if mode == "squash":
        (rh, rw), (top, left) = (out_h, out_w), (0, 0)
    elif mode == "crop":
        (rh, rw), (top, left) = resize_crop_geometry((h, w), size)
    else:
        raise ValueError(f"mode must be crop or squash, got {mode!r}")
    frames = video.float().permute(1, 0, 2, 3)  # [T, 3, H, W]
    if (rh, rw) != (h, w):
        frames = F.interpolate(frames, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
    frames = frames[:, :, top : top + out_h, left : left + out_w]
    return frames.permute(1, 0, 2, 3).contiguous()


def random_crop(video: torch.Tensor, size: Size, scale: tuple[float, float], rng: np.random.Generator) -> torch.Tensor:
    """A random resized crop of ``[3, T, H, W]`` (see :attr:`ClipSpec.crop_scale`), the same window in
    every frame, resized to ``size``: returns float ``[3, T, h, w]``."""
    _, _, h, w = video.shape
    out_h, out_w = (size, size) if isinstance(size, int) else size
    largest = min(h / out_h, w / out_w)  # the largest window of the output's aspect, in output units
    fraction = float(rng.uniform(scale[0], scale[1]))
    crop_h = max(1, min(h, round(out_h * largest * fraction)))
    crop_w = max(1, min(w, round(out_w * largest * fraction)))
    top = int(rng.integers(0, h - crop_h + 1))
    left = int(rng.integers(0, w - crop_w + 1))
    return resize_video(video[:, :, top : top + crop_h, left : left + crop_w], (out_h, out_w), mode="squash")


def cut_clip(source: VideoSource, clip: ClipSpec, start: float, rng: np.random.Generator | None,
             name: str | None = None) -> DecodedVideo:
    """Decode the clip ``clip`` names from ``source`` (a path or bytes) starting at ``start`` seconds:
    frames at ``clip.fps``, padded to ``clip.num_frames``, resized (or randomly cropped and flipped with
    ``rng``, which an augmenting spec needs). The video is float ``[3, T, h, w]`` in [-1, 1]."""
    crop = clip.crop_scale is not None
    if (crop or clip.flip) and rng is None:
        raise ValueError("a random crop or flip needs a random generator")
    # a random crop is cut from the source frames; otherwise the reader resizes while decoding
    decoded = read_video(source, fps=clip.fps, size=None if crop else clip.size, max_frames=clip.num_frames,
                         start=start, name=name)
    video = decoded.video if clip.num_frames is None else pad_frames(decoded.video, clip.num_frames)
    if crop:
        video = random_crop(video, clip.size, clip.crop_scale, rng)
    if clip.flip and rng.random() < 0.5:
        video = video.flip(-1)
    return replace(decoded, video=video)
