"""Degraded copies of real clips: blur and noise, for evaluation probes that do not mistake them for content.

A linear probe on I3D features trained on clean synthetic clips learns their exact pixel statistics as much
as their content: on 128 held-out real shapes clips (32x32, 17 frames) the motion probe of ``videoflex eval
generator`` was right for 83% of them, but for 34% after a Gaussian blur of std 1 pixel and for 20% after
Gaussian noise of std 0.05 (measured in this repository; ``checkpoints/generator-shapes-class/README.md``).
Every tokenizer's reconstruction, and so every generated clip, carries some blur and noise, so such a probe
measures sharpness rather than the class. Training the probe on the real clips together with degraded copies
of them (:func:`degraded_copy`, drawn from a seed) is the usual remedy (photometric augmentation); the copies
are of the same real clips, with the same labels, and nothing generated enters the probe.

Ours, not the paper's (whose class score is a UMT-L classifier on real video; docs/design.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DegradeConfig:
    """The degradations a copy draws, per clip (the same for all its frames), uniformly in ``[0, max]``.

    max_blur: largest std of the Gaussian blur, in pixels of the clip (kernel radius ``ceil(3 * std)``).
    max_noise: largest std of the added Gaussian noise, in units of the [-1, 1] pixel range (0.1 = 12.75 of 255).
    Both are ours, set so that a copy at the maximum is still plainly the clip (a 32x32 clip blurred by 1.5
    pixels shows the shape's colour and position).
    """

    max_blur: float = 1.5
    max_noise: float = 0.1

    def __post_init__(self) -> None:
        if not (0 <= self.max_blur <= 8 and 0 <= self.max_noise <= 1):
            raise ValueError(f"need 0 <= max_blur <= 8 pixels and 0 <= max_noise <= 1, got {self}")


def _blur(video: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of ``video [B,C,T,H,W]`` with std ``std [B]`` pixels per clip (replicated edges)."""
    b, c, t, h, w = video.shape
    radius = max(1, int(torch.ceil(3 * std.max()).item()))
    x = torch.arange(-radius, radius + 1, dtype=video.dtype)
    kernel = torch.exp(-x[None] ** 2 / (2 * std[:, None].to(video.dtype).clamp_min(1e-3) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c * t, 0)  # [B*C*T, K]
    planes = video.reshape(1, b * c * t, h, w)
    k = kernel.shape[1]
    planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode="replicate"), kernel.view(-1, 1, 1, k),
                      groups=b * c * t)
    planes = F.conv2d(F.pad(planes, (0, 0, radius, radius), mode="replicate"), kernel.view(-1, 1, k, 1),
                      groups=b * c * t)
    return planes.view(b, c, t, h, w)


@torch.no_grad()
def degraded_copy(video: torch.Tensor, seed: int, config: DegradeConfig = DegradeConfig()) -> torch.Tensor:
    """A blurred and noised copy of ``video``.

    video: float ``[B, 3, T, H, W]`` in [-1, 1]. Each clip draws a blur std in ``[0, max_blur]`` pixels and a
    noise std in ``[0, max_noise]`` from a generator seeded with ``seed``; noise is drawn per pixel.
    Returns float ``[B, 3, T, H, W]`` in [-1, 1], on the CPU; the same ``video`` and ``seed`` give the same
    bytes. Raises ValueError for another shape or dtype.
    """
    if video.dim() != 5 or video.shape[1] != 3 or not video.is_floating_point():
        raise ValueError(f"video must be float [B,3,T,H,W], got {video.dtype} {list(video.shape)}")
    video = video.detach().cpu().float()
    generator = torch.Generator().manual_seed(seed)
    b = video.shape[0]
    blur = torch.rand(b, generator=generator) * config.max_blur
    noise = torch.rand(b, generator=generator) * config.max_noise
    out = _blur(video, blur) if config.max_blur > 0 else video.clone()
    out += noise.view(b, 1, 1, 1, 1) * torch.randn(video.shape, generator=generator)
    return out.clamp_(-1.0, 1.0)
