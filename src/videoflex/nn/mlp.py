"""The gated MLP of the transformers (SwiGLU, Shazeer 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videoflex.nn.fused import JoinedWeights


class SwiGLU(nn.Module):
    """``fc2(silu(fc1(x)) * fc3(x))`` without biases: ``[..., D] -> [..., D]`` through ``hidden`` units."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, width, bias=False)
        self.fc3 = nn.Linear(width, hidden, bias=False)
        self.joined = JoinedWeights()  # [fc1; fc3]: one product for both

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = F.linear(x, self.joined(self.fc1.weight, self.fc3.weight)).chunk(2, dim=-1)
        if torch.is_grad_enabled() and gate.requires_grad:
            return self.fc2(F.silu(gate) * value)
        return self.fc2(F.silu(gate, inplace=True).mul_(value))  # no autograd: in place in the fresh product
