"""Rectified flow: the training objective and the samplers, with the same time convention.

``x_s = s * eps + (1 - s) * x0`` for ``s`` in [0, 1] (s = 1: pure noise, s = 0: data); the network
predicts the velocity ``v = eps - x0 = dx_s/ds``. Sampling integrates from s = 1 down to s = 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B,...], s [B]) -> v [B,...]


# ----------------------------------------------------------------------------------------------- training

def logit_normal_time(batch: int, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """Flow times ``s = sigmoid(N(mean, std))``, ``[B]``."""
    return torch.sigmoid(mean + std * torch.randn(batch, generator=generator, device=device))


def interpolate(x0: torch.Tensor, noise: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``x_s = s * noise + (1 - s) * x0``, with ``s [B]`` broadcast over the other axes."""
    s = s.reshape(-1, *([1] * (x0.dim() - 1)))
    return s * noise + (1 - s) * x0


def flow_loss(v_pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor,
              step_weight: torch.Tensor | None = None, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error to the target ``noise - x0`` over ``[B,C,t,h,w]``: the mean over samples of
    each sample's mean error (so a batch split across processes averages to the same value).

    step_weight: ``[B,t]`` 0/1 weights (0 = clean conditioning step, left out of the loss).
    sample_weight: ``[B]`` weights of the samples' errors.
    """
    err = (v_pred.float() - (noise - x0).float()).pow(2).mean(dim=(1, 3, 4))  # [B,t]
    if step_weight is None:
        per_sample = err.mean(dim=1)
    else:
        per_sample = (err * step_weight).sum(dim=1) / step_weight.sum(dim=1).clamp_min(1)
    if sample_weight is not None:
        per_sample = per_sample * sample_weight
    return per_sample.mean()


def nested_keep(batch: int, num_registers: int, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-clip token budgets drawn uniformly from ``{1, 2, 4, ..., num_registers}`` (powers of two,
    plus ``num_registers`` itself if it is not one), ``[B]`` int64."""
    choices = [1 << i for i in range(num_registers.bit_length()) if (1 << i) <= num_registers]
    if choices[-1] != num_registers:
        choices.append(num_registers)
    table = torch.tensor(choices, device=device)
    return table[torch.randint(len(choices), (batch,), generator=generator, device=device)]


# ----------------------------------------------------------------------------------------------- sampling

def time_grid(steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniform grid ``s_i = i / steps`` from s = 1 down to s = 0, ``[steps + 1]``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.arange(steps, -1, -1, device=device, dtype=torch.float32) / steps


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance ``v = v_u + scale (v_c - v_u)``, plain or adaptive-projected (APG).

    APG (arXiv 2410.02416): the difference ``v_c - v_u`` is optionally averaged over steps with
    ``momentum``, its norm per channel over (T, H, W) is capped at ``threshold``, and its component
    parallel to ``v_c`` is weighted by ``eta``; then ``v = v_c + (scale - 1) * update``.
    With ``threshold = inf``, ``eta = 1`` and ``momentum = 0`` APG equals plain CFG.
    """

    scale: float
    method: str = "cfg"  # "cfg" or "apg"
    threshold: float = float("inf")
    eta: float = 1.0
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in ("cfg", "apg"):
            raise ValueError(f"guidance method must be 'cfg' or 'apg', got {self.method!r}")

    def combine(self, v_cond: torch.Tensor, v_uncond: torch.Tensor,
                running: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Guided velocity from ``[B,C,t,h,w]`` predictions; returns (velocity, new running average)."""
        diff = v_cond - v_uncond
        if self.method == "cfg":
            return v_uncond + self.scale * diff, None
        if self.momentum != 0.0:
            diff = diff + self.momentum * running if running is not None else diff
            running = diff
        dims = (2, 3, 4)
        norm = torch.linalg.vector_norm(diff, dim=dims, keepdim=True)
        diff = diff * torch.clamp(self.threshold / norm.clamp_min(1e-12), max=1.0)
        # the projection runs in float64, as the reference implementation
        unit = torch.nn.functional.normalize(v_cond.double().flatten(2), dim=-1).view(v_cond.shape)
        parallel = (diff.double() * unit).sum(dim=dims, keepdim=True) * unit
        orthogonal = diff.double() - parallel
        update = (orthogonal.to(diff.dtype) + self.eta * parallel.to(diff.dtype))
        return v_cond + (self.scale - 1.0) * update, running


@dataclass(frozen=True)
class FixedPrefix:
    """Clean latents ``[B,C,c,h,w]`` written into the first ``c`` latent steps before every evaluation."""

    latents: torch.Tensor

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        c = self.latents.shape[2]
        return torch.cat([self.latents.to(x.dtype), x[:, :, c:]], dim=2)


def sample(velocity: VelocityFn, noise: torch.Tensor, steps: int, method: str = "euler",
           guidance: Guidance | None = None, prefix: FixedPrefix | None = None) -> torch.Tensor:
    """Integrate ``dx/ds = v`` from ``noise`` at s = 1 to s = 0 on a uniform grid; returns x at s = 0.

    With ``guidance``, ``velocity`` is called once per evaluation on the batch ``[x; x]`` and must return the
    conditional predictions first and the unconditional ones second (one batched forward).
    method: ``"euler"`` (one evaluation a step) or ``"heun"`` (two; second-order).
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"sampler method must be 'euler' or 'heun', got {method!r}")
    grid = time_grid(steps, noise.device)
    running: torch.Tensor | None = None

    def evaluate(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        nonlocal running
        if prefix is not None:
            x = prefix.apply(x)
        s_batch = s.expand(x.shape[0])
        if guidance is None:
            return velocity(x, s_batch)
        v_cond, v_uncond = velocity(torch.cat([x, x]), torch.cat([s_batch, s_batch])).chunk(2)
        v, running = guidance.combine(v_cond, v_uncond, running)
        return v

    x = noise
    for i in range(steps):
        s, s_next = grid[i], grid[i + 1]
        v = evaluate(x, s)
        x_next = x + (s_next - s) * v
        if method == "heun":
            x_next = x + (s_next - s) * 0.5 * (v + evaluate(x_next, s_next))
        x = x_next
    return prefix.apply(x) if prefix is not None else x
