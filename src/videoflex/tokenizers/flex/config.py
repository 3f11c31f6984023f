"""Typed configuration of the VideoFlexTok tokenizer: encoder, quantizer, decoder, sampler, loss (the parts the
tokenizer kinds share, transformer stack, FSQ, loss and chunk geometry, live in :mod:`videoflex.tokenizers.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from videoflex.nn.flow import SamplerConfig
from videoflex.tokenizers.config import ChunkGeometry, FSQConfig, LossConfig, TransformerConfig
from videoflex.utils.dataclass_io import HASH_SINCE, check_positive
from videoflex.vae.config import VAEConfig

__all__ = ["DecoderConfig", "EncoderConfig", "FSQConfig", "LossConfig", "SamplerConfig", "TokenizerConfig",
           "TransformerConfig"]


@dataclass(frozen=True)
class EncoderConfig(TransformerConfig):
    """The register encoder (mask: time-block-causal-last).

    code_init_std: initial std of the projection to the FSQ dimension. 0 is the released models'
        zero init (every token starts at the same code); a small std breaks that symmetry from the
        first step. Too large a std (``1 / sqrt(width)``) saturates the tanh bound of FSQ once the
        features align, and the codes collapse onto a few corners of the grid.
    linear_path: rank r of a linear path beside the transformer (0: none; not in the paper). Each patch
        of a step is projected to r values and all of them mapped linearly to the step's N x code_dim
        values before quantisation, added to the transformer's. With the decoder's (``DecoderConfig``)
        it gives a small model what a linear code of its token budget already reaches (principal
        components beat the earlier 32-token CPU demo model from k = 8 on held-out clips; see ``checkpoints/demo``).
        It is built for the full latent grid of ``image_size``.
    """

    code_init_std: float = 0.0
    linear_path: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.linear_path < 0:
            raise ValueError(f"EncoderConfig: linear_path must be >= 0, got {self.linear_path}")


@dataclass(frozen=True)
class DecoderConfig(TransformerConfig):
    """The rectified-flow decoder.

    attention: ``"block_causal"`` (a step sees itself and earlier steps) or ``"full"`` (bidirectional,
        as the released checkpoints after their second training stage).
    timestep_scale: flow times s in [0, 1] are multiplied by this before the sinusoidal embedding
        (the reference's ``1000 / max_timestep``).
    prediction: what the network outputs. ``"velocity"`` (v = eps - x0 directly, as the released models)
        or ``"data"`` (x0, turned into the velocity ``(x_s - x0) / max(s, 0.05)``). Predicting data is far
        easier when a patch has more values than the width, e.g. pixel-space (space-to-depth) models.
        Such decoders are trained on the data-space error ``|x0_pred - x0|^2`` (the velocity error
        times ``s^2``), which weights every noise level alike; the velocity error alone would weight
        the cleanest inputs by ``1/s^2``, where the tokens matter least.
    register_positions: add a learned embedding per token index and per latent step to the decoder's
        registers. The released models have none: a step's tokens reach their decoder as an unordered set
        (only the encoder orders them); with positions the decoder can tell them apart by index.
    zero_init_input: start the projection of the noised latents at zero. Near pure noise the projected
        noise would swamp the patches' positions, so at the start a patch would not know where it is;
        for decoders trained near s = 1 (their patches then start from their positions alone).
    linear_path: rank r of a linear readout beside the transformer (0: none; not in the paper): each
        register projected to ``code_dim`` values, all of a step's mapped linearly to r values per patch,
        each patch's r values to its latent values, added to the predicted data (so it needs
        ``prediction="data"``; it starts at zero). See ``EncoderConfig.linear_path``.
    linear_input: what the decoder's linear path reads. ``"registers"``: the registers, as above.
        ``"codes"``: the kept FSQ codes themselves (``N x code_dim`` values a step; a dropped, prefix or
        null position reads 0, the code of a zero pre-quantisation value), so that the path can be set
        to the exact inverse of a linear code (``videoflex.tokenizers.flex.pca``) and every prefix of it
        is that code truncated.
    linear_temporal: add to each step's r values a patch a linear map of those of the step before and its
        own (``2r -> r`` per patch, shared by all patches; it starts at zero; not in the paper). A linear
        code rounds each step's coefficients on its own; where a clip changes little from step to step the
        step before carries part of what the rounding and the truncation lost, and the map learns how much
        to take from it (:func:`videoflex.tokenizers.flex.pca.fit_linear_paths` fits it by least squares).
        Causal: step ``t`` reads steps ``t - 1`` and ``t``; not on the first step nor on the step after a
        prefix (conditioning) step, whose codes the path does not read. Needs ``linear_input="codes"``.
    """

    attention: Literal["block_causal", "full"] = "block_causal"
    timestep_scale: float = 1000.0
    prediction: Literal["velocity", "data"] = "velocity"
    register_positions: bool = False
    zero_init_input: bool = False
    linear_path: int = 0
    linear_input: Literal["registers", "codes"] = field(default="registers",
                                                       metadata={HASH_SINCE: "2026-12 (after checkpoints/shapes)"})
    linear_temporal: bool = field(default=False, metadata={HASH_SINCE: "2026-12 (temporal mix)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.linear_path < 0:
            raise ValueError(f"DecoderConfig: linear_path must be >= 0, got {self.linear_path}")
        if self.linear_path and self.prediction != "data":
            raise ValueError("DecoderConfig: linear_path adds to the predicted data; it needs prediction='data'")
        if self.linear_temporal and not (self.linear_path and self.linear_input == "codes"):
            raise ValueError("DecoderConfig: linear_temporal mixes the steps of a linear path that reads codes; it "
                             f"needs linear_path > 0 and linear_input='codes', got linear_path={self.linear_path}, "
                             f"linear_input={self.linear_input!r}")


@dataclass(frozen=True)
class TokenizerConfig(ChunkGeometry):
    """The whole tokenizer.

    image_size: (H, W) of the videos the model was built for (position tables cover this grid; smaller
        sizes divisible by ``spatial_factor * patch_size`` also work).
    chunk_frames: frames per chunk (1 + tf * m; 17 -> 5 latent steps). Longer videos are cut into chunks.
    chunk_overlap: frames shared by consecutive chunks (1 + tf * j); later chunks are decoded
        conditioned on them and their token steps are dropped.
    num_registers: N, tokens per latent step.
    sample_posterior: draw VAE latents from the posterior at encode (as the released code) instead of
        taking its mean.
    colour_token: the token that holds a chunk's colour (``None``: none; not in the paper). In the chunk's
        first step (its first token step, after the steps it shares with the chunk before) this token holds
        ``code_dim`` colour coefficients in place of its own, and wherever the token is kept the decoder's
        linear path moves the colour components of every step of the chunk towards them (all the way in the
        first step, in the others by a gain per kept token count, fitted: the more tokens a step keeps, the
        more of its own colour they carry). A code ordered by squared error puts colour late (little
        variance) and ties it to brightness, so that the first tokens show the training footage's typical
        tints; sent once a chunk, colour comes at the token's budget for every step at the cost of one token
        of the first step, whose own coefficients go to the residual token refining the colour token (if any;
        :class:`~videoflex.nn.fsq.FSQ` ``colour_token``). Needs both linear paths, the decoder's reading codes,
        and ``fsq.temporal_prediction``;
        :func:`~videoflex.tokenizers.flex.pca.fit_linear_paths` fits the colour components (it needs a linear
        VAE) and ``checkpoints/demo/README.md`` has the measurements.
    """

    name: str
    image_size: tuple[int, int]
    vae: VAEConfig
    encoder: EncoderConfig
    decoder: DecoderConfig
    fsq: FSQConfig = field(default_factory=FSQConfig)
    num_registers: int = 256
    chunk_frames: int = 17
    chunk_overlap: int = 1
    sample_posterior: bool = False
    colour_token: int | None = field(default=None, metadata={HASH_SINCE: "2026-12-07 (colour token)"})
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        check_positive("TokenizerConfig", num_registers=self.num_registers)
        if self.fsq.residuals and max(token for token, _ in self.fsq.residuals) >= self.num_registers:
            raise ValueError(f"TokenizerConfig: residual tokens must be below num_registers={self.num_registers}, "
                             f"got fsq.residuals={[list(p) for p in self.fsq.residuals]}")
        self.check_geometry("TokenizerConfig", (self.encoder.patch_size, self.decoder.patch_size))
        if self.colour_token is not None:
            if isinstance(self.colour_token, bool) or not isinstance(self.colour_token, int) \
                    or not 0 <= self.colour_token < self.num_registers:
                raise ValueError(f"TokenizerConfig: colour_token must be a token index in [0, {self.num_registers}) "
                                 f"or None, got {self.colour_token!r}")
            if not (self.encoder.linear_path and self.decoder.linear_path and self.decoder.linear_input == "codes"):
                raise ValueError("TokenizerConfig: colour_token needs both linear paths, the decoder's reading codes "
                                 f"(linear_input='codes'); got encoder.linear_path={self.encoder.linear_path}, "
                                 f"decoder.linear_path={self.decoder.linear_path}, "
                                 f"decoder.linear_input={self.decoder.linear_input!r}")
            if not self.fsq.temporal_prediction:
                raise ValueError("TokenizerConfig: colour_token needs fsq.temporal_prediction (the quantiser then "
                                 "takes a chunk's steps in order and knows its first)")
            if self.colour_token in {token for token, _ in self.fsq.residuals}:
                raise ValueError(f"TokenizerConfig: colour_token {self.colour_token} is a residual token "
                                 f"(fsq.residuals={[list(p) for p in self.fsq.residuals]})")
