"""Typed configuration of the 3D-grid tokenizer (kind ``grid-tokenizer``): one FSQ token per latent patch.

The baseline of the paper's central comparison (docs/design.md, "Model families"): everything but the token
structure is the flex tokenizer's (VAE interface, FSQ vocabulary, transformer blocks, chunking, the flow
decoder's objective and sampler), so a comparison at equal size isolates what the coarse-to-fine 1D tokens buy.

Decoder choice [choice]: a rectified-flow decoder conditioned on the grid tokens, not a direct (regression)
decoder. With the same objective, time distribution and sampler as the flex decoder the two tokenizers differ
only in what their tokens are; a direct decoder would change the objective too and confound the comparison.
A flow decoder trained only near pure noise and decoded in one step (the CPU presets' recipe) is a regression
decoder anyway, so the direct decoder is the special case ``loss.time_mean`` large, ``sampler.steps`` 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from videoflex.nn.flow import SamplerConfig
from videoflex.tokenizers.config import ChunkGeometry, FSQConfig, LossConfig, TransformerConfig
from videoflex.vae.config import VAEConfig


@dataclass(frozen=True)
class GridEncoderConfig(TransformerConfig):
    """The grid encoder: a transformer over the latent patches (mask: time-block-causal), each patch's output
    mapped linearly to the FSQ dimension (one token per patch).

    code_init_std: initial std of the projection to the FSQ dimension (0: the released flex models' zero
        init, every token starts at the same code; see the flex ``EncoderConfig``).
    """

    code_init_std: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.code_init_std >= 0:
            raise ValueError(f"GridEncoderConfig: code_init_std must be >= 0, got {self.code_init_std}")


@dataclass(frozen=True)
class GridDecoderConfig(TransformerConfig):
    """The rectified-flow decoder: noised latent patches plus the embedding of each patch's token, adaLN-zero
    blocks on the flow time (docs/design.md, "Tokenizer blocks").

    attention: ``"block_causal"`` (a step sees itself and earlier steps, the first training stage) or
        ``"full"`` (bidirectional; the ``decoder`` training stage switches to it).
    timestep_scale: flow times s in [0, 1] are multiplied by this before the sinusoidal embedding (the flex
        decoder's 1000).
    prediction: ``"velocity"`` (v = eps - x0) or ``"data"`` (x0, turned into the velocity
        ``(x_s - x0) / max(s, 0.05)`` and trained on the data-space error), as the flex ``DecoderConfig``.
    zero_init_input: start the projection of the noised latents at zero (for decoders trained near s = 1: a
        patch then starts from its position and its token alone), as the flex ``DecoderConfig``.
    """

    attention: Literal["block_causal", "full"] = "block_causal"
    timestep_scale: float = 1000.0
    prediction: Literal["velocity", "data"] = "velocity"
    zero_init_input: bool = False


def default_loss() -> LossConfig:
    """The grid's flow objective: the flex defaults without nested dropout."""
    return LossConfig(nested_dropout=False)


@dataclass(frozen=True)
class GridTokenizerConfig(ChunkGeometry):
    """The whole grid tokenizer.

    image_size: (H, W) of the videos the model takes.
    vae: the frozen VAE (the same interface and kinds as the flex tokenizer's).
    encoder, decoder: the two transformers; their ``patch_size`` must be equal, since every latent patch is
        one token: a step has ``(h / p) * (w / p)`` tokens, ``h x w`` the latent grid.
    fsq: the quantiser's levels (the vocabulary; the same as the flex model it is compared with).
    chunk_frames, chunk_overlap, sample_posterior: as the flex ``TokenizerConfig`` (chunks of ``1 + tf*m``
        frames; later chunks decoded conditioned on the shared frames).
    sampler: the default decoding sampler.
    loss: the flow objective; ``nested_dropout`` must be off (a grid has no prefix to train).
    """

    name: str
    image_size: tuple[int, int]
    vae: VAEConfig
    encoder: GridEncoderConfig
    decoder: GridDecoderConfig
    fsq: FSQConfig = field(default_factory=FSQConfig)
    chunk_frames: int = 17
    chunk_overlap: int = 1
    sample_posterior: bool = False
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    loss: LossConfig = field(default_factory=default_loss)

    def __post_init__(self) -> None:
        if self.fsq.temporal_prediction:
            raise ValueError("GridTokenizerConfig: temporal prediction (fsq.temporal_prediction) belongs to a flex "
                             "tokenizer's linear code; a grid tokenizer takes plain FSQ")
        if self.fsq.residuals:
            raise ValueError("GridTokenizerConfig: residual tokens (fsq.residuals) refine a flex tokenizer's "
                             "registers; a grid tokenizer's tokens are its patches")
        if self.encoder.patch_size != self.decoder.patch_size:
            raise ValueError(f"GridTokenizerConfig: encoder and decoder patch sizes must be equal (one token per "
                             f"patch), got {self.encoder.patch_size} and {self.decoder.patch_size}")
        self.check_geometry("GridTokenizerConfig", (self.encoder.patch_size,))
        if self.loss.nested_dropout:
            raise ValueError("GridTokenizerConfig: loss.nested_dropout must be false: a prefix of a step's grid "
                             "tokens is not a coarser description, so the decoder always gets every token")

    @property
    def grid(self) -> tuple[int, int]:
        """``(h / p, w / p)``: the token grid of one latent step."""
        h, w = self.latent_size
        p = self.encoder.patch_size
        return h // p, w // p

    @property
    def tokens_per_step(self) -> int:
        """N = ``(h / p) * (w / p)`` tokens per latent step."""
        return self.grid[0] * self.grid[1]
