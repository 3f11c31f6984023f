"""Rectified flow: the training objective and the samplers, with the same time convention.

``x_s = s * eps + (1 - s) * x0`` for ``s`` in [0, 1] (s = 1: pure noise, s = 0: data); the network
predicts the velocity ``v = eps - x0 = dx_s/ds``. Sampling integrates from s = 1 down to s = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

MIN_DATA_PREDICTION_TIME = 0.05
"""A data-predicting decoder's velocity is ``(x_s - x0) / max(s, this)`` and its loss weight ``max(s, this)^2``
(docs/design.md, "Training"; [choice]: bounds the velocity near s = 0, where the decoder sees clean data)."""

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


def data_to_velocity(x_s: torch.Tensor, x0: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The velocity ``(x_s - x0) / max(s, MIN_DATA_PREDICTION_TIME)`` of a data prediction ``x0`` ``[B,C,t,h,w]``
    at flow times ``s`` ``[B]`` or per step ``[B,t]``."""
    s = s if s.dim() == 2 else s[:, None]  # [B,t|1] -> broadcast over [B,C,t,h,w]
    return (x_s - x0) / s.clamp_min(MIN_DATA_PREDICTION_TIME)[:, None, :, None, None]


def nested_budgets(num_registers: int) -> tuple[int, ...]:
    """The token budgets of nested dropout: ``1, 2, 4, ...`` (powers of two) up to ``num_registers``, which is
    included if it is not one."""
    choices = [1 << i for i in range(num_registers.bit_length()) if (1 << i) <= num_registers]
    return tuple(choices if choices[-1] == num_registers else [*choices, num_registers])


