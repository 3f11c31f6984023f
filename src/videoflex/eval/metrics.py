"""Reconstruction metrics: PSNR and SSIM per frame and per video.

Inputs are videos [B, C, T, H, W] with values in [0, 1] (map [-1, 1] videos with (x + 1) / 2).
- PSNR per frame: 10 log10(1 / MSE) over all channels and pixels of the frame; capped at 100 dB
  (MSE floored at 1e-10) so identical frames stay finite.
- SSIM per frame (Wang et al. 2004): Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03,
  data range 1, population (not sample) covariances, mean over the valid region (no padding).
  Computed on RGB: per channel, then averaged over channels (not on luma). This equals
  `skimage.metrics.structural_similarity(..., channel_axis=-1, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1.0)`.
- Per video: the mean of the per-frame values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

PSNR_MAX_DB = 100.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


@dataclass
class VideoMetrics:
    """Per-frame values [B, T] and per-video means [B]."""

    psnr_frames: Tensor
    ssim_frames: Tensor

    @property
    def psnr(self) -> Tensor:
        return self.psnr_frames.mean(dim=1)

    @property
    def ssim(self) -> Tensor:
        return self.ssim_frames.mean(dim=1)


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"videos must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim != 5:
        raise ValueError(f"videos must be [B, C, T, H, W], got shape {tuple(x.shape)}")
    if not (x.is_floating_point() and y.is_floating_point()):
        raise ValueError(f"videos must be float in [0, 1], got {x.dtype} and {y.dtype}")


def psnr_frames(x: Tensor, y: Tensor) -> Tensor:
    """PSNR in dB of every frame: x, y [B, C, T, H, W] in [0, 1] -> [B, T]."""
    _check_pair(x, y)
    mse = (x - y).pow(2).mean(dim=(1, 3, 4))  # (B, T)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(10 ** (-PSNR_MAX_DB / 10)))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised 1-D Gaussian [size]."""
    coords = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: Tensor, g: Tensor) -> Tensor:
    """Separable Gaussian filter, valid region only: [N, 1, H, W] -> [N, 1, H-10, W-10]."""
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return F.conv2d(x, g.view(1, 1, 1, -1))


def ssim_frames(x: Tensor, y: Tensor) -> Tensor:
    """SSIM of every frame (RGB channel mean): x, y [B, C, T, H, W] in [0, 1] -> [B, T]."""
    _check_pair(x, y)
    b, c, t, h, w = x.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    dtype = torch.promote_types(x.dtype, torch.float32)
    g = gaussian_window(dtype=dtype).to(x.device)
    # every (batch, channel, frame) image as one filter input: (B*C*T, 1, H, W)
    xs = x.to(dtype).reshape(b * c * t, 1, h, w)
    ys = y.to(dtype).reshape(b * c * t, 1, h, w)
    mu_x, mu_y = _blur(xs, g), _blur(ys, g)
    var_x = _blur(xs * xs, g) - mu_x**2
    var_y = _blur(ys * ys, g) - mu_y**2
    cov = _blur(xs * ys, g) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3)).reshape(b, c, t).mean(dim=1)


def video_metrics(x: Tensor, y: Tensor) -> VideoMetrics:
    """PSNR and SSIM per frame and per video for x, y [B, C, T, H, W] in [0, 1]."""
    return VideoMetrics(psnr_frames=psnr_frames(x, y), ssim_frames=ssim_frames(x, y))
