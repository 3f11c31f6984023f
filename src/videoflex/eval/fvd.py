"""Frechet distance between feature sets (FVD on I3D logits), in float64, and reusable statistics.

    FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)

The last trace equals the nuclear norm (sum of singular values) of S_a^1/2 S_b^1/2, where the PSD
square roots come from symmetric eigendecompositions with negative round-off eigenvalues clipped
to 0. Everything stays real (no complex sqrtm leftovers), the error is O(eps * |S|) rather than
O(sqrt(eps)), FD(X, X) is 0 to round-off, and rank-deficient covariances are handled exactly.

Fewer samples than feature dimensions (N <= D) is allowed but the covariance is then rank-deficient
and the distance is biased upward and depends on N: `feature_stats` warns with `FewSamplesWarning`.
Compare FVDs only at equal N (the literature uses N >= 2048 for 400-d I3D logits).
Statistics (mu, sigma, n) save to / load from one safetensors file, so a dataset is embedded once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file
from torch import Tensor

STATS_FORMAT = "videoflex-feature-stats-v1"
MIN_SAMPLES = 2  # the covariance of one sample is undefined


class FewSamplesWarning(UserWarning):
    """Fewer samples than feature dimensions: rank-deficient covariance, biased distance."""


@dataclass
class FeatureStats:
    """Gaussian statistics of a feature set: mu [D] and sigma [D, D] (float64), n samples."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def __post_init__(self) -> None:
        self.mu = np.asarray(self.mu, dtype=np.float64)
        self.sigma = np.asarray(self.sigma, dtype=np.float64)
        d = self.mu.shape[0] if self.mu.ndim == 1 else -1
        if self.mu.ndim != 1 or self.sigma.shape != (d, d):
            raise ValueError(f"FeatureStats needs mu [D] and sigma [D, D], got {self.mu.shape}, {self.sigma.shape}")
        if self.n < MIN_SAMPLES:
            raise ValueError(f"FeatureStats needs n >= {MIN_SAMPLES} samples, got {self.n}")

    @property
    def dim(self) -> int:
        return self.mu.shape[0]


def _as_float64(features: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(features, Tensor):
        features = features.detach().cpu().to(torch.float64).numpy()
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or inf")
    return features


def feature_stats(features: Tensor | np.ndarray) -> FeatureStats:
    """Mean and unbiased covariance (ddof=1) of features [N, D], in float64."""
    x = _as_float64(features)
    n, d = x.shape
    if n < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} samples for a covariance, got N={n}")
    if n <= d:
        warnings.warn(
            f"N={n} samples <= D={d} feature dims: the covariance is rank-deficient, so the Frechet "
            f"distance is biased upward and depends on N; compare values only at equal N.",
            FewSamplesWarning,
            stacklevel=2,
        )
    mu = x.mean(axis=0)
    centered = x - mu
    sigma = centered.T @ centered / (n - 1)
    return FeatureStats(mu=mu, sigma=sigma, n=n)


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root via eigh; eigenvalues below 0 (round-off) are clipped to 0."""
    sym = (matrix + matrix.T) / 2
    eigval, eigvec = np.linalg.eigh(sym)
    return (eigvec * np.sqrt(np.clip(eigval, 0.0, None))) @ eigvec.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Frechet distance between two Gaussians (float64, >= 0; clipped at 0 against round-off)."""
    if a.dim != b.dim:
        raise ValueError(f"feature dims differ: {a.dim} vs {b.dim}")
    mean_term = float(np.sum((a.mu - b.mu) ** 2))
    cross = np.linalg.svd(psd_sqrt(a.sigma) @ psd_sqrt(b.sigma), compute_uv=False).sum()
    return max(mean_term + float(np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * cross), 0.0)


def fvd(
    real: Tensor | np.ndarray | FeatureStats, fake: Tensor | np.ndarray | FeatureStats
) -> float:
    """FVD between two sets of I3D logits [N, 400] (or precomputed `FeatureStats`)."""
    a = real if isinstance(real, FeatureStats) else feature_stats(real)
    b = fake if isinstance(fake, FeatureStats) else feature_stats(fake)
    return frechet_distance(a, b)


def save_stats(stats: FeatureStats, path: str | Path, description: str = "") -> None:
    """Write mu, sigma (float64) and n to a safetensors file; `description` goes into metadata.

    Written under a temporary name and renamed when complete (nothing is left at ``path`` or beside it if
    writing fails); the folder must exist (``FileNotFoundError``).
    """
    from videoflex.io.safetensors_file import save_safetensors
    from videoflex.io.video import atomic_output_path

    tensors = {"mu": stats.mu, "sigma": stats.sigma, "n": np.array([stats.n], dtype=np.int64)}
    with atomic_output_path(path) as tmp:  # byte-reproducible: the same statistics give the same file
        save_safetensors(tensors, tmp, metadata={"format": STATS_FORMAT, "description": description})


def load_stats(path: str | Path) -> FeatureStats:
    """Read statistics written by `save_stats`.

    Raises ``FileNotFoundError`` (no file) and ``ValueError`` naming the file when it is not a safetensors
    file (truncated, unrelated bytes), holds other tensors, or holds statistics that are misshapen, not
    finite, or of fewer than 2 samples.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no feature statistics file at {path}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    if set(tensors) != {"mu", "sigma", "n"}:
        raise ValueError(f"{path} is not a feature statistics file (tensors: {sorted(tensors)[:5]}; expected mu, "
                         f"sigma, n as written by --save-real-stats)")
    mu, sigma, n = tensors["mu"], tensors["sigma"], tensors["n"]
    if n.shape != (1,) or n.dtype.kind not in "iu":
        raise ValueError(f"{path}: 'n' must hold one integer, got shape {n.shape} of {n.dtype}")
    if mu.dtype.kind != "f" or sigma.dtype.kind != "f":
        raise ValueError(f"{path}: mu and sigma must be floating point, got {mu.dtype}, {sigma.dtype}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{path}: the statistics hold NaN or inf")
    try:
        return FeatureStats(mu=mu, sigma=sigma, n=int(n[0]))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
