"""The one sample type every dataset yields, and the batch it collates into."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch.utils.data import Dataset


@dataclass
class VideoSample:
    """One clip.

    Attributes:
        video: float32 ``[3, T, H, W]`` in ``[-1, 1]``.
        label: class id, or ``None`` for an unlabelled clip.
        caption: text, or ``None``.
        source: where the clip came from, e.g. ``"path/to/a.mp4@2.50s"`` or ``"atari/pong/17"``.
        fps: frame rate of ``video``.
    """

    video: torch.Tensor
    label: int | None
    caption: str | None
    source: str
    fps: float

    def __post_init__(self) -> None:
        v = self.video
        if not isinstance(v, torch.Tensor) or v.ndim != 4 or v.shape[0] != 3 or not v.is_floating_point():
            shape = list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"{self.source}: video must be a float tensor [3, T, H, W], got {shape}")


@dataclass
class VideoBatch:
    """A collated list of samples.

    Attributes:
        video: ``[B, 3, T, H, W]``.
        labels: long ``[B]``, or ``None`` when no sample has a label.
        captions: ``B`` strings or ``None``s, or ``None`` when no sample has a caption.
        sources: ``B`` source ids.
        fps: ``B`` frame rates.
    """

    video: torch.Tensor
    labels: torch.Tensor | None
    captions: list[str | None] | None
    sources: list[str]
    fps: list[float]

    def __len__(self) -> int:
        return self.video.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> VideoBatch:
        """The batch with its tensors on ``device``."""
        labels = None if self.labels is None else self.labels.to(device, non_blocking=non_blocking)
        return replace(self, video=self.video.to(device, non_blocking=non_blocking), labels=labels)

    def pin_memory(self) -> VideoBatch:
        """Pinned copy (called by ``DataLoader(pin_memory=True)``)."""
        labels = None if self.labels is None else self.labels.pin_memory()
        return replace(self, video=self.video.pin_memory(), labels=labels)


def collate_samples(samples: Sequence[VideoSample]) -> VideoBatch:
    """Stack samples of one shape into a :class:`VideoBatch` (use as ``DataLoader(collate_fn=...)``).

    Raises ``ValueError`` if the videos differ in shape, or only some samples have a label.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    shape = samples[0].video.shape
    for s in samples:
        if s.video.shape != shape:
            raise ValueError(
                f"cannot batch clips of different shapes: {samples[0].source} is {list(shape)}, "
                f"{s.source} is {list(s.video.shape)} (use fixed num_frames and size)"
            )
    has_label = [s.label is not None for s in samples]
    if any(has_label) and not all(has_label):
        missing = next(s.source for s in samples if s.label is None)
        raise ValueError(f"some samples have a class label and some do not (e.g. {missing})")
    labels = torch.tensor([s.label for s in samples], dtype=torch.long) if all(has_label) else None
    captions = [s.caption for s in samples]
    return VideoBatch(
        video=torch.stack([s.video for s in samples]),
        labels=labels,
        captions=captions if any(c is not None for c in captions) else None,
        sources=[s.source for s in samples],
        fps=[float(s.fps) for s in samples],
    )


def iterate_samples(samples: Iterable[VideoSample] | Dataset) -> tuple[Iterator[VideoSample], int | None]:
    """An iterator over ``samples`` (any iterable, or a map-style dataset read by index) and its
    length when known."""
    total = len(samples) if hasattr(samples, "__len__") else None
    if isinstance(samples, Dataset) and total is not None:
        return (samples[i] for i in range(total)), total
    return iter(samples), total
