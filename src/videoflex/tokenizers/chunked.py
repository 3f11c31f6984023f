"""What the flow tokenizer kinds share (``tokenizers/flex``, ``tokenizers/grid``): videos of any length cut into
overlapping chunks, encoded ``chunk_batch`` chunks at a time, decoded chunk after chunk with first-frame
conditioning (docs/design.md, "Long videos"), and the checks of videos and generators.

A kind subclasses :class:`ChunkedFlowTokenizer` and provides one chunk's :meth:`~ChunkedFlowTokenizer.encode_latents`
and :meth:`~ChunkedFlowTokenizer.decode_latents`, :meth:`check_keep` and :meth:`check_ids`, its ``layout`` and
``codebook_size``; its config has the fields of :class:`~videoflex.tokenizers.config.ChunkGeometry` plus
``encoder.patch_size``, ``decoder.patch_size``, ``sample_posterior`` and ``sampler``, and the model has ``vae``
and ``encoder`` modules.

Inputs follow the model: videos and ids on any device, in any float dtype, are moved to the model's device
and cast to its dtype (a model moved to bfloat16 takes a float32 video); videos come back as float32.
"""

from __future__ import annotations

import abc
import dataclasses

import torch
from tqdm.auto import tqdm

from videoflex.models.pretrained import PartCount, PretrainedModel
from videoflex.nn.flow import SamplerConfig
from videoflex.tokenizers.base import Tokenizer, check_chunk_batch
from videoflex.tokenizers.chunking import Chunk, ChunkPlan, plan_chunks, plan_from_steps
from videoflex.tokenizers.params import count_parameters
from videoflex.utils.finite import check_finite_output


def micro_batches(plan: ChunkPlan, chunk_batch: int) -> list[list[int]]:
    """Chunk indices in order, in runs of at most ``chunk_batch`` chunks of one length (one VAE batch each)."""
    batches: list[list[int]] = []
    for i, chunk in enumerate(plan.chunks):
        if batches and len(batches[-1]) < chunk_batch and plan.chunks[batches[-1][0]].frames == chunk.frames:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def last_frames(pieces: list[torch.Tensor], count: int) -> torch.Tensor:
    """The last ``count`` frames of the video ``torch.cat(pieces, dim=2)`` (pieces ``[B,3,T_i,H,W]``), joining
    only the pieces they lie in (not the whole video decoded so far: no cost growing with its length)."""
    tail, have = [], 0
    for piece in reversed(pieces):
        tail.append(piece)
        have += piece.shape[2]
        if have >= count:
            break
    return torch.cat(tail[::-1], dim=2)[:, :, -count:]


