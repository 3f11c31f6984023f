"""Pure helpers: the learning-rate schedule and the EMA update."""

from __future__ import annotations

import math

import torch


def lr_at(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based): linear warm-up over ``warmup`` steps,
    then cosine decay from 1 to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def update_ema(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * params``, in place."""
    torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - decay)
