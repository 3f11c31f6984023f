"""videoflex: flexible-length coarse-to-fine video tokenization (VideoFlexTok), trainable and fast.

:func:`load_model` loads any model kind from a folder, a released checkpoint or a preset name (see
:mod:`videoflex.registry`); every model has an :attr:`~videoflex.models.pretrained.PretrainedModel.identity`.
:func:`read_video` and :func:`write_video` (:mod:`videoflex.io.video`) go from a file to the tensors a
tokenizer takes and back, at the model's frame size and frame rate by default::

    model = videoflex.load_model("checkpoints/demo")
    ids = model.tokenize(videoflex.read_video("clip.mp4", model).video[None])  # [1, t, N] int64
    videoflex.write_video("reconstruction.mp4", model.detokenize(ids, keep=16))
"""

from videoflex.io.video import MODEL_FPS, DecodedVideo, read_video, write_video
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
    "MODEL_FPS",
    "PRESETS",
    "DecodedVideo",
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
    "read_video",
    "write_video",
]
