"""A parameter-free "VAE": pixels folded into channels, exactly invertible."""

from __future__ import annotations

import torch
from einops import rearrange

from videoflex.vae.base import VideoVAE, pad_first_frame


class SpaceToDepthVAE(VideoVAE):
    """Folds ``tf x sf x sf`` pixel blocks into channels: ``[B,3,T,H,W] -> [B,3*tf*sf*sf,t,H/sf,W/sf]``.

    Causal like the VidTok VAE: frame 0 is repeated ``tf - 1`` times in front so that latent step 0
    holds frame 0 alone; decoding drops those copies again. ``decode(encode(x)) == x`` exactly.
    """

    def encode(self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        tf, sf = self.temporal_factor, self.spatial_factor
        self.check_num_frames(video.shape[2])
        x = pad_first_frame(video, tf - 1)
        return rearrange(x, "b c (t pt) (h ph) (w pw) -> b (pt ph pw c) t h w", pt=tf, ph=sf, pw=sf)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        tf, sf = self.temporal_factor, self.spatial_factor
        x = rearrange(latents, "b (pt ph pw c) t h w -> b c (t pt) (h ph) (w pw)", pt=tf, ph=sf, pw=sf)
        return x[:, :, tf - 1 :]
