"""Frozen video autoencoders behind one interface (:class:`VideoVAE`)."""

from videoflex.vae.base import VideoVAE
from videoflex.vae.config import VAEConfig


def build_vae(config: VAEConfig) -> VideoVAE:
    """The autoencoder a config names."""
    if config.kind == "space_to_depth":
        from videoflex.vae.space_to_depth import SpaceToDepthVAE

        return SpaceToDepthVAE(config)
    from videoflex.vae.vidtok import VidTokVAE

    return VidTokVAE(config)


__all__ = ["VAEConfig", "VideoVAE", "build_vae"]