class ChunkedFlowTokenizer(PretrainedModel, Tokenizer):
    """A frozen VAE, an encoder to FSQ ids and a rectified-flow decoder, run chunk by chunk (see the module
    docstring for what a kind provides)."""

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
    def image_size(self) -> tuple[int, int]:
        return tuple(self.config.image_size)

    @property
    def clip_frames(self) -> int:
        return self.config.chunk_frames

    @property
    def sampler(self) -> SamplerConfig:
        return self.config.sampler

    def init_flow_weights(self, vectors: list[torch.nn.Parameter], encoder_embeddings: list[torch.nn.Parameter],
                          decoder_embeddings: list[torch.nn.Parameter]) -> None:
        """The initialisation every kind shares, in this order (so a seeded preset draws the same weights):
        xavier-uniform linears with zero biases in encoder and decoder; ``vectors`` (learned mask / null
        tokens) at std 0.02; the encoder's and decoder's embeddings at their configs' ``embedding_init_std``;
        the time embedder at std 0.02; the decoder's input projection at zero if ``zero_init_input``;
        adaLN-zero (every block's and the head's modulation, and the head, at zero: each block starts as the
        identity and the head outputs zero); the code projection at the encoder's ``code_init_std``."""
        for module in (self.encoder, self.decoder):
            for m in module.modules():
                if isinstance(m, torch.nn.Linear):
                    torch.nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        torch.nn.init.zeros_(m.bias)
        enc, dec = self.encoder, self.decoder
        for p in vectors:
            torch.nn.init.normal_(p, std=0.02)
        for p in encoder_embeddings:
            torch.nn.init.normal_(p, std=self.config.encoder.embedding_init_std)
        for p in decoder_embeddings:
            torch.nn.init.normal_(p, std=self.config.decoder.embedding_init_std)
        torch.nn.init.normal_(dec.time_embed.fc1.weight, std=0.02)
        torch.nn.init.normal_(dec.time_embed.fc2.weight, std=0.02)
        if self.config.decoder.zero_init_input:
            torch.nn.init.zeros_(dec.patch_embed.weight)
        for m in [dec.head, dec.head_modulation.linear] + [b.modulation.linear for b in dec.blocks]:
            torch.nn.init.zeros_(m.weight)
            torch.nn.init.zeros_(m.bias)
        torch.nn.init.normal_(enc.to_codes.weight, std=self.config.encoder.code_init_std)  # std 0: zero init
        torch.nn.init.zeros_(enc.to_codes.bias)

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

    # ------------------------------------------------------------------------------------ one chunk (the kind's)

    @abc.abstractmethod
    def encode_latents(self, latents: torch.Tensor, first_step: int | torch.Tensor = 0) -> torch.Tensor:
        """Latents of one chunk ``[B,C,t,h,w]`` (t <= chunk_steps) -> ids ``[B,t,N]`` int64. ``first_step``
        (an int or int64 ``[B]``): the first step whose ids must decode without the earlier steps' (a chunk's
        steps shared with the chunk before are dropped); it matters only with temporal prediction
        (``FSQConfig.temporal_prediction``)."""

    @abc.abstractmethod
    def decode_latents(self, ids: torch.Tensor, keep: int, noise: torch.Tensor, sampler: SamplerConfig,
                       prefix: torch.Tensor | None = None, first_step: int = 0) -> torch.Tensor:
        """Sample the latents ``[B,C,t,h,w]`` of one chunk from ids ``[B,t,n]`` (n >= keep), the flow noise
        ``[B,C,t,h,w]`` and, when given, clean latents ``[B,C,c,h,w]`` fixed in the first c steps.
        ``first_step``: as in :meth:`encode_latents` (the ids before it are placeholders)."""

    @abc.abstractmethod
    def check_ids(self, ids: torch.Tensor, keep: int) -> None:
        """Raise ``ValueError`` unless ``ids`` is an integer ``[B,t,n]`` tensor this model decodes at ``keep``."""

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
        b, n = video.shape[0], self.layout.tokens_per_step
        kept: list[torch.Tensor] = []
        for batch in micro_batches(plan, chunk_batch):
            clips = torch.cat([self._chunk_clip(video, plan.chunks[i]) for i in batch])
            latents = self.encode_video(clips, generator).to(self.dtype)
            shared = [plan.chunks[i].shared_steps for i in batch]
            ids = self.encode_latents(latents, torch.tensor(shared).repeat_interleave(b)).view(len(batch), b, -1, n)
            kept.extend(ids[j][:, dropped:] for j, dropped in enumerate(shared))
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
        keep = self.check_keep(self.layout.tokens_per_step if keep is None else keep)
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
                overlap = last_frames(frames, c.chunk_overlap)
                prefix = self.encode_video(overlap, generator).to(self.dtype)
                chunk_ids = torch.cat([chunk_ids.new_zeros(b, chunk.shared_steps, ids.shape[2]),
                                       chunk_ids], dim=1)
            noise = torch.randn(b, c.vae.latent_channels, chunk.steps, h, w, generator=generator,
                                device=device, dtype=dtype)
            latents = self.decode_latents(chunk_ids, keep, noise, sampler, prefix, chunk.shared_steps)
            video = self.vae.decode(latents)  # unclamped: the next chunk re-encodes it (as the reference)
            frames.append(video if i == 0 else video[:, :, c.chunk_overlap:])
        video = check_finite_output(torch.cat(frames, dim=2)[:, :, : plan.num_frames], "detokenize: the decoded video", self)
        return video.clamp(-1, 1).float()
