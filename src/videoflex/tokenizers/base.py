"""The interface every video tokenizer implements (:class:`Tokenizer`), and how its ids are laid out.

Token files, ``videoflex tokenize / detokenize / reconstruct`` and ``eval recon`` use only this
interface, so a new tokenizer kind (e.g. a 3D-grid baseline) works with them unchanged.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal

import torch

from videoflex.models.identity import ModelIdentity
from videoflex.nn.flow import SamplerConfig
from videoflex.tokenizers.chunking import ChunkPlan

DEFAULT_CHUNK_BATCH = 4
"""Chunks a tokenizer encodes at once by default: enough to batch the VAE and encoder, few enough that the
memory of the largest VAE stays moderate; it does not grow with video length (benchmarks/long_video_memory.py)."""


def check_chunk_batch(chunk_batch: int | None) -> int:
    """``chunk_batch`` (``None``: :data:`DEFAULT_CHUNK_BATCH`) if it is an integer >= 1, else ``ValueError``."""
    if chunk_batch is None:
        return DEFAULT_CHUNK_BATCH
    if isinstance(chunk_batch, bool) or not isinstance(chunk_batch, int) or chunk_batch < 1:
        raise ValueError(f"chunk_batch must be an integer >= 1, got {chunk_batch!r}")
    return chunk_batch


@dataclass(frozen=True)
class TokenLayout:
    """How the ``N`` tokens of one time step are arranged.

    tokens_per_step: N, the ids per latent time step (the last axis of ``[B, t, N]``).
    order: ``"coarse_to_fine"`` (a 1D sequence: any prefix of k tokens is a valid, coarser description)
        or ``"grid"`` (row-major over a spatial grid ``(h, w)`` with ``h * w == N``: a prefix is not).
    grid: ``(h, w)`` for ``"grid"``; ``None`` for ``"coarse_to_fine"``.
    """

    tokens_per_step: int
    order: Literal["coarse_to_fine", "grid"] = "coarse_to_fine"
    grid: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.tokens_per_step < 1:
            raise ValueError(f"TokenLayout: tokens_per_step must be >= 1, got {self.tokens_per_step}")
        if self.order == "grid":
            if self.grid is None or self.grid[0] * self.grid[1] != self.tokens_per_step:
                raise ValueError(f"TokenLayout: a grid layout needs grid (h, w) with h * w = "
                                 f"{self.tokens_per_step}, got {self.grid}")
        elif self.order == "coarse_to_fine":
            if self.grid is not None:
                raise ValueError("TokenLayout: a coarse-to-fine layout has no grid")
        else:
            raise ValueError(f"TokenLayout: order must be 'coarse_to_fine' or 'grid', got {self.order!r}")

    @property
    def prefix_decodable(self) -> bool:
        """Whether the first k < N tokens of each step can be decoded on their own."""
        return self.order == "coarse_to_fine"


class Tokenizer(abc.ABC):
    """Video ``[B,3,T,H,W]`` in [-1, 1] <-> ids int64 ``[B, t, N]`` in ``[0, codebook_size)``.

    ``t`` is the number of latent time steps of the (padded) video, given by :meth:`plan`; ``N`` is
    ``layout.tokens_per_step``. Implementations are ``nn.Module`` s that also give a
    :class:`~videoflex.models.identity.ModelIdentity`.
    """

    @property
    @abc.abstractmethod
    def identity(self) -> ModelIdentity:
        """Kind, config hash and weights hash: what token files record and check."""

    @property
    @abc.abstractmethod
    def codebook_size(self) -> int:
        """Number of distinct ids; every id lies in ``[0, codebook_size)``."""

    @property
    @abc.abstractmethod
    def layout(self) -> TokenLayout:
        """How the tokens of a step are arranged (N, coarse-to-fine or a grid)."""

    @property
    @abc.abstractmethod
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the frames the model takes, in pixels."""

    @property
    @abc.abstractmethod
    def clip_frames(self) -> int:
        """Frames the model encodes at once (a chunk); a natural default clip length."""

    @property
    @abc.abstractmethod
    def sampler(self) -> SamplerConfig | None:
        """The default decoding sampler, or ``None`` when decoding is deterministic (steps and guidance
        of :meth:`detokenize` are then ignored)."""

    @property
    @abc.abstractmethod
    def device(self) -> torch.device:
        """Where the model's weights are."""

    @abc.abstractmethod
    def plan(self, num_frames: int) -> ChunkPlan:
        """How a video of ``num_frames`` frames is padded and chunked; ``plan(T).token_steps`` is ``t``."""

    @abc.abstractmethod
    def check_keep(self, keep: int) -> int:
        """``keep`` if it is a valid token count per step (1..N), else ``ValueError``."""

    @abc.abstractmethod
    def tokenize(self, video: torch.Tensor, generator: torch.Generator | None = None,
                 chunk_batch: int | None = None) -> torch.Tensor:
        """Video float ``[B,3,T,H,W]`` in [-1, 1] at :attr:`image_size` (any float dtype, any device) ->
        ids int64 ``[B, t, N]``. At most ``chunk_batch`` chunks (default :data:`DEFAULT_CHUNK_BATCH`) are
        encoded at once, so memory beyond the input does not grow with T; the ids do not depend on it."""

    @abc.abstractmethod
    def detokenize(self, ids: torch.Tensor, keep: int | None = None, steps: int | None = None,
                   guidance: float | None = None, num_frames: int | None = None,
                   generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
        """ids ``[B, t, n]`` (any device) -> video float32 ``[B,3,T,H,W]`` in [-1, 1] from the first ``keep`` tokens of
        each step (default: all N). ``num_frames`` trims the padding (default: all decoded frames);
        ``steps``/``guidance`` override the sampler; ``generator`` seeds the decoder's noise."""
