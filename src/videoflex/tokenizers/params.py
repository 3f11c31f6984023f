"""Parameter counts of a flow tokenizer (flex or grid), by part (what the paper's model sizes count)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from videoflex.nn.blocks import GroupModulation


@dataclass(frozen=True)
class ParameterCount:
    vae: int
    encoder: int
    decoder: int
    adaln: int  # decoder modulation linears (the paper's sizes leave them out)

    @property
    def transformer_without_adaln(self) -> int:
        """Encoder + decoder parameters without adaLN: the paper's "~570M" for the K600 d18-d18 model."""
        return self.encoder + self.decoder - self.adaln


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_parameters(model: nn.Module) -> ParameterCount:
    """Count a tokenizer with ``vae``, ``encoder`` and ``decoder`` modules, the decoder's adaLN linears apart
    (:class:`~videoflex.tokenizers.flex.model.VideoFlexTok`, :class:`~videoflex.tokenizers.grid.model.GridTokenizer`;
    works on the meta device)."""
    adaln = sum(_count(m) for m in model.decoder.modules() if isinstance(m, GroupModulation))
    return ParameterCount(_count(model.vae), _count(model.encoder), _count(model.decoder), adaln)
