"""VideoFlexTok: video <-> variable-length coarse-to-fine token sequences.

Pipeline (docs/design.md)::

    video [B,3,T,H,W] -> VAE -> latents [B,C,t,h,w] -> Encoder -> FSQ -> ids [B,t,N]
    ids[..., :k] -> Decoder (rectified flow, guided) -> latents -> VAE -> video

Videos of any length are cut into overlapping chunks (:mod:`videoflex.tokenizers.chunking`); chunks are
encoded independently, ``chunk_batch`` at a time (memory bounded whatever the length), and decoded one
after another, each later chunk conditioned on the last frames decoded before it.

Inputs follow the model: videos and ids on any device, in any float dtype, are moved to the model's device
and cast to its dtype (a model moved to bfloat16 takes a float32 video); videos come back as float32.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from videoflex.models.pretrained import PartCount, PretrainedModel
from videoflex.nn.flow import FixedPrefix, flow_loss, interpolate, logit_normal_time, nested_keep, sample
from videoflex.nn.fsq import FSQ
from videoflex.tokenizers.base import Tokenizer, TokenLayout, check_chunk_batch
from videoflex.tokenizers.chunking import Chunk, ChunkPlan, plan_chunks, plan_from_steps
from videoflex.tokenizers.flex.config import LossConfig, SamplerConfig, TokenizerConfig
from videoflex.tokenizers.flex.decoder import MIN_DATA_PREDICTION_TIME, Decoder
from videoflex.tokenizers.flex.encoder import Encoder
from videoflex.tokenizers.flex.params import count_parameters
from videoflex.tokenizers.flex.presets import PRESETS
from videoflex.utils.finite import check_finite_output
from videoflex.vae import build_vae

KIND = "flex-tokenizer"


@dataclass(frozen=True)
class TrainingDraws:
    """The random choices of one training step, per clip (drawn up front so that a batch split over
    processes or micro-batches sees exactly the draws of the whole batch)."""

    keep: torch.Tensor  # [B] int64, tokens kept per step (nested dropout)
    null: torch.Tensor  # [B] bool, guidance dropout: null condition instead of the tokens
    prefix_steps: torch.Tensor  # [B] int64, clean conditioning steps
    prefix_sigma: torch.Tensor  # [B] noise std on the clean prefix
    s: torch.Tensor  # [B] flow times
    noise: torch.Tensor  # [B,C,t,h,w]

    def __getitem__(self, index: slice) -> TrainingDraws:
        return TrainingDraws(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


@dataclass(frozen=True)
class TrainingOutput:
    """The training objective of one batch and, when asked for, the decoder features REPA aligns."""

    loss: torch.Tensor  # float32 scalar
    features: torch.Tensor | None = None  # [B,t,L,D] decoder patch features after the requested block


def draw_training(config: LossConfig, num_registers: int, latent_shape: tuple[int, ...],
                  generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> TrainingDraws:
    """Draw a step's randomness for latents of shape ``[B,C,t,h,w]`` (docs/design.md, "Training")."""
    b, t = latent_shape[0], latent_shape[2]
    keep = (nested_keep(b, num_registers, generator, device) if config.nested_dropout
            else torch.full((b,), num_registers, device=device))
    uniform = torch.rand(3, b, generator=generator, device=device)
    prefix_steps = torch.where(uniform[1] < config.prefix_prob, min(config.prefix_steps, t - 1), 0)
    s = logit_normal_time(b, config.time_mean, config.time_std, generator, device)
    noise = torch.randn(latent_shape, generator=generator, device=device)
    return TrainingDraws(keep, uniform[0] < config.guidance_dropout, prefix_steps,
                         uniform[2] * config.prefix_noise, s, noise)


