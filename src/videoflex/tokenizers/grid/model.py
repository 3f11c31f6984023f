"""The 3D-grid tokenizer: video <-> one FSQ token per latent patch, a ``t x h x w`` grid (kind ``grid-tokenizer``).

Pipeline (docs/design.md, "Model families")::

    video [B,3,T,H,W] -> VAE -> latents [B,C,t,h,w] -> GridEncoder -> FSQ -> ids [B,t,(h/p)(w/p)]
    ids -> GridDecoder (rectified flow, guided) -> latents -> VAE -> video

The baseline of the flex tokenizer: the same VAE interface, FSQ vocabulary, blocks, chunking (the chunk loops
of :class:`~videoflex.tokenizers.chunked.ChunkedFlowTokenizer`), flow objective and sampler; only the tokens
differ. A step's ids are row-major over its ``(h/p, w/p)`` patch grid (``TokenLayout(order="grid")``): every id
is needed to decode, so ``keep`` is always N. A generator reads them in raster order (the ids as ``[t, N]``).
"""

from __future__ import annotations

import dataclasses

import torch

from videoflex.nn.flow import FixedPrefix, SamplerConfig, sample
from videoflex.nn.fsq import FSQ
from videoflex.tokenizers.base import TokenLayout
from videoflex.tokenizers.chunked import ChunkedFlowTokenizer
from videoflex.tokenizers.grid.config import GridTokenizerConfig, default_loss
from videoflex.tokenizers.grid.decoder import GridDecoder
from videoflex.tokenizers.grid.encoder import GridEncoder
from videoflex.tokenizers.grid.presets import PRESETS
from videoflex.tokenizers.training import (
    TrainingDraws,
    TrainingOutput,
    draw_training,
    flow_objective,
    noised_latents,
)
from videoflex.utils.finite import check_finite_output
from videoflex.vae import build_vae

KIND = "grid-tokenizer"


