"""Degraded copies of real clips (blur and noise) for the evaluation probes."""

import pytest
import torch

from videoflex.eval.degrade import DegradeConfig, degraded_copy


def clips(seed: int = 0) -> torch.Tensor:
    return torch.rand(3, 3, 5, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_seeded_down_to_the_bytes_and_in_range():
    video = clips()
    a, b, c = degraded_copy(video, 1), degraded_copy(video, 1), degraded_copy(video, 2)
    assert a.shape == video.shape and a.dtype == torch.float32
    assert a.numpy().tobytes() == b.numpy().tobytes() and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


def test_no_degradation_is_the_clip_and_blur_alone_smooths():
    video = clips()
    assert torch.equal(degraded_copy(video, 3, DegradeConfig(max_blur=0, max_noise=0)), video)
    flat = torch.full((2, 3, 3, 8, 8), 0.25)
    assert torch.allclose(degraded_copy(flat, 0, DegradeConfig(max_noise=0)), flat)  # edges replicated
    blurred = degraded_copy(video, 0, DegradeConfig(max_blur=1.5, max_noise=0))

    def roughness(v):
        return (v[..., 1:] - v[..., :-1]).abs().mean()

    assert roughness(blurred) < roughness(video)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="float"):
        degraded_copy(torch.zeros(1, 3, 2, 8, 8, dtype=torch.uint8), 0)
    with pytest.raises(ValueError, match=r"\[B,3,T,H,W\]"):
        degraded_copy(torch.zeros(3, 2, 8, 8), 0)
    with pytest.raises(ValueError, match="max_blur"):
        DegradeConfig(max_blur=-1)
