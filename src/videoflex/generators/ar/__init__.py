"""The autoregressive generator: config, presets, token orders, model and sampling (class and/or text
conditioned; the text encoder is :mod:`videoflex.generators.text_encoder`)."""

from videoflex.generators.ar.config import ARConfig, TokenizerRef
from videoflex.generators.ar.model import ARGenerator
from videoflex.generators.ar.orders import ORDERS, SequenceLayout, from_sequence, to_sequence
from videoflex.generators.ar.sampling import SamplingConfig, generate

__all__ = ["ORDERS", "ARConfig", "ARGenerator", "SamplingConfig", "SequenceLayout", "TokenizerRef", "from_sequence",
           "generate", "to_sequence"]
