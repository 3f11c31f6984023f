"""videoflex: flexible-length coarse-to-fine video tokenization (VideoFlexTok), trainable and fast.

:func:`load_model` loads any model kind from a folder, a released checkpoint or a preset name (see
:mod:`videoflex.registry`); every model has an :attr:`~videoflex.models.pretrained.PretrainedModel.identity`.
"""

from videoflex.models.identity import ModelIdentity
from videoflex.registry import KINDS, PRESETS, load_model
from videoflex.tokenizers.base import Tokenizer, TokenLayout
from videoflex.tokenizers.flex.config import (
    DecoderConfig,
    EncoderConfig,
    FSQConfig,
    LossConfig,
    SamplerConfig,
    TokenizerConfig,
)
from videoflex.tokenizers.flex.model import VideoFlexTok
from videoflex.tokenizers.flex.presets import get_preset
from videoflex.vae.config import VAEConfig

__all__ = [
    "KINDS",
    "PRESETS",
    "DecoderConfig",
    "EncoderConfig",
    "FSQConfig",
    "LossConfig",
    "ModelIdentity",
    "SamplerConfig",
    "TokenLayout",
    "Tokenizer",
    "TokenizerConfig",
    "VAEConfig",
    "VideoFlexTok",
    "get_preset",
    "load_model",
]
