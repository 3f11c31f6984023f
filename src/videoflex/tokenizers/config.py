"""Config dataclasses the tokenizer kinds share (``tokenizers/flex``, ``tokenizers/grid``): a transformer stack,
the FSQ levels, the flow decoder's training objective, and the chunk geometry of a video (frame size, chunks,
latent grid) with its checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from videoflex.nn.fsq import BOUNDS, residual_problem
from videoflex.utils.dataclass_io import HASH_SINCE, check_positive
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
class FSQConfig:
    """Finite scalar quantisation levels; the codebook has ``prod(levels)`` entries.

    bound: how a channel's value is squashed into its levels before rounding (:class:`~videoflex.nn.fsq.FSQ`):
        ``"tanh"`` (FSQ's and the paper's bound) or ``"clip"`` (a uniform quantiser: values in [-1, 1] round
        to the nearest level; not in the paper, for codes started from a linear code,
        :mod:`videoflex.tokenizers.flex.pca`).
    residuals: pairs ``(token, source)``: token ``token`` holds token ``source``'s rounding error, rounded
        again at ``L - 1`` times finer steps (residual tokens, :class:`~videoflex.nn.fsq.FSQ`); needs
        ``bound="clip"``; ``()``: none (the paper's FSQ).
    temporal_prediction: each step's codes predicted from the step before (closed-loop DPCM per token and
        channel, :class:`~videoflex.nn.fsq.FSQ` ``predicted_tokens``; gains and scales fitted with the linear
        code, :func:`~videoflex.tokenizers.flex.pca.fit_linear_paths`); needs ``bound="clip"``; ``False``:
        none (the paper's FSQ).
    full_range_restarts: with temporal prediction, round a step predicted from nothing (a chunk's first step)
        over its coefficients' whole range rather than at the prediction's scale (:class:`~videoflex.nn.fsq.FSQ`
        ``full_range_restarts``; ``False``: the prediction's scale, as the models made before this option).
    """

    levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    bound: str = field(default="tanh", metadata={HASH_SINCE: "2026-12"})
    residuals: tuple[tuple[int, int], ...] = field(default=(), metadata={HASH_SINCE: "2026-12-07"})
    temporal_prediction: bool = field(default=False, metadata={HASH_SINCE: "2026-12-07 (temporal prediction)"})
    full_range_restarts: bool = field(default=False, metadata={HASH_SINCE: "2026-12-07 (colour token)"})

    def __post_init__(self) -> None:
        if not self.levels or any(level < 2 for level in self.levels):
            raise ValueError(f"FSQConfig: every level must be >= 2, got {self.levels}")
        if self.bound not in BOUNDS:
            raise ValueError(f"FSQConfig: bound must be one of {BOUNDS}, got {self.bound!r}")
        problem = residual_problem(self.residuals, self.bound)
        if problem is not None:
            raise ValueError(f"FSQConfig: {problem}")
        if self.full_range_restarts and not self.temporal_prediction:
            raise ValueError("FSQConfig: full_range_restarts is an option of temporal prediction "
                             "(temporal_prediction=True)")
        if self.temporal_prediction and self.bound != "clip":
            raise ValueError(f"FSQConfig: temporal prediction needs the uniform bound (bound='clip'), got "
                             f"bound={self.bound!r}")

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


class ChunkGeometry:
    """What a chunked tokenizer's config derives from its ``image_size``, ``vae``, ``chunk_frames`` and
    ``chunk_overlap`` fields (a mixin of the kinds' frozen config dataclasses), and the checks of those fields."""

    image_size: tuple[int, int]
    vae: VAEConfig
    chunk_frames: int
    chunk_overlap: int

    def check_geometry(self, owner: str, patch_sizes: tuple[int, ...]) -> None:
        """Raise ``ValueError`` (prefixed with ``owner``) unless the chunks are ``1 + tf*m`` frames with a
        smaller overlap of that form, and the frame size is divisible by the VAE factor x each patch size."""
        check_positive(owner, chunk_frames=self.chunk_frames, chunk_overlap=self.chunk_overlap)
        tf = self.vae.temporal_factor
        for name in ("chunk_frames", "chunk_overlap"):
            value = getattr(self, name)
            if (value - 1) % tf:
                raise ValueError(f"{owner}: {name} must be 1 + {tf}*m for the VAE, got {value}")
        if self.chunk_overlap >= self.chunk_frames:
            raise ValueError(f"{owner}: chunk_overlap must be smaller than chunk_frames")
        for patch_size in patch_sizes:
            factor = self.vae.spatial_factor * patch_size
            if self.image_size[0] % factor or self.image_size[1] % factor:
                raise ValueError(f"{owner}: image_size {self.image_size} is not divisible by "
                                 f"VAE factor x patch size = {factor}")

    @property
    def chunk_steps(self) -> int:
        """Latent steps in a full chunk (the position tables have this many rows)."""
        return 1 + (self.chunk_frames - 1) // self.vae.temporal_factor

    @property
    def overlap_steps(self) -> int:
        """Latent steps a later chunk shares with the previous one (its first steps, not kept)."""
        return 1 + (self.chunk_overlap - 1) // self.vae.temporal_factor

    @property
    def latent_size(self) -> tuple[int, int]:
        sf = self.vae.spatial_factor
        return self.image_size[0] // sf, self.image_size[1] // sf
