"""videoflex: flexible-length coarse-to-fine video tokenization (VideoFlexTok), trainable and fast."""

from videoflex.tokenizers.flex.config import (
    DecoderConfig,
    EncoderConfig,
    FSQConfig,
    LossConfig,
    SamplerConfig,
    TokenizerConfig,
)
from videoflex.tokenizers.flex.model import VideoFlexTok
from videoflex.tokenizers.flex.presets import PRESETS, get_preset
from videoflex.vae.config import VAEConfig

__all__ = [
    "PRESETS",
    "DecoderConfig",
    "EncoderConfig",
    "FSQConfig",
    "LossConfig",
    "SamplerConfig",
    "TokenizerConfig",
    "VAEConfig",
    "VideoFlexTok",
    "get_preset",
]
