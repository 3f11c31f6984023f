"""Class score: a linear probe on frozen I3D features (pooled Mixed_5c, 1024-d).

Train it on a labelled set of real videos, then score generated videos by the mean probability
the probe gives to the class they were generated for, and by top-1 accuracy. Saved as a folder
with `config.json` (class names, feature dim) and `model.safetensors`.

Commands (a dataset is a folder with one sub-folder of videos per class; the sub-folder name is
the class; each video contributes --frames frames from --start, centre-cropped to a square):

    videoflex eval probe train DATA_DIR -o PROBE_DIR
    videoflex eval probe score PROBE_DIR VIDEO_DIR   # prints JSON
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn
from tqdm import tqdm

from videoflex.eval.i3d import I3D, read_clip
from videoflex.io.safetensors_file import save_safetensors
from videoflex.utils.json_io import to_json_text

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif"}


@dataclass(frozen=True)
class ProbeConfig:
    """Probe shape: one logit per class name over `feature_dim` I3D features."""

    class_names: tuple[str, ...]
    feature_dim: int = 1024

    def __post_init__(self) -> None:
        if len(self.class_names) < 2:
            raise ValueError(f"a class probe needs >= 2 classes, got {len(self.class_names)}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError("class names must be unique")
        if self.feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1, got {self.feature_dim}")


@dataclass(frozen=True)
class ProbeTrainConfig:
    """AdamW on cross-entropy over standardised features."""

    epochs: int = 100
    lr: float = 1e-2
    weight_decay: float = 1e-2
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"invalid probe training settings: {self}")


@dataclass
class ClassScore:
    """mean_prob: mean probability of the intended class; top1: accuracy; probs [N] per video."""

    mean_prob: float
    top1: float
    probs: Tensor


class LinearProbe(nn.Module):
    """Standardise features [N, D] with training statistics, then one linear layer -> logits [N, K]."""

    def __init__(self, config: ProbeConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("feature_mean", torch.zeros(config.feature_dim))
        self.register_buffer("feature_std", torch.ones(config.feature_dim))
        self.linear = nn.Linear(config.feature_dim, len(config.class_names))

    def forward(self, features: Tensor) -> Tensor:
        if features.ndim != 2 or features.shape[1] != self.config.feature_dim:
            raise ValueError(f"probe expects features [N, {self.config.feature_dim}], got {tuple(features.shape)}")
        return self.linear((features - self.feature_mean) / self.feature_std)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``directory/config.json`` and ``directory/model.safetensors`` (each under a temporary name,
        renamed when complete; the folder is created if missing)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"class_names": list(self.config.class_names), "feature_dim": self.config.feature_dim}
        part = directory / "config.json.part"
        part.write_text(to_json_text(config))
        part.replace(directory / "config.json")
        part = directory / "model.safetensors.part"
        save_safetensors(self.state_dict(), part)  # byte-reproducible
        part.replace(directory / "model.safetensors")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> LinearProbe:
        """Load a probe saved by :meth:`save_pretrained`; ``FileNotFoundError`` if a file is missing,
        ``ValueError`` if ``config.json`` is malformed."""
        directory = Path(directory)
        if not (directory / "config.json").is_file() or not (directory / "model.safetensors").is_file():
            raise FileNotFoundError(f"{directory} lacks config.json or model.safetensors of a class probe")
        try:
            raw = json.loads((directory / "config.json").read_text())
            config = ProbeConfig(class_names=tuple(raw["class_names"]), feature_dim=int(raw["feature_dim"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{directory / 'config.json'}: not a class probe config ({err!r})") from None
        probe = cls(config)
        probe.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
        return probe.eval()


def _check_labels(features: Tensor, labels: Tensor, num_classes: int) -> None:
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"need features [N, D] and labels [N], got {tuple(features.shape)}, {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be integers in [0, {num_classes}), got {labels.dtype} "
                         f"in [{labels.min().item()}, {labels.max().item()}]")


def train_probe(
    features: Tensor, labels: Tensor, class_names: list[str] | tuple[str, ...],
    config: ProbeTrainConfig | None = None, progress: bool = False,
) -> LinearProbe:
    """Fit a linear probe on features [N, D] with labels [N] (class indices into class_names)."""
    config = config or ProbeTrainConfig()
    probe = LinearProbe(ProbeConfig(class_names=tuple(class_names), feature_dim=features.shape[-1]))
    _check_labels(features, labels, len(class_names))
    features, labels = features.float().cpu(), labels.long().cpu()
    generator = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        probe.feature_mean.copy_(features.mean(0))
        probe.feature_std.copy_(features.std(0, unbiased=False).clamp_min(1e-6))
        nn.init.normal_(probe.linear.weight, std=0.01, generator=generator)
        nn.init.zeros_(probe.linear.bias)
    fit_cross_entropy(probe, lambda epoch: features, labels, config.epochs, config.batch_size, config.lr,
                      config.weight_decay, generator, "probe", progress)
    return probe.eval()


def fit_cross_entropy(model: nn.Module, inputs: Callable[[int], Tensor], labels: Tensor, epochs: int,
                      batch_size: int, lr: float, weight_decay: float, generator: torch.Generator, desc: str,
                      progress: bool = False) -> None:
    """Train a classifier in place: AdamW (``lr``, ``weight_decay``) on the mean cross-entropy of
    ``model(x[batch])`` against ``labels[batch]`` (int64 ``[N]``), where ``x = inputs(epoch)`` (``[N, ...]``) is
    what epoch ``epoch`` trains on, in an order drawn from ``generator`` each epoch, ``batch_size`` rows a step;
    a progress bar named ``desc``. Shared by the linear probe, the clip classifier and the silhouette classifier."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(labels)
    for epoch in tqdm(range(epochs), desc=desc, disable=not progress):
        x = inputs(epoch)
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(x[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


@torch.no_grad()
def class_score(probe: LinearProbe, features: Tensor, labels: Tensor) -> ClassScore:
    """Score videos (their I3D features [N, D]) against the classes they should show (labels [N])."""
    _check_labels(features, labels, len(probe.config.class_names))
    device = probe.linear.weight.device
    probs = probe(features.float().to(device)).softmax(-1).cpu()
    labels = labels.long().cpu()
    intended = probs.gather(1, labels[:, None])[:, 0]
    top1 = (probs.argmax(-1) == labels).float().mean().item()
    return ClassScore(mean_prob=intended.mean().item(), top1=top1, probs=intended)


def list_labelled_videos(root: str | Path) -> tuple[list[Path], list[str]]:
    """Videos under root/<class>/ (sorted) and their class names."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no dataset folder at {root}")
    paths, names = [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in VIDEO_SUFFIXES:
                paths.append(path)
                names.append(class_dir.name)
    if not paths:
        raise ValueError(f"{root} has no videos in class sub-folders ({sorted(VIDEO_SUFFIXES)})")
    return paths, names


def class_labels(names: list[str], class_names: list[str] | tuple[str, ...]) -> Tensor:
    """Indices ``[N]`` (int64) of each of ``names`` in ``class_names``; ``ValueError`` naming unknown names."""
    unknown = sorted(set(names) - set(class_names))
    if unknown:
        raise ValueError(f"classes unknown to the probe: {unknown} (it knows {list(class_names)})")
    return torch.tensor([list(class_names).index(n) for n in names], dtype=torch.int64)


@torch.no_grad()
def embed_videos(
    model: I3D, paths: list[Path], num_frames: int = 16, start: int = 0, progress: bool = True,
    fps: float | None = None,
) -> Tensor:
    """Pooled I3D features [N, 1024] of frames start..start+num_frames-1 of each video (counted at ``fps``,
    default every frame), one at a time."""
    device = next(model.parameters()).device
    feats = [model(read_clip(p, num_frames, start, fps=fps)[None].to(device)).features.cpu()
             for p in tqdm(paths, desc="I3D features", disable=not progress)]
    return torch.cat(feats)
