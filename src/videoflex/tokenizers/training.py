"""The random draws of a flow tokenizer's training step and what its training forward returns, shared by the
tokenizer kinds (``tokenizers/flex``, ``tokenizers/grid``) and the tokenizer task (docs/design.md, "Training")."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from videoflex.nn.flow import MIN_DATA_PREDICTION_TIME, flow_loss, interpolate, logit_normal_time, nested_keep
from videoflex.tokenizers.config import LossConfig


@dataclass(frozen=True)
class TrainingDraws:
    """The random choices of one training step, per clip (drawn up front so that a batch split over
    processes or micro-batches sees exactly the draws of the whole batch)."""

    keep: torch.Tensor  # [B] int64, tokens kept per step (nested dropout)
    null: torch.Tensor  # [B] bool, guidance dropout: null condition instead of the tokens
    prefix_steps: torch.Tensor  # [B] int64, clean conditioning steps
    prefix_sigma: torch.Tensor  # [B] noise std on the clean prefix
    s: torch.Tensor  # [B] flow times
    noise: torch.Tensor  # [B,C,t,h,w]

    def __getitem__(self, index: slice) -> TrainingDraws:
        return TrainingDraws(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


@dataclass(frozen=True)
class DecoderOutput:
    """The decoder's prediction and, when asked for, its patch features after one block."""

    velocity: torch.Tensor  # [B,C,t,h,w], v = eps - x0
    features: torch.Tensor | None = None  # [B,t,L,D] patch tokens after block ``feature_block`` (REPA)


@dataclass(frozen=True)
class TrainingOutput:
    """The training objective of one batch and, when asked for, the decoder features REPA aligns."""

    loss: torch.Tensor  # float32 scalar
    features: torch.Tensor | None = None  # [B,t,L,D] decoder patch features after the requested block


def draw_training(config: LossConfig, num_registers: int, latent_shape: tuple[int, ...],
                  generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> TrainingDraws:
    """Draw a step's randomness for latents of shape ``[B,C,t,h,w]`` (docs/design.md, "Training")."""
    b, t = latent_shape[0], latent_shape[2]
    keep = (nested_keep(b, num_registers, generator, device) if config.nested_dropout
            else torch.full((b,), num_registers, device=device))
    uniform = torch.rand(3, b, generator=generator, device=device)
    prefix_steps = torch.where(uniform[1] < config.prefix_prob, min(config.prefix_steps, t - 1), 0)
    s = logit_normal_time(b, config.time_mean, config.time_std, generator, device)
    noise = torch.randn(latent_shape, generator=generator, device=device)
    return TrainingDraws(keep, uniform[0] < config.guidance_dropout, prefix_steps,
                         uniform[2] * config.prefix_noise, s, noise)



@dataclass(frozen=True)
class NoisedLatents:
    """A training step's decoder input: ``x_s`` ``[B,C,t,h,w]`` (clean prefix steps with their small noise, the
    rest on the flow path), the ``noise`` it was made from, and which steps are a clean prefix ``[B,t]``."""

    x_s: torch.Tensor
    noise: torch.Tensor
    is_prefix: torch.Tensor


def noised_latents(latents: torch.Tensor, draws: TrainingDraws) -> NoisedLatents:
    """Clean latents ``[B,C,t,h,w]`` -> the decoder's input under ``draws`` (docs/design.md, "Training")."""
    noise = draws.noise.to(latents.dtype)
    x_s = interpolate(latents, noise, draws.s)
    is_prefix = torch.arange(latents.shape[2], device=latents.device)[None, :] < draws.prefix_steps[:, None]
    clean = latents + draws.prefix_sigma.view(-1, 1, 1, 1, 1).to(latents.dtype) * noise
    return NoisedLatents(torch.where(is_prefix[:, None, :, None, None], clean, x_s), noise, is_prefix)


def flow_objective(velocity: torch.Tensor, latents: torch.Tensor, noised: NoisedLatents, s: torch.Tensor,
                   prediction: str) -> torch.Tensor:
    """The flow loss (float32 scalar) of a predicted ``velocity`` ``[B,C,t,h,w]``, prefix steps left out; a
    data-predicting decoder (``prediction == "data"``) is weighted by ``max(s, 0.05)^2``: the data-space error,
    every noise level alike."""
    weight = None
    if prediction == "data":
        weight = s.clamp_min(MIN_DATA_PREDICTION_TIME).to(torch.float32) ** 2
    return flow_loss(velocity, latents, noised.noise, (~noised.is_prefix).float(), weight)
