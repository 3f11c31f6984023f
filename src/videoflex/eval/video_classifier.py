"""What the classifiers trained on real clips share (:mod:`videoflex.eval.clip_classifier`,
:mod:`videoflex.eval.silhouette`): named classes, top-1 accuracy from class probabilities, and the checks of
their training clips and labels (labels are never broadcast against predictions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def check_clip_labels(video: torch.Tensor, labels: torch.Tensor, classes: int) -> None:
    """ValueError unless ``labels`` is int64 ``[B]`` in ``[0, classes)`` for clips ``video [B, ...]``."""
    if labels.shape != (len(video),) or labels.dtype != torch.int64:
        raise ValueError(f"labels must be int64 [{len(video)}] (one per clip), got {labels.dtype} {list(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels must be int64 in [0, {classes}), got values in [{int(labels.min())}, "
                         f"{int(labels.max())}]")


def check_training_clips(video: torch.Tensor, labels: torch.Tensor, classes: int) -> None:
    """ValueError unless ``video`` is ``[M >= 2, 3, T, H, W]`` with labels as :func:`check_clip_labels` wants."""
    if video.dim() != 5 or video.shape[1] != 3 or len(video) < 2 or labels.shape != (len(video),):
        raise ValueError(f"need video [M>=2,3,T,H,W] and labels [M], got {list(video.shape)} and "
                         f"{list(labels.shape)}")
    check_clip_labels(video, labels, classes)


class VideoClassifier(nn.Module):
    """A classifier of clips ``[B, 3, T, H, W]`` in [-1, 1] into ``class_names`` (at least 2, distinct;
    ValueError otherwise); subclasses define :meth:`probabilities`."""

    def __init__(self, class_names: Sequence[str]) -> None:
        super().__init__()
        if len(class_names) < 2 or len(set(class_names)) != len(class_names):
            raise ValueError(f"need at least 2 distinct class names, got {list(class_names)}")
        self.class_names = tuple(class_names)

    def probabilities(self, video: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Class probabilities ``[B, K]`` float32 of ``video``, in eval mode."""
        raise NotImplementedError

    def accuracy(self, video: torch.Tensor, labels: torch.Tensor) -> float:
        """Top-1 accuracy in [0, 1] on ``video [B, 3, T, H, W]`` in [-1, 1] with ``labels [B]`` (int64 class
        indices), in eval mode. Raises ValueError for labels of another shape, dtype or range, and as
        :meth:`probabilities`."""
        check_clip_labels(video, labels, len(self.class_names))
        return float((self.probabilities(video).argmax(1) == labels.cpu()).float().mean())
