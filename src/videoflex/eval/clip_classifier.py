"""A small video classifier trained on the real clips themselves, at their own resolution.

The I3D probe of :mod:`videoflex.eval.generation` sees a clip through a network trained on 224x224 Kinetics
video; for small synthetic clips (32x32 moving shapes) its features follow pixel statistics more than motion:
the motion probe on them recognises 83% of held-out real clips but about 30% of any of our tokenizers'
reconstructions, although the direction in which a reconstruction's centroid moves matches the clip's for
96-100% of them (measured in this repository; ``checkpoints/generator-shapes-class/README.md``). This module
trains a classifier for the dataset at hand instead, as is usual for synthetic data (a digit classifier
scores MNIST generators): a three-stage 3D CNN trained from scratch on the real clips and their labels, with
blurred and noised copies (:mod:`videoflex.eval.degrade`) in every other epoch. Nothing generated enters its
training. Ours, not the paper's (whose class score uses a UMT-L classifier on real video).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from videoflex.eval.class_probe import fit_cross_entropy
from videoflex.eval.degrade import degraded_copy
from videoflex.eval.video_classifier import VideoClassifier, check_training_clips


@dataclass(frozen=True)
class ClipClassifierConfig:
    """Architecture and training of :class:`ClipClassifier` (all ours; on 128 real 32x32 shapes clips, 16 a
    class, these settings train in about 2 minutes on 2 CPU cores and recognise 99% of 128 held-out ones).

    widths: channels of the three 3x3x3 convolution stages (each followed by GELU; 2x average pooling after
        the first two, global average pooling after the last).
    epochs: passes over the real clips; odd epochs use a degraded copy of them (seeded by ``seed + epoch``).
    lr, weight_decay: AdamW's. batch_size: clips a step. seed: initialisation, order and degradations.
    """

    widths: tuple[int, int, int] = (32, 64, 128)
    epochs: int = 60
    lr: float = 2e-3
    weight_decay: float = 0.05
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.widths) < 1 or self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 \
                or self.weight_decay < 0:
            raise ValueError(f"invalid clip classifier settings: {self}")


class ClipClassifier(VideoClassifier):
    """Video ``[B, 3, T, H, W]`` in [-1, 1] (T, H, W >= 4) -> class logits ``[B, K]``; :meth:`accuracy` as
    :class:`~videoflex.eval.video_classifier.VideoClassifier`'s."""

    def __init__(self, class_names: Sequence[str], config: ClipClassifierConfig = ClipClassifierConfig()) -> None:
        super().__init__(class_names)
        self.config = config
        a, b, c = config.widths
        self.features = nn.Sequential(
            nn.Conv3d(3, a, 3, padding=1), nn.GELU(), nn.AvgPool3d(2),
            nn.Conv3d(a, b, 3, padding=1), nn.GELU(), nn.AvgPool3d(2),
            nn.Conv3d(b, c, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
        )
        self.head = nn.Linear(c, len(class_names))

    @staticmethod
    def _check(video: torch.Tensor) -> None:
        if video.dim() != 5 or video.shape[1] != 3 or min(video.shape[2:]) < 4:
            raise ValueError(f"video must be [B,3,T,H,W] with T, H, W >= 4, got {list(video.shape)}")

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        self._check(video)
        return self.head(self.features(video))

    @torch.no_grad()
    def embed(self, video: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Pooled features ``[B, widths[-1]]`` float32 of ``video [B, 3, T, H, W]`` in [-1, 1] (what the head
        reads), in eval mode: the feature space of the per-class Frechet distance of the class score."""
        self._check(video)
        self.eval()
        return torch.cat([self.features(video[i:i + batch_size].float()) for i in range(0, len(video), batch_size)])

    @torch.no_grad()
    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, K]`` float32 of pooled features ``[B, widths[-1]]`` (from :meth:`embed`)."""
        return self.head(features).softmax(-1)

    def probabilities(self, video: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Class probabilities ``[B, K]`` float32 of ``video [B, 3, T, H, W]`` in [-1, 1], in eval mode."""
        return self.classify(self.embed(video, batch_size))


def train_clip_classifier(video: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str],
                          config: ClipClassifierConfig = ClipClassifierConfig(),
                          progress: bool = False) -> ClipClassifier:
    """Train a :class:`ClipClassifier` on real clips ``video [M, 3, T, H, W]`` in [-1, 1] with ``labels [M]``
    (int64 indices into ``class_names``), on the CPU. Deterministic: the same inputs and config give the same
    weights. Returns it in eval mode.

    Raises ValueError for fewer than 2 clips, a shape or label mismatch, or labels outside the classes.
    """
    check_training_clips(video, labels, len(class_names))
    video = video.detach().cpu().float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ClipClassifier(class_names, config)
    model.train()
    fit_cross_entropy(model, lambda epoch: degraded_copy(video, config.seed + epoch) if epoch % 2 else video,
                      labels, config.epochs, config.batch_size, config.lr, config.weight_decay,
                      torch.Generator().manual_seed(config.seed), "clip classifier", progress)
    return model.eval()
