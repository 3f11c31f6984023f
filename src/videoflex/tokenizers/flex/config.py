"""Typed configuration of the VideoFlexTok tokenizer: encoder, quantizer, decoder, sampler, loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from videoflex.nn.flow import SamplerConfig
from videoflex.utils.dataclass_io import check_positive
from videoflex.vae.config import VAEConfig


@dataclass(frozen=True)
class TransformerConfig:
    """A transformer stack: ``depth`` blocks of width ``width = heads * head_dim``.

    Blocks are pre-norm with non-affine LayerNorm, QK-norm, SwiGLU MLP of hidden size
    ``int(2 * mlp_ratio * width / 3)``, no biases, no RoPE.

    embedding_init_std: initial std of the learned position tables and registers (the reference's
        0.02). It matters only when training from scratch: at 0.02 the positions are a few percent of a
        patch's content embedding (or of its projected noise), the registers start nearly alike, and a
        short run learns neither where a patch is nor a different role for each register.
    """

    width: int
    depth: int
    head_dim: int = 64
    mlp_ratio: float = 4.0
    patch_size: int = 1
    embedding_init_std: float = 0.02

    def __post_init__(self) -> None:
        check_positive(type(self).__name__, width=self.width, depth=self.depth, head_dim=self.head_dim,
                        mlp_ratio=self.mlp_ratio, patch_size=self.patch_size)
        if self.width % self.head_dim:
            raise ValueError(f"{type(self).__name__}: width {self.width} is not a multiple of head_dim {self.head_dim}")

    @property
    def heads(self) -> int:
        return self.width // self.head_dim

    @property
    def mlp_hidden(self) -> int:
        return int(2 * self.mlp_ratio * self.width / 3)


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
        components beat the CPU demo model from k = 8 on held-out clips; see ``checkpoints/demo``).
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
    """

    attention: Literal["block_causal", "full"] = "block_causal"
    timestep_scale: float = 1000.0
    prediction: Literal["velocity", "data"] = "velocity"
    register_positions: bool = False
    zero_init_input: bool = False
    linear_path: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.linear_path < 0:
            raise ValueError(f"DecoderConfig: linear_path must be >= 0, got {self.linear_path}")
        if self.linear_path and self.prediction != "data":
            raise ValueError("DecoderConfig: linear_path adds to the predicted data; it needs prediction='data'")


@dataclass(frozen=True)
class FSQConfig:
    """Finite scalar quantisation levels; the codebook has ``prod(levels)`` entries."""

    levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)

    def __post_init__(self) -> None:
        if not self.levels or any(level < 2 for level in self.levels):
            raise ValueError(f"FSQConfig: every level must be >= 2, got {self.levels}")

    @property
    def dim(self) -> int:
        return len(self.levels)

    @property
    def codebook_size(self) -> int:
        size = 1
        for level in self.levels:
            size *= level
        return size


@dataclass(frozen=True)
class LossConfig:
    """The decoder's training objective (docs/design.md, "Training").

    time_mean, time_std: flow time s = sigmoid(N(mean, std)) (logit-normal).
    nested_dropout: draw keep k per clip uniformly from {1, 2, 4, ..., N}; otherwise always N.
    guidance_dropout: probability that a clip's registers are all replaced by the null condition.
    prefix_prob: probability that a clip's first ``prefix_steps`` latent steps stay clean (conditioning).
    prefix_noise: the clean prefix gets Gaussian noise of a std drawn uniformly from [0, prefix_noise].
    """

    time_mean: float = 0.0
    time_std: float = 1.0
    nested_dropout: bool = True
    guidance_dropout: float = 0.1
    prefix_prob: float = 0.0
    prefix_steps: int = 1
    prefix_noise: float = 0.02

    def __post_init__(self) -> None:
        for name in ("guidance_dropout", "prefix_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"LossConfig: {name} must lie in [0, 1], got {value}")
        check_positive("LossConfig", time_std=self.time_std, prefix_steps=self.prefix_steps)


@dataclass(frozen=True)
class TokenizerConfig:
    """The whole tokenizer.

    image_size: (H, W) of the videos the model was built for (position tables cover this grid; smaller
        sizes divisible by ``spatial_factor * patch_size`` also work).
    chunk_frames: frames per chunk (1 + tf * m; 17 -> 5 latent steps). Longer videos are cut into chunks.
    chunk_overlap: frames shared by consecutive chunks (1 + tf * j); later chunks are decoded
        conditioned on them and their token steps are dropped.
    num_registers: N, tokens per latent step.
    sample_posterior: draw VAE latents from the posterior at encode (as the released code) instead of
        taking its mean.
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
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        check_positive("TokenizerConfig", num_registers=self.num_registers, chunk_frames=self.chunk_frames,
                        chunk_overlap=self.chunk_overlap)
        tf = self.vae.temporal_factor
        for name in ("chunk_frames", "chunk_overlap"):
            value = getattr(self, name)
            if (value - 1) % tf:
                raise ValueError(f"TokenizerConfig: {name} must be 1 + {tf}*m for the VAE, got {value}")
        if self.chunk_overlap >= self.chunk_frames:
            raise ValueError("TokenizerConfig: chunk_overlap must be smaller than chunk_frames")
        for part in (self.encoder, self.decoder):
            factor = self.vae.spatial_factor * part.patch_size
            if self.image_size[0] % factor or self.image_size[1] % factor:
                raise ValueError(
                    f"TokenizerConfig: image_size {self.image_size} is not divisible by "
                    f"VAE factor x patch size = {factor}"
                )

    @property
    def chunk_steps(self) -> int:
        """Latent steps in a full chunk (the encoder's register table has this many rows)."""
        return 1 + (self.chunk_frames - 1) // self.vae.temporal_factor

    @property
    def overlap_steps(self) -> int:
        """Latent steps a later chunk shares with the previous one (its first steps, not kept)."""
        return 1 + (self.chunk_overlap - 1) // self.vae.temporal_factor

    @property
    def latent_size(self) -> tuple[int, int]:
        sf = self.vae.spatial_factor
        return self.image_size[0] // sf, self.image_size[1] // sf
