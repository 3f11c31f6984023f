"""The autoregressive generator: config, presets, token orders, model and sampling."""

from videoflex.generators.ar.config import ARConfig
from videoflex.generators.ar.model import ARGenerator
from videoflex.generators.ar.orders import ORDERS, SequenceLayout, from_sequence, to_sequence
from videoflex.generators.ar.sampling import SamplingConfig, generate

__all__ = ["ORDERS", "ARConfig", "ARGenerator", "SamplingConfig", "SequenceLayout", "from_sequence", "generate",
           "to_sequence"]
