"""Configuration of the frozen video autoencoders behind the tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class VAEConfig:
    """A causal video autoencoder: ``[B,3,T,H,W] <-> [B,C,1+(T-1)/tf, H/sf, W/sf]``.

    kind: ``"vidtok"`` (causal 3D conv KL-VAE, VidTok ``kl_causal_488_16chn`` layout) or
        ``"space_to_depth"`` (parameter-free pixel reshaping, exact inverse; for tests and pixel models).
    latent_channels: C. For ``space_to_depth`` it must equal ``3 * tf * sf * sf``.
    temporal_factor, spatial_factor: tf, sf. The first frame is encoded alone, then groups of ``tf``.
    base_channels, channel_mult, num_res_blocks: conv widths of the VidTok-style VAE (ignored otherwise).
    """

    kind: Literal["vidtok", "space_to_depth"] = "vidtok"
    latent_channels: int = 16
    temporal_factor: int = 4
    spatial_factor: int = 8
    base_channels: int = 128
    channel_mult: tuple[int, ...] = field(default=(1, 2, 4, 4))
    num_res_blocks: int = 2

    def __post_init__(self) -> None:
        if self.temporal_factor < 1 or self.spatial_factor < 1:
            raise ValueError("VAEConfig: temporal_factor and spatial_factor must be >= 1")
        if self.kind == "space_to_depth":
            expected = 3 * self.temporal_factor * self.spatial_factor**2
            if self.latent_channels != expected:
                raise ValueError(
                    f"VAEConfig: space_to_depth with factors (t={self.temporal_factor}, "
                    f"s={self.spatial_factor}) has {expected} latent channels, not {self.latent_channels}"
                )
        elif self.kind == "vidtok":
            if 2 ** (len(self.channel_mult) - 1) != self.spatial_factor:
                raise ValueError(
                    f"VAEConfig: vidtok with {len(self.channel_mult)} levels downsamples space by "
                    f"{2 ** (len(self.channel_mult) - 1)}, not spatial_factor={self.spatial_factor}"
                )
            if self.temporal_factor not in (1, 2, 4):
                raise ValueError("VAEConfig: vidtok supports temporal_factor 1, 2 or 4")
