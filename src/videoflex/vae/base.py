"""The interface every video autoencoder of videoflex implements."""

from __future__ import annotations

import abc

import torch
from torch import nn

from videoflex.vae.config import VAEConfig


class VideoVAE(nn.Module, abc.ABC):
    """A causal video autoencoder.

    Videos are float ``[B, 3, T, H, W]`` in ``[-1, 1]`` with ``T = 1 + tf * m``; latents are
    ``[B, C, 1 + m, H / sf, W / sf]``. Latent step 0 depends on frame 0 only and latent step ``i > 0``
    on frames ``<= tf * i`` (causal), so a clip can be encoded in pieces.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def temporal_factor(self) -> int:
        return self.config.temporal_factor

    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_factor

    @property
    def causal(self) -> bool:
        return True

    def latent_steps(self, num_frames: int) -> int:
        """Latent time steps of a clip of ``num_frames = 1 + tf * m`` frames."""
        self.check_num_frames(num_frames)
        return 1 + (num_frames - 1) // self.temporal_factor

    def frames_for(self, latent_steps: int) -> int:
        """Frames decoded from ``latent_steps`` latent time steps."""
        return 1 + (latent_steps - 1) * self.temporal_factor

    def check_num_frames(self, num_frames: int) -> None:
        if num_frames < 1 or (num_frames - 1) % self.temporal_factor:
            raise ValueError(
                f"the VAE encodes 1 + {self.temporal_factor}*m frames (1, {1 + self.temporal_factor}, "
                f"{1 + 2 * self.temporal_factor}, ...); got {num_frames}"
            )

    @abc.abstractmethod
    def encode(self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B,3,T,H,W]`` in [-1,1] -> latents ``[B,C,t,h,w]``; ``sample`` draws from the posterior
        (with ``generator``) instead of returning its mean."""

    @abc.abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[B,C,t,h,w]`` -> video ``[B,3,1+tf*(t-1),H,W]``."""


def pad_first_frame(video: torch.Tensor, count: int) -> torch.Tensor:
    """Prepend ``count`` copies of frame 0: ``[B,C,T,H,W] -> [B,C,T+count,H,W]`` (causal first-frame trick)."""
    if count == 0:
        return video
    return torch.cat([video[:, :, :1].expand(-1, -1, count, -1, -1), video], dim=2)
