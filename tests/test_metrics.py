"""PSNR / SSIM per frame and per video, cross-checked against scikit-image."""

import numpy as np
import pytest
import torch

from videoflex.eval.metrics import PSNR_MAX_DB, psnr_frames, ssim_frames, video_metrics

skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image (test extra) is not installed")


def _video_pair(seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random video [2, 3, 4, 40, 48] in [0, 1] and a noisy copy."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 4, 10, 12, generator=gen, dtype=torch.float64)
    x = torch.nn.functional.interpolate(x, size=(4, 40, 48), mode="trilinear")  # structure, not white noise
    y = (x + 0.08 * torch.randn(x.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return x.to(dtype), y.to(dtype)


def _frame(v: torch.Tensor, b: int, t: int) -> np.ndarray:
    return v[b, :, t].permute(1, 2, 0).double().numpy()  # (H, W, C)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_scikit_image(dtype):
    x, y = _video_pair(0, dtype)
    psnr, ssim = psnr_frames(x, y), ssim_frames(x, y)
    assert psnr.shape == ssim.shape == (2, 4)
    for b in range(2):
        for t in range(4):
            ref_psnr = skimage_metrics.peak_signal_noise_ratio(_frame(x, b, t), _frame(y, b, t), data_range=1.0)
            ref_ssim = skimage_metrics.structural_similarity(
                _frame(x, b, t), _frame(y, b, t), channel_axis=-1, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False, data_range=1.0,
            )
            assert psnr[b, t].item() == pytest.approx(ref_psnr, abs=1e-4)
            assert ssim[b, t].item() == pytest.approx(ref_ssim, abs=1e-4)


def test_per_video_is_frame_mean_and_identical_is_perfect():
    x, y = _video_pair(1)
    m = video_metrics(x, y)
    torch.testing.assert_close(m.psnr, m.psnr_frames.mean(1))
    torch.testing.assert_close(m.ssim, m.ssim_frames.mean(1))
    assert (m.ssim < 1).all() and (m.psnr < 40).all()
    same = video_metrics(x, x)
    torch.testing.assert_close(same.ssim, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(same.psnr, torch.full((2,), PSNR_MAX_DB, dtype=torch.float64))


def test_worse_corruption_scores_lower():
    x, _ = _video_pair(2)
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    mild, strong = (x + 0.02 * noise).clamp(0, 1), (x + 0.2 * noise).clamp(0, 1)
    assert (video_metrics(x, mild).psnr > video_metrics(x, strong).psnr).all()
    assert (video_metrics(x, mild).ssim > video_metrics(x, strong).ssim).all()


def test_bad_inputs():
    x = torch.zeros(1, 3, 2, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        psnr_frames(x, torch.zeros(1, 3, 2, 16, 15))
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        ssim_frames(x[0], x[0])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_frames(torch.zeros(1, 3, 2, 8, 8), torch.zeros(1, 3, 2, 8, 8))
    with pytest.raises(ValueError, match="float"):
        psnr_frames(x.to(torch.uint8), x.to(torch.uint8))
