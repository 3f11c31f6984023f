"""REPA: align the decoder's early patch features with a frozen teacher's features (docs/design.md, "REPA").

The decoder's patch outputs after block ``RepaConfig.block`` (``[B,t,L,D]``, L patches a step) go through
:class:`RepaHead`: ``head_depth`` pre-norm transformer blocks under the time-block-causal mask (a step
sees only itself and earlier steps) and a linear map to the teacher's width. The loss is ``1 - cosine``
against the teacher's feature map of the same clip, average-pooled to the decoder's grid ``(t, h', w')``,
averaged over the steps that are in the flow loss (a clean conditioning prefix is left out).

The head is training-only: it is in training checkpoints (so a resumed run continues exactly), never in
the exported model. A teacher is any frozen module ``video [B,3,T,H,W] in [-1,1] -> [B,C,T',H',W']``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videoflex.nn.attention import layer_norm
from videoflex.nn.blocks import Block
from videoflex.nn.masks import attention_mask
from videoflex.train.tasks.tokenizer_config import RepaConfig


class RepaHead(nn.Module):
    """Decoder patch features ``[B,t,L,D]`` -> predicted teacher features ``[B,t,L,C]``."""

    def __init__(self, width: int, head_dim: int, mlp_hidden: int, depth: int, teacher_width: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, head_dim, mlp_hidden, scale=8.0 / head_dim) for _ in range(depth))
        self.out = nn.Linear(width, teacher_width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, t, n, d = features.shape
        mask = attention_mask("time_block_causal", t, 0, n, features.device)
        x = features.reshape(b, t * n, d)
        for block in self.blocks:
            x = block(x, mask)
        return self.out(layer_norm(x)).reshape(b, t, n, -1)


def teacher_targets(features: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """A teacher's feature map ``[B,C,T',H',W']`` -> ``[B,t,h*w,C]`` on the decoder's grid ``(t, h, w)``
    (adaptive average pooling: each cell averages the teacher cells it covers)."""
    if features.ndim != 5:
        raise ValueError(f"a REPA teacher must return a feature map [B,C,T,H,W], got shape {tuple(features.shape)}")
    pooled = F.adaptive_avg_pool3d(features.float(), grid)  # [B,C,t,h,w]
    return pooled.flatten(3).permute(0, 2, 3, 1)


def repa_loss(predicted: torch.Tensor, target: torch.Tensor, in_loss: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cosine`` of ``[B,t,L,C]`` features over the steps where ``in_loss [B,t]`` is true."""
    distance = 1 - F.cosine_similarity(predicted.float(), target.float(), dim=-1).mean(-1)  # [B,t]
    weight = in_loss.float()
    return (distance * weight).sum() / weight.sum().clamp_min(1.0)


class I3DFeatures(nn.Module):
    """The I3D teacher: ``video -> Mixed_4f`` feature map ``[B, 832, ceil(T/4), 14, 14]``."""

    def __init__(self, i3d: nn.Module) -> None:
        super().__init__()
        self.i3d = i3d

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.i3d.feature_map(video)


def build_teacher(config: RepaConfig, device: torch.device) -> nn.Module:
    """The teacher a recipe names, frozen and in eval mode."""
    if config.teacher == "i3d":
        from videoflex.eval.i3d_weights import load_i3d

        return I3DFeatures(load_i3d(config.teacher_weights or None, device)).eval().requires_grad_(False)
    raise ValueError(f"unknown REPA teacher {config.teacher!r} (known: i3d)")


@torch.no_grad()
def teacher_width(teacher: nn.Module, frames: int, size: int, device: torch.device) -> int:
    """The channel count of the teacher's feature map, read off one blank clip."""
    return int(teacher(torch.zeros(1, 3, frames, size, size, device=device)).shape[1])