def _micro_batches(plan: ChunkPlan, chunk_batch: int) -> list[list[int]]:
    """Chunk indices in order, in runs of at most ``chunk_batch`` chunks of one length (one VAE batch each)."""
    batches: list[list[int]] = []
    for i, chunk in enumerate(plan.chunks):
        if batches and len(batches[-1]) < chunk_batch and plan.chunks[batches[-1][0]].frames == chunk.frames:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _last_frames(pieces: list[torch.Tensor], count: int) -> torch.Tensor:
    """The last ``count`` frames of the video ``torch.cat(pieces, dim=2)`` (pieces ``[B,3,T_i,H,W]``), joining
    only the pieces they lie in (not the whole video decoded so far: no cost growing with its length)."""
    tail, have = [], 0
    for piece in reversed(pieces):
        tail.append(piece)
        have += piece.shape[2]
        if have >= count:
            break
    return torch.cat(tail[::-1], dim=2)[:, :, -count:]


class VideoFlexTok(PretrainedModel, Tokenizer):
    """The tokenizer: a frozen VAE, the register encoder with FSQ, and the flow decoder.

    Model kind ``"flex-tokenizer"``; saving, loading, presets and identity come from
    :class:`~videoflex.models.pretrained.PretrainedModel`, the tokenizer interface from
    :class:`~videoflex.tokenizers.base.Tokenizer`.
    """

    kind = KIND
    config_class = TokenizerConfig
    presets = PRESETS

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        latent_channels, steps = config.vae.latent_channels, config.chunk_steps
        self.vae = build_vae(config.vae)
        self.fsq = FSQ(config.fsq.levels)
        self.encoder = Encoder(config.encoder, latent_channels, steps, config.latent_size,
                               config.num_registers, config.fsq.dim)
        self.decoder = Decoder(config.decoder, latent_channels, steps, config.latent_size,
                               config.num_registers, config.fsq.dim)
        self.init_weights()

    # ------------------------------------------------------------------------------------ construction

    def init_weights(self) -> None:
        """All initialisation in one place: xavier linears, small learned vectors, adaLN-zero, zero heads."""
        for module in (self.encoder, self.decoder):
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        enc, dec = self.encoder, self.decoder
        for p in (dec.nested_mask_token, dec.prefix_mask_token, dec.null_condition):
            nn.init.normal_(p, std=0.02)
        for p in (enc.registers, enc.positions.table_t, enc.positions.table_h, enc.positions.table_w):
            nn.init.normal_(p, std=self.config.encoder.embedding_init_std)
        embeddings = [dec.positions.table_t, dec.positions.table_h, dec.positions.table_w]
        if self.config.decoder.register_positions:
            embeddings += [dec.register_index, dec.register_step]
        for p in embeddings:
            nn.init.normal_(p, std=self.config.decoder.embedding_init_std)
        nn.init.normal_(dec.time_embed.fc1.weight, std=0.02)
        nn.init.normal_(dec.time_embed.fc2.weight, std=0.02)
        zero = [dec.head, dec.head_modulation.linear] + [b.modulation.linear for b in dec.blocks]
        if self.config.decoder.zero_init_input:
            nn.init.zeros_(dec.patch_embed.weight)
        for m in zero:  # adaLN-zero: every block starts as the identity, the head outputs zero
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        nn.init.normal_(enc.to_codes.weight, std=self.config.encoder.code_init_std)  # std 0: zero init
        nn.init.zeros_(enc.to_codes.bias)
        if self.config.encoder.linear_path:  # its output starts at about a third of a code's range
            nn.init.normal_(enc.linear_patch.weight, std=(3 * enc.linear_patch.in_features) ** -0.5)
            nn.init.normal_(enc.linear_mix.weight, std=0.5 * enc.linear_mix.in_features ** -0.5)
        if self.config.decoder.linear_path:  # the readout starts at zero, like the head
            nn.init.zeros_(dec.linear_out.weight)
            nn.init.zeros_(dec.linear_out.bias)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The float dtype of the weights (inputs are cast to it)."""
        return next(self.encoder.parameters()).dtype

    def check_generator(self, generator: torch.Generator | None) -> None:
        """Raise ``ValueError`` unless ``generator`` is None or on the model's device type."""
        if generator is not None and generator.device.type != self.device.type:
            raise ValueError(f"the generator is on {generator.device.type}, the model on {self.device}; make it "
                             f"with torch.Generator(device={self.device.type!r})")

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

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.config.image_size)

    @property
    def clip_frames(self) -> int:
        return self.config.chunk_frames

    @property
    def sampler(self) -> SamplerConfig:
        return self.config.sampler

    # ------------------------------------------------------------------------------------ identity

    @classmethod
    def identity_config(cls, config: TokenizerConfig) -> TokenizerConfig:
        """The config without sampler and loss settings: they do not change what the ids mean (re-saving a
        model with other sampling defaults keeps its token files valid)."""
        return dataclasses.replace(config, sampler=SamplerConfig(), loss=LossConfig())

    def parameter_parts(self) -> tuple[PartCount, ...]:
        """VAE, encoder, decoder, the decoder's adaLN linears, and encoder + decoder without adaLN (the
        paper's model sizes)."""
        c = count_parameters(self)
        return (PartCount("VAE", c.vae), PartCount("encoder", c.encoder), PartCount("decoder", c.decoder),
                PartCount("adaLN", c.adaln), PartCount("enc+dec-adaLN", c.transformer_without_adaln))

    # ------------------------------------------------------------------------------------ validation

    def check_video(self, video: torch.Tensor, name: str = "video") -> None:
        """Raise ``ValueError`` unless ``video`` is float ``[B,3,T,H,W]`` in [-1,1] of a size the model takes."""
        if not isinstance(video, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(video).__name__}")
        if not video.is_floating_point():
            raise ValueError(f"{name} must be a float tensor in [-1, 1], got dtype {video.dtype}")
        if video.dim() != 5:
            raise ValueError(f"{name} must have shape [B, 3, T, H, W], got {tuple(video.shape)}")
        if video.shape[1] != 3:
            raise ValueError(f"{name} must have 3 (RGB) channels on axis 1, got {video.shape[1]} "
                             f"(shape {tuple(video.shape)}; expected [B, 3, T, H, W])")
        h, w = video.shape[-2:]
        sf = self.config.vae.spatial_factor
        factor = sf * max(self.config.encoder.patch_size, self.config.decoder.patch_size)
        if h % factor or w % factor:
            raise ValueError(f"{name} height and width must be divisible by {factor} (VAE factor {sf} x patch "
                             f"size); got {h}x{w}")
        if (h, w) != tuple(self.config.image_size):
            size = "x".join(map(str, self.config.image_size))
            raise ValueError(f"{name} is {h}x{w}; the model takes {size} frames (resize and crop first)")
        if video.numel():
            lo, hi = float(video.min()), float(video.max())
            if not (-1.001 <= lo and hi <= 1.001):
                raise ValueError(f"{name} values must lie in [-1, 1]; got [{lo:.3g}, {hi:.3g}]"
                                 + (" (uint8-range pixels? divide by 127.5 and subtract 1)" if hi > 2 else ""))

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

    def encode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents of one chunk ``[B,C,t,h,w]`` (t <= chunk_steps) -> ids ``[B,t,N]`` int64.

        Raises ``NonFiniteOutputError`` when the encoder's output is not finite (its ids would be garbage)."""
        return self.fsq(check_finite_output(self.encoder(latents), "tokenize: the encoder's output", self)).ids

    def decode_latents(self, ids: torch.Tensor, keep: int, noise: torch.Tensor, sampler: SamplerConfig,
                       prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Sample the latents of one chunk.

        ids: ``[B,t,n]`` (n >= keep; ids of prefix steps are ignored). noise: ``[B,C,t,h,w]``.
        prefix: clean latents ``[B,C,c,h,w]`` fixed in the first c steps (their registers are masked).
        Returns latents ``[B,C,t,h,w]``.
        """
        b, t = ids.shape[:2]
        n = self.num_registers
        ids = ids[..., :keep]
        if keep < n:  # the masked positions need placeholder ids; their values never matter
            ids = torch.cat([ids, ids.new_zeros(b, t, n - keep)], dim=-1)
        prefix_steps = 0 if prefix is None else prefix.shape[2]
        registers = self.decoder.embed_tokens(self.fsq.ids_to_codes(ids).to(noise.dtype), keep, prefix_steps)
        if sampler.guided:  # conditional and unconditional registers in one batch
            registers = torch.cat([registers, self.decoder.null_registers(b, t).to(registers.dtype)])
        return sample(lambda x, s: self.decoder(x, s, registers).velocity, noise, sampler,
                      FixedPrefix(prefix) if prefix is not None else None)

    # ------------------------------------------------------------------------------------ any length

    def plan(self, num_frames: int) -> ChunkPlan:
        c = self.config
        return plan_chunks(num_frames, c.chunk_frames, c.chunk_overlap, c.vae.temporal_factor)

    def encode_video(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """VAE latents of a clip of ``1 + tf*m`` frames, mean or sampled as the config says."""
        return self.vae.encode(video, sample=self.config.sample_posterior, generator=generator)

    @torch.no_grad()
    def tokenize(self, video: torch.Tensor, generator: torch.Generator | None = None,
                 chunk_batch: int | None = None) -> torch.Tensor:
        """Video ``[B,3,T,H,W]`` in [-1,1], any T >= 1 -> ids ``[B,t,N]`` int64, ``t = 1 + ceil((T-1)/tf)``.

        The video is padded at the end (last frame repeated) to ``1 + tf*m`` frames and cut into chunks of
        ``chunk_frames`` overlapping by ``chunk_overlap``. Chunks go through the VAE and the encoder
        ``chunk_batch`` at a time (default :data:`~videoflex.tokenizers.base.DEFAULT_CHUNK_BATCH`), each
        moved to the model's device and dtype there, so the memory used beyond the input is bounded
        whatever T; the ids do not depend on ``chunk_batch``. ``generator`` (on the model's device type)
        drives posterior sampling when the config samples it.

        Raises:
            ValueError: ``video`` is not a float ``[B,3,T,H,W]`` tensor in [-1, 1] of the model's size,
                ``chunk_batch`` is not a positive integer, or ``generator`` is on another device type.
            NonFiniteOutputError: the encoder's output holds NaN or inf (the message names non-finite weights).
        """
        self.check_video(video)
        chunk_batch = check_chunk_batch(chunk_batch)
        self.check_generator(generator)
        plan = self.plan(video.shape[2])
        b, n = video.shape[0], self.num_registers
        kept: list[torch.Tensor] = []
        for batch in _micro_batches(plan, chunk_batch):
            clips = torch.cat([self._chunk_clip(video, plan.chunks[i]) for i in batch])
            latents = self.encode_video(clips, generator).to(self.dtype)
            ids = self.encode_latents(latents).view(len(batch), b, -1, n)
            kept.extend(ids[j][:, plan.chunks[i].steps - plan.chunks[i].kept_steps:] for j, i in enumerate(batch))
        return torch.cat(kept, dim=1)

    def _chunk_clip(self, video: torch.Tensor, chunk: Chunk) -> torch.Tensor:
        """Frames ``[B,3,chunk.frames,H,W]`` of one chunk on the model's device and dtype (past the end of
        ``video``: its last frame repeated)."""
        clip = video[:, :, chunk.start: chunk.start + chunk.frames].to(self.device, self.dtype)
        pad = chunk.frames - clip.shape[2]
        if pad:
            clip = torch.cat([clip, clip[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)
        return clip

    @torch.no_grad()
    def detokenize(self, ids: torch.Tensor, keep: int | None = None, steps: int | None = None,
                   guidance: float | None = None, num_frames: int | None = None,
                   generator: torch.Generator | None = None, conditioning_frames: torch.Tensor | None = None,
                   sampler: SamplerConfig | None = None, progress: bool = False) -> torch.Tensor:
        """ids ``[B,t,n]`` -> video ``[B,3,T,H,W]`` in [-1,1] from the first ``keep`` tokens of each step.

        keep: tokens per step to use (default: all N); ids beyond ``keep`` are never read.
        steps, guidance: override the sampler config (``sampler`` or the model's default).
        num_frames: frames to return (default ``1 + tf*(t-1)``; the padding added by ``tokenize`` is trimmed).
        generator: seeds the flow noise; the same generator state gives the same video.
        conditioning_frames: ``[B,3,Tc,H,W]`` (Tc = 1 + tf*j, fewer frames than a chunk) fixed as the
            first frames of the first chunk; their latent steps are given clean and their tokens unused.

        ids (any integer dtype) and conditioning frames (any float dtype) may be on any device: they are
        moved to the model's device and dtype. The video comes back float32 on the model's device.

        Raises:
            ValueError: bad ``keep``, ``ids``, ``num_frames`` or ``conditioning_frames``, or ``generator`` on
                another device type than the model.
            NonFiniteOutputError: the decoded video holds NaN or inf (the message names non-finite weights).
        """
        keep = self.check_keep(self.num_registers if keep is None else keep)
        self.check_ids(ids, keep)
        self.check_generator(generator)
        sampler = dataclasses.replace(sampler or self.config.sampler,
                                      **{k: v for k, v in (("steps", steps), ("guidance", guidance)) if v is not None})
        c = self.config
        plan = plan_from_steps(ids.shape[1], c.chunk_frames, c.chunk_overlap, c.vae.temporal_factor, num_frames)
        b, device = ids.shape[0], self.device
        h, w = c.latent_size
        prefix = None
        if conditioning_frames is not None:
            self.check_video(conditioning_frames, "conditioning_frames")
            if conditioning_frames.shape[0] != b:
                raise ValueError(f"conditioning_frames has batch {conditioning_frames.shape[0]}, ids have {b}")
            prefix = self.encode_video(conditioning_frames.to(device, self.dtype), generator).to(self.dtype)
            if prefix.shape[2] >= plan.chunks[0].steps:
                raise ValueError(f"conditioning_frames cover {prefix.shape[2]} latent steps; the first chunk "
                                 f"has only {plan.chunks[0].steps}")
        ids = ids.to(device)
        frames, used = [], 0
        dtype = self.dtype
        for i, chunk in enumerate(tqdm(plan.chunks, desc="decoding chunks", disable=not progress)):
            chunk_ids = ids[:, used: used + chunk.kept_steps]
            used += chunk.kept_steps
            if i > 0:  # condition on the frames shared with the previous chunk (the last decoded ones)
                overlap = _last_frames(frames, c.chunk_overlap)
                prefix = self.encode_video(overlap, generator).to(self.dtype)
                chunk_ids = torch.cat([chunk_ids.new_zeros(b, chunk.steps - chunk.kept_steps, ids.shape[2]),
                                       chunk_ids], dim=1)
            noise = torch.randn(b, c.vae.latent_channels, chunk.steps, h, w, generator=generator,
                                device=device, dtype=dtype)
            latents = self.decode_latents(chunk_ids, keep, noise, sampler, prefix)
            video = self.vae.decode(latents)  # unclamped: the next chunk re-encodes it (as the reference)
            frames.append(video if i == 0 else video[:, :, c.chunk_overlap:])
        video = check_finite_output(torch.cat(frames, dim=2)[:, :, : plan.num_frames], "detokenize: the decoded video", self)
        return video.clamp(-1, 1).float()

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
        registers = self.decoder.embed_tokens(codes.to(latents.dtype), draws.keep, draws.prefix_steps, draws.null)
        noise = draws.noise.to(latents.dtype)
        x_s = interpolate(latents, noise, draws.s)
        is_prefix = torch.arange(latents.shape[2], device=latents.device)[None, :] < draws.prefix_steps[:, None]
        clean = latents + draws.prefix_sigma.view(-1, 1, 1, 1, 1).to(latents.dtype) * noise
        x_s = torch.where(is_prefix[:, None, :, None, None], clean, x_s)
        out = self.decoder(x_s, draws.s, registers, feature_block)
        weight = None
        if self.config.decoder.prediction == "data":  # the data-space error: every noise level counts alike
            weight = draws.s.clamp_min(MIN_DATA_PREDICTION_TIME).to(torch.float32) ** 2
        return TrainingOutput(flow_loss(out.velocity, latents, noise, (~is_prefix).float(), weight), out.features)
