"""VideoFlexTok: video <-> variable-length coarse-to-fine token sequences.

Pipeline (docs/design.md)::

    video [B,3,T,H,W] -> VAE -> latents [B,C,t,h,w] -> Encoder -> FSQ -> ids [B,t,N]
    ids[..., :k] -> Decoder (rectified flow, guided) -> latents -> VAE -> video

Videos of any length are cut into overlapping chunks (:mod:`videoflex.tokenizers.chunking`); chunks are
encoded independently, ``chunk_batch`` at a time (memory bounded whatever the length), and decoded one
after another, each later chunk conditioned on the last frames decoded before it: the chunk loops, the
input checks and the device handling are :class:`~videoflex.tokenizers.chunked.ChunkedFlowTokenizer`'s,
shared with the grid tokenizer; this module holds one chunk's encoding and decoding and the training forward.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from videoflex.nn.flow import FixedPrefix, sample
from videoflex.nn.fsq import FSQ
from videoflex.tokenizers.base import TokenLayout
from videoflex.tokenizers.chunked import ChunkedFlowTokenizer
from videoflex.tokenizers.flex.config import LossConfig, SamplerConfig, TokenizerConfig
from videoflex.tokenizers.flex.decoder import Decoder
from videoflex.tokenizers.flex.encoder import Encoder
from videoflex.tokenizers.flex.presets import PRESETS
from videoflex.tokenizers.training import (
    TrainingDraws,
    TrainingOutput,
    draw_training,
    flow_objective,
    noised_latents,
)
from videoflex.utils.finite import check_finite_output
from videoflex.vae import build_vae

__all__ = ["KIND", "TrainingDraws", "TrainingOutput", "VideoFlexTok", "draw_training"]

KIND = "flex-tokenizer"


class VideoFlexTok(ChunkedFlowTokenizer):
    """The tokenizer: a frozen VAE, the register encoder with FSQ, and the flow decoder.

    Model kind ``"flex-tokenizer"``; saving, loading, presets and identity come from
    :class:`~videoflex.models.pretrained.PretrainedModel`, the tokenizer interface and the chunk loops from
    :class:`~videoflex.tokenizers.chunked.ChunkedFlowTokenizer`.
    """

    kind = KIND
    config_class = TokenizerConfig
    presets = PRESETS

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        latent_channels, steps = config.vae.latent_channels, config.chunk_steps
        self.vae = build_vae(config.vae)
        predicted = config.fsq.temporal_prediction
        self.fsq = FSQ(config.fsq.levels, bound=config.fsq.bound, residuals=config.fsq.residuals,
                       predicted_tokens=config.num_registers if predicted else 0,
                       colour_token=config.colour_token, full_range_restarts=config.fsq.full_range_restarts)
        colour = config.colour_token, self.fsq.colour_refiner
        self.encoder = Encoder(config.encoder, latent_channels, steps, config.latent_size,
                               config.num_registers, config.fsq.dim, *colour)
        self.decoder = Decoder(config.decoder, latent_channels, steps, config.latent_size,
                               config.num_registers, config.fsq.dim, *colour, self.colour_masked)
        self.init_weights()

    # ------------------------------------------------------------------------------------ construction

    def init_weights(self) -> None:
        """All initialisation in one place: the shared scheme (:meth:`init_flow_weights`: xavier linears,
        small learned vectors, adaLN-zero, zero head) with the registers among the encoder's embeddings,
        then the linear paths."""
        enc, dec = self.encoder, self.decoder
        decoder_embeddings = [dec.positions.table_t, dec.positions.table_h, dec.positions.table_w]
        if self.config.decoder.register_positions:
            decoder_embeddings += [dec.register_index, dec.register_step]
        self.init_flow_weights(
            vectors=[dec.nested_mask_token, dec.prefix_mask_token, dec.null_condition],
            encoder_embeddings=[enc.registers, enc.positions.table_t, enc.positions.table_h, enc.positions.table_w],
            decoder_embeddings=decoder_embeddings,
        )
        if self.config.encoder.linear_path:  # its output starts at about a third of a code's range
            nn.init.normal_(enc.linear_patch.weight, std=(3 * enc.linear_patch.in_features) ** -0.5)
            nn.init.normal_(enc.linear_mix.weight, std=0.5 * enc.linear_mix.in_features ** -0.5)
        if self.config.decoder.linear_path:  # the readout starts at zero, like the head
            nn.init.zeros_(dec.linear_out.weight)
            nn.init.zeros_(dec.linear_out.bias)
        if self.config.decoder.linear_temporal:  # the temporal mix too
            nn.init.zeros_(dec.linear_temporal.weight)
        if self.config.colour_token is not None:  # colour codes like the mix's; the colour path starts at zero
            nn.init.normal_(enc.colour_in.weight, std=0.5 * enc.colour_in.in_features ** -0.5)
            nn.init.zeros_(enc.colour_in.bias)
            for weight in (dec.colour_read.weight, dec.colour_read.bias, dec.colour_out.weight):
                nn.init.zeros_(weight)

    @property
    def colour_masked(self) -> tuple[int, ...]:
        """The residual tokens (``FSQConfig.residuals``) that refine the colour token's refiner
        (:attr:`~videoflex.nn.fsq.FSQ.colour_refiner`), directly or through another: in the chunk's first step
        they refine coefficients that the decoder reads in another token's place, so it does not read them
        there. ``()`` without a colour token or such tokens."""
        refiner = self.fsq.colour_refiner
        if refiner is None:
            return ()
        masked = [refiner]
        for token, source in sorted(self.config.fsq.residuals):  # a source comes before its refiners
            if source in masked:
                masked.append(token)
        return tuple(masked[1:])

    @property
    def num_registers(self) -> int:
        return self.config.num_registers

    @property
    def codebook_size(self) -> int:
        return self.fsq.codebook_size

    @property
    def layout(self) -> TokenLayout:
        """``num_registers`` tokens per step, ordered coarse to fine (nested dropout)."""
        return TokenLayout(self.num_registers, "coarse_to_fine")

    # ------------------------------------------------------------------------------------ identity

    @classmethod
    def identity_config(cls, config: TokenizerConfig) -> TokenizerConfig:
        """The config without sampler and loss settings: they do not change what the ids mean (re-saving a
        model with other sampling defaults keeps its token files valid)."""
        return dataclasses.replace(config, sampler=SamplerConfig(), loss=LossConfig())

    # ------------------------------------------------------------------------------------ validation

    def check_keep(self, keep: int) -> int:
        if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= self.num_registers:
            raise ValueError(f"keep must be an integer in [1, {self.num_registers}], got {keep!r}")
        return keep

    def check_ids(self, ids: torch.Tensor, keep: int) -> None:
        if not isinstance(ids, torch.Tensor):
            raise ValueError(f"ids must be a torch.Tensor, got {type(ids).__name__}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"ids must be an integer tensor, got dtype {ids.dtype}")
        if ids.dim() != 3:
            raise ValueError(f"ids must have shape [B, t, n], got {tuple(ids.shape)}")
        if ids.shape[1] < 1:
            raise ValueError("ids hold no time step")
        n = ids.shape[2]
        if n > self.num_registers:
            raise ValueError(f"ids have {n} tokens per step; the model has {self.num_registers}")
        if n < keep:
            raise ValueError(f"keep={keep} but ids hold only {n} tokens per step")
        if ids.numel():
            lo, hi = int(ids[..., :keep].min()), int(ids[..., :keep].max())
            if lo < 0 or hi >= self.codebook_size:
                raise ValueError(f"ids must lie in [0, {self.codebook_size}); got [{lo}, {hi}]")

    # ------------------------------------------------------------------------------------ one chunk

    def encode_latents(self, latents: torch.Tensor, first_step: int | torch.Tensor = 0) -> torch.Tensor:
        """Latents of one chunk ``[B,C,t,h,w]`` (t <= chunk_steps) -> ids ``[B,t,N]`` int64; ``first_step``: the
        first step of FSQ's temporal prediction (:meth:`videoflex.nn.fsq.FSQ.quantize`; an int or int64 ``[B]``),
        also the step whose colour token holds the chunk's colour (``TokenizerConfig.colour_token``).

        Raises ``NonFiniteOutputError`` when the encoder's output is not finite (its ids would be garbage)."""
        pre = check_finite_output(self.encoder(latents, first_step), "tokenize: the encoder's output", self)
        return self.fsq(pre, first_step).ids

    def decode_latents(self, ids: torch.Tensor, keep: int, noise: torch.Tensor, sampler: SamplerConfig,
                       prefix: torch.Tensor | None = None, first_step: int = 0) -> torch.Tensor:
        """Sample the latents of one chunk.

        ids: ``[B,t,n]`` (n >= keep; ids of prefix steps are not decoded, but with temporal prediction the
            steps after them are predicted from them unless ``first_step`` lies past them).
        noise: ``[B,C,t,h,w]``.
        prefix: clean latents ``[B,C,c,h,w]`` fixed in the first c steps (their registers are masked).
        first_step: the first step of FSQ's temporal prediction and the colour token's step
            (:meth:`encode_latents`); the ids before it are placeholders.
        Returns latents ``[B,C,t,h,w]``.
        """
        b, t = ids.shape[:2]
        n = self.num_registers
        ids = ids[..., :keep]
        if keep < n:  # the masked positions need placeholder ids; their values never matter
            ids = torch.cat([ids, ids.new_zeros(b, t, n - keep)], dim=-1)
        prefix_steps = 0 if prefix is None else prefix.shape[2]
        codes = self.fsq.ids_to_codes(ids, first_step).to(noise.dtype)
        registers = self.decoder.embed_tokens(codes, keep, prefix_steps)
        linear = self.decoder.code_path(codes, keep, prefix_steps, first_step=first_step)
        if sampler.guided:  # conditional and unconditional registers in one batch
            registers = torch.cat([registers, self.decoder.null_registers(b, t).to(registers.dtype)])
            if linear is not None:
                everyone = torch.ones(b, dtype=torch.bool, device=codes.device)
                linear = torch.cat([linear, self.decoder.code_path(codes, keep, prefix_steps, null=everyone,
                                                                   first_step=first_step)])
        return sample(lambda x, s: self.decoder(x, s, registers, linear=linear).velocity, noise, sampler,
                      FixedPrefix(prefix) if prefix is not None else None)

    # ------------------------------------------------------------------------------------ training

    def training_loss(self, latents: torch.Tensor, draws: TrainingDraws | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """The flow objective (float32 scalar) on one chunk of clean latents ``[B,C,t,h,w]``
        (:meth:`training_forward` without features)."""
        return self.training_forward(latents, draws, generator).loss

    def training_forward(self, latents: torch.Tensor, draws: TrainingDraws | None = None,
                         generator: torch.Generator | None = None,
                         feature_block: int | None = None) -> TrainingOutput:
        """The flow objective on one chunk of clean latents ``[B,C,t,h,w]`` (docs/design.md, "Training").

        Per clip (``draws``, or drawn here with ``generator``): the kept token count (nested dropout),
        guidance dropout (null condition), a clean conditioning prefix (left out of the loss, its registers
        masked), the flow time s ~ logit-normal and the noise.
        feature_block: also return the decoder's patch features after this block (for REPA).
        """
        if draws is None:
            draws = draw_training(self.config.loss, self.num_registers, tuple(latents.shape), generator,
                                  latents.device)
        codes = self.fsq(self.encoder(latents)).codes
        codes = codes.to(latents.dtype)
        registers = self.decoder.embed_tokens(codes, draws.keep, draws.prefix_steps, draws.null)
        linear = self.decoder.code_path(codes, draws.keep, draws.prefix_steps, draws.null)
        noised = noised_latents(latents, draws)
        out = self.decoder(noised.x_s, draws.s, registers, feature_block, linear)
        loss = flow_objective(out.velocity, latents, noised, draws.s, self.config.decoder.prediction)
        return TrainingOutput(loss, out.features)
