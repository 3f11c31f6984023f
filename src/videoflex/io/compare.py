"""Side-by-side comparison of an original video and its reconstructions (e.g. one per token count).

Panels are ``(label, video)`` pairs, all float ``[3, T, H, W]`` in ``[-1, 1]`` with one shape. The
video puts the panels left to right, each under a label bar; the PNG strip has one row per panel
(label on the left) and one column per sampled frame (frame index on top).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from videoflex.io.video import atomic_output_path, uint8_to_video, video_to_uint8, write_video

GAP = 2  # pixels between panels
BACKGROUND = (16, 16, 16)
TEXT = (235, 235, 235)


@dataclass(frozen=True)
class ComparisonFiles:
    """Paths written by :func:`write_comparison` (``None`` where not requested)."""

    video: Path | None
    strip: Path | None


def _panels(original: torch.Tensor, reconstructions: Mapping[str, torch.Tensor], original_label: str):
    panels = [(original_label, original), *reconstructions.items()]
    shape = tuple(original.shape)
    for label, video in panels:
        if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[0] != 3:
            raise ValueError(f"panel {label!r}: expected a video tensor [3, T, H, W]")
        if tuple(video.shape) != shape:
            raise ValueError(f"panel {label!r} has shape {list(video.shape)}, the original {list(shape)}")
    return [(label, video_to_uint8(video)) for label, video in panels]


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font, scaled with the panel height where FreeType is available."""
    try:
        return ImageFont.load_default(size=max(10, height // 12))
    except (TypeError, ValueError, OSError, ImportError):
        return ImageFont.load_default()


def _text_size(font, text: str) -> tuple[int, int]:
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _bar_height(font) -> int:
    return _text_size(font, "Hgk=0123456789")[1] + 6


def comparison_frames(
    original: torch.Tensor,
    reconstructions: Mapping[str, torch.Tensor],
    *,
    original_label: str = "original",
) -> torch.Tensor:
    """Panels side by side, each under its label: float ``[3, T, H + bar, n*W + (n-1)*GAP]`` in [-1, 1]."""
    panels = _panels(original, reconstructions, original_label)
    t, h, w, _ = panels[0][1].shape
    font = _font(h)
    bar = _bar_height(font)
    n = len(panels)
    header = Image.new("RGB", (n * w + (n - 1) * GAP, bar), BACKGROUND)
    draw = ImageDraw.Draw(header)
    canvas = np.empty((t, h + bar, header.width, 3), np.uint8)
    canvas[:] = BACKGROUND
    for i, (label, frames) in enumerate(panels):
        x = i * (w + GAP)
        tw, _ = _text_size(font, label)
        draw.text((x + max(0, (w - tw) // 2), 3), label, fill=TEXT, font=font)
        canvas[:, bar:, x : x + w] = frames
    canvas[:, :bar] = np.asarray(header)
    return uint8_to_video(canvas)


def comparison_strip(
    original: torch.Tensor,
    reconstructions: Mapping[str, torch.Tensor],
    *,
    num_frames: int = 6,
    original_label: str = "original",
) -> Image.Image:
    """A grid image: one row per panel (label at the left), ``num_frames`` evenly spaced frames as columns."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    panels = _panels(original, reconstructions, original_label)
    t, h, w, _ = panels[0][1].shape
    indices = np.unique(np.linspace(0, t - 1, min(num_frames, t)).round().astype(int))
    font = _font(h)
    bar = _bar_height(font)
    label_w = max(_text_size(font, label)[0] for label, _ in panels) + 12
    width = label_w + len(indices) * (w + GAP)
    height = bar + len(panels) * (h + GAP)
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for c, index in enumerate(indices):
        x = label_w + c * (w + GAP)
        text = f"t={index}"
        draw.text((x + max(0, (w - _text_size(font, text)[0]) // 2), 3), text, fill=TEXT, font=font)
    for r, (label, frames) in enumerate(panels):
        y = bar + r * (h + GAP)
        draw.text((4, y + max(0, (h - _text_size(font, label)[1]) // 2)), label, fill=TEXT, font=font)
        for c, index in enumerate(indices):
            image.paste(Image.fromarray(frames[index]), (label_w + c * (w + GAP), y))
    return image


def write_comparison(
    original: torch.Tensor,
    reconstructions: Mapping[str, torch.Tensor],
    fps: float,
    *,
    video_path: str | os.PathLike | None = None,
    strip_path: str | os.PathLike | None = None,
    num_strip_frames: int = 6,
    original_label: str = "original",
) -> ComparisonFiles:
    """Write the side-by-side video (mp4 or gif, see :func:`write_video`) and/or the PNG strip.

    ``reconstructions`` maps labels (e.g. ``"k=4"``) to videos of the original's shape, in display
    order. Each file is written under a temporary name and renamed when complete.
    """
    if video_path is None and strip_path is None:
        raise ValueError("give video_path, strip_path or both")
    video_out = strip_out = None
    if video_path is not None:
        frames = comparison_frames(original, reconstructions, original_label=original_label)
        video_out = write_video(video_path, frames, fps)
    if strip_path is not None:
        strip_out = Path(strip_path)
        strip = comparison_strip(
            original, reconstructions, num_frames=num_strip_frames, original_label=original_label
        )
        with atomic_output_path(strip_out) as tmp:
            strip.save(tmp, format="PNG")
    return ComparisonFiles(video=video_out, strip=strip_out)