class GridTokenizer(ChunkedFlowTokenizer):
    """A frozen VAE, the grid encoder with FSQ (one token per latent patch) and a flow decoder conditioned on
    the token of each patch.

    Model kind ``"grid-tokenizer"``; saving, loading, presets and identity come from
    :class:`~videoflex.models.pretrained.PretrainedModel`, the tokenizer interface and the chunk loops from
    :class:`~videoflex.tokenizers.chunked.ChunkedFlowTokenizer`. Trained by ``videoflex train tokenizer``
    through :meth:`training_forward` (the flex tokenizer's interface).
    """

    kind = KIND
    config_class = GridTokenizerConfig
    presets = PRESETS

    def __init__(self, config: GridTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        latent_channels, steps = config.vae.latent_channels, config.chunk_steps
        self.vae = build_vae(config.vae)
        self.fsq = FSQ(config.fsq.levels, bound=config.fsq.bound)
        self.encoder = GridEncoder(config.encoder, latent_channels, steps, config.latent_size, config.fsq.dim)
        self.decoder = GridDecoder(config.decoder, latent_channels, steps, config.latent_size, config.fsq.dim)
        self.init_weights()

    # ------------------------------------------------------------------------------------ construction

    def init_weights(self) -> None:
        """The flex tokenizer's scheme (:meth:`init_flow_weights`): xavier linears, learned vectors at std
        0.02, positions at ``embedding_init_std``, adaLN-zero, zero head, the code projection at
        ``code_init_std``."""
        enc, dec = self.encoder, self.decoder
        self.init_flow_weights(
            vectors=[dec.prefix_mask_token, dec.null_condition],
            encoder_embeddings=[enc.positions.table_t, enc.positions.table_h, enc.positions.table_w],
            decoder_embeddings=[dec.positions.table_t, dec.positions.table_h, dec.positions.table_w],
        )

    @property
    def num_registers(self) -> int:
        """N, tokens per latent step (one per patch; the name the tokenizer task reads)."""
        return self.config.tokens_per_step

    @property
    def codebook_size(self) -> int:
        return self.fsq.codebook_size

    @property
    def layout(self) -> TokenLayout:
        """N = ``(h/p)(w/p)`` tokens per step, row-major over the patch grid."""
        return TokenLayout(self.config.tokens_per_step, "grid", self.config.grid)

    # ------------------------------------------------------------------------------------ identity

    @classmethod
    def identity_config(cls, config: GridTokenizerConfig) -> GridTokenizerConfig:
        """The config without sampler and loss settings: they do not change what the ids mean."""
        return dataclasses.replace(config, sampler=SamplerConfig(), loss=default_loss())

    # ------------------------------------------------------------------------------------ validation

    def check_keep(self, keep: int) -> int:
        """``keep`` if it is N: a grid's prefix is a few patches of the top rows, which decode to nothing."""
        n = self.config.tokens_per_step
        if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= n:
            raise ValueError(f"keep must be an integer in [1, {n}], got {keep!r}")
        if keep != n:
            raise ValueError(f"keep={keep}: the {n} tokens of a step of this grid tokenizer form a "
                             f"{self.config.grid[0]}x{self.config.grid[1]} grid; a prefix of them cannot be "
                             f"decoded (keep all {n})")
        return keep

    def check_ids(self, ids: torch.Tensor, keep: int) -> None:
        """Raise ``ValueError`` unless ``ids`` is an integer ``[B, t, N]`` tensor of ids in the codebook."""
        if not isinstance(ids, torch.Tensor):
            raise ValueError(f"ids must be a torch.Tensor, got {type(ids).__name__}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"ids must be an integer tensor, got dtype {ids.dtype}")
        n = self.config.tokens_per_step
        if ids.dim() != 3 or ids.shape[2] != n:
            raise ValueError(f"ids must have shape [B, t, {n}] (one id per patch of the "
                             f"{self.config.grid[0]}x{self.config.grid[1]} grid), got {tuple(ids.shape)}")
        if ids.shape[1] < 1:
            raise ValueError("ids hold no time step")
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.codebook_size:
                raise ValueError(f"ids must lie in [0, {self.codebook_size}); got [{lo}, {hi}]")

    # ------------------------------------------------------------------------------------ one chunk

    def encode_latents(self, latents: torch.Tensor, first_step: int | torch.Tensor = 0) -> torch.Tensor:
        """Latents of one chunk ``[B,C,t,h,w]`` (t <= chunk_steps) -> ids ``[B,t,N]`` int64 (``first_step``: no
        effect, a grid tokenizer has no temporal prediction; each step's ids stand alone).

        Raises ``NonFiniteOutputError`` when the encoder's output is not finite (its ids would be garbage)."""
        return self.fsq(check_finite_output(self.encoder(latents), "tokenize: the encoder's output", self)).ids

    def decode_latents(self, ids: torch.Tensor, keep: int, noise: torch.Tensor, sampler: SamplerConfig,
                       prefix: torch.Tensor | None = None, first_step: int = 0) -> torch.Tensor:
        """Sample the latents ``[B,C,t,h,w]`` of one chunk from ids ``[B,t,N]`` (``keep`` is N; ids of prefix
        steps are ignored), noise ``[B,C,t,h,w]`` and clean latents ``prefix [B,C,c,h,w]`` fixed in the first
        c steps (their tokens masked). ``first_step``: no effect (no temporal prediction)."""
        b, t, n = ids.shape
        prefix_steps = 0 if prefix is None else prefix.shape[2]
        tokens = self.decoder.embed_tokens(self.fsq.ids_to_codes(ids).to(noise.dtype), prefix_steps)
        if sampler.guided:  # conditional and unconditional tokens in one batch
            tokens = torch.cat([tokens, self.decoder.null_tokens(b, t, n).to(tokens.dtype)])
        return sample(lambda x, s: self.decoder(x, s, tokens).velocity, noise, sampler,
                      FixedPrefix(prefix) if prefix is not None else None)

    # ------------------------------------------------------------------------------------ training

    def training_forward(self, latents: torch.Tensor, draws: TrainingDraws | None = None,
                         generator: torch.Generator | None = None,
                         feature_block: int | None = None) -> TrainingOutput:
        """The flow objective on one chunk of clean latents ``[B,C,t,h,w]`` (docs/design.md, "Training"), as the
        flex tokenizer's without nested dropout (``draws.keep`` is not read: the decoder gets every token).

        Per clip (``draws``, or drawn here with ``generator``): guidance dropout (null condition), a clean
        conditioning prefix (left out of the loss, its tokens masked), the flow time and the noise.
        feature_block: also return the decoder's patch features after this block (for REPA).
        """
        if draws is None:
            draws = draw_training(self.config.loss, self.num_registers, tuple(latents.shape), generator,
                                  latents.device)
        codes = self.fsq(self.encoder(latents)).codes
        tokens = self.decoder.embed_tokens(codes.to(latents.dtype), draws.prefix_steps, draws.null)
        noised = noised_latents(latents, draws)
        out = self.decoder(noised.x_s, draws.s, tokens, feature_block)
        loss = flow_objective(out.velocity, latents, noised, draws.s, self.config.decoder.prediction)
        return TrainingOutput(loss, out.features)