def nested_keep(batch: int, num_registers: int, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-clip token budgets drawn uniformly from :func:`nested_budgets`, ``[B]`` int64."""
    choices = nested_budgets(num_registers)
    table = torch.tensor(choices, device=device)
    return table[torch.randint(len(choices), (batch,), generator=generator, device=device)]


# ----------------------------------------------------------------------------------------------- sampling

def time_grid(steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniform grid ``s_i = i / steps`` from s = 1 down to s = 0, ``[steps + 1]``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.arange(steps, -1, -1, device=device, dtype=torch.float32) / steps


@dataclass(frozen=True)
class SamplerConfig:
    """How a flow decoder integrates from noise (s = 1) to data (s = 0): the one set of sampler settings.

    The defaults are the released VideoFlexTok models' README settings: Euler, 30 steps, APG with
    guidance 20, threshold 0.6, eta 0, momentum 0.

    steps: intervals of the uniform time grid (>= 1).
    method: ``"euler"`` (one evaluation a step) or ``"heun"`` (two; second order).
    guidance: classifier-free guidance scale w >= 0 (1 = no guidance; ``v = v_u + w (v_c - v_u)``).
    guidance_method: ``"cfg"`` (plain) or ``"apg"`` (adaptive projected guidance, arXiv 2410.02416).
    apg_threshold: cap on the norm of ``v_c - v_u``, taken per channel over (T, H, W) (> 0; ``inf``: none).
    apg_eta: weight of the component of ``v_c - v_u`` parallel to ``v_c`` (0 drops it, 1 keeps it).
    apg_momentum: running average of ``v_c - v_u`` across steps (0 = none; negative values as in the paper).
    With ``apg_threshold = inf``, ``apg_eta = 1`` and ``apg_momentum = 0`` APG equals plain CFG.
    """

    steps: int = 30
    method: Literal["euler", "heun"] = "euler"
    guidance: float = 20.0
    guidance_method: Literal["cfg", "apg"] = "apg"
    apg_threshold: float = 0.6
    apg_eta: float = 0.0
    apg_momentum: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"SamplerConfig: steps must be an integer >= 1, got {self.steps!r}")
        if self.method not in ("euler", "heun"):
            raise ValueError(f"SamplerConfig: method must be 'euler' or 'heun', got {self.method!r}")
        if self.guidance_method not in ("cfg", "apg"):
            raise ValueError(f"SamplerConfig: guidance_method must be 'cfg' or 'apg', got {self.guidance_method!r}")
        if not (self.guidance >= 0 and math.isfinite(self.guidance)):
            raise ValueError(f"SamplerConfig: guidance must be a finite number >= 0, got {self.guidance}")
        if not self.apg_threshold > 0:
            raise ValueError(f"SamplerConfig: apg_threshold must be > 0, got {self.apg_threshold}")
        for name in ("apg_eta", "apg_momentum"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"SamplerConfig: {name} must be finite, got {getattr(self, name)}")

    @property
    def guided(self) -> bool:
        """Whether sampling needs the unconditional branch (``guidance != 1``)."""
        return self.guidance != 1.0


def guide(config: SamplerConfig, v_cond: torch.Tensor, v_uncond: torch.Tensor,
          running: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Guided velocity from ``[B,C,t,h,w]`` predictions; returns (velocity, new running average).

    CFG: ``v_u + w (v_c - v_u)``. APG (arXiv 2410.02416): the difference ``v_c - v_u`` is optionally
    averaged over steps with ``apg_momentum``, its norm per channel over (T, H, W) capped at
    ``apg_threshold``, its component parallel to ``v_c`` weighted by ``apg_eta``; then
    ``v = v_c + (w - 1) * update``.
    """
    diff = v_cond - v_uncond
    if config.guidance_method == "cfg":
        return v_uncond + config.guidance * diff, None
    if config.apg_momentum != 0.0:
        diff = diff + config.apg_momentum * running if running is not None else diff
        running = diff
    dims = (2, 3, 4)
    norm = torch.linalg.vector_norm(diff, dim=dims, keepdim=True)
    diff = diff * torch.clamp(config.apg_threshold / norm.clamp_min(1e-12), max=1.0)
    # the projection runs in float64, as the reference implementation
    unit = torch.nn.functional.normalize(v_cond.double().flatten(2), dim=-1).view(v_cond.shape)
    parallel = (diff.double() * unit).sum(dim=dims, keepdim=True) * unit
    orthogonal = diff.double() - parallel
    update = (orthogonal.to(diff.dtype) + config.apg_eta * parallel.to(diff.dtype))
    return v_cond + (config.guidance - 1.0) * update, running


@dataclass(frozen=True)
class FixedPrefix:
    """Clean latents ``[B,C,c,h,w]`` written into the first ``c`` latent steps before every evaluation."""

    latents: torch.Tensor

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        c = self.latents.shape[2]
        return torch.cat([self.latents.to(x.dtype), x[:, :, c:]], dim=2)


def sample(velocity: VelocityFn, noise: torch.Tensor, config: SamplerConfig,
           prefix: FixedPrefix | None = None) -> torch.Tensor:
    """Integrate ``dx/ds = v`` from ``noise`` at s = 1 to s = 0 on a uniform grid; returns x at s = 0.

    When ``config.guided``, ``velocity`` is called once per evaluation on the batch ``[x; x]`` and must
    return the conditional predictions first and the unconditional ones second (one batched forward).
    """
    grid = time_grid(config.steps, noise.device)
    running: torch.Tensor | None = None

    def evaluate(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        nonlocal running
        if prefix is not None:
            x = prefix.apply(x)
        s_batch = s.expand(x.shape[0])
        if not config.guided:
            return velocity(x, s_batch)
        v_cond, v_uncond = velocity(torch.cat([x, x]), torch.cat([s_batch, s_batch])).chunk(2)
        v, running = guide(config, v_cond, v_uncond, running)
        return v

    x = noise
    for i in range(config.steps):
        s, s_next = grid[i], grid[i + 1]
        v = evaluate(x, s)
        x_next = x + (s_next - s) * v
        if config.method == "heun":
            x_next = x + (s_next - s) * 0.5 * (v + evaluate(x_next, s_next))
        x = x_next
    return prefix.apply(x) if prefix is not None else x
