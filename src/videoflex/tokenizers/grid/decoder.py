"""The grid tokenizer's rectified-flow decoder: the velocity of noised latents, conditioned on one token per patch."""

from __future__ import annotations

import torch
from torch import nn

from videoflex.nn.attention import layer_norm
from videoflex.nn.blocks import AdaLNBlock, GroupModulation, modulate
from videoflex.nn.flow import data_to_velocity
from videoflex.nn.masks import attention_mask
from videoflex.nn.positions import PositionTable3D, patchify, unpatchify
from videoflex.nn.timestep import TimestepEmbedder
from videoflex.tokenizers.grid.config import GridDecoderConfig
from videoflex.tokenizers.training import DecoderOutput

PATCH_GROUP = 0  # the one adaLN group: every token of the sequence is a patch


class GridDecoder(nn.Module):
    """Noised latents ``[B,C,t,h,w]`` + flow time + token embeddings ``[B,t,L,D]`` -> velocity ``[B,C,t,h,w]``.

    Tokens first become embeddings by :meth:`embed_tokens` (FSQ codes -> linear; the learned prefix-mask token
    on clean conditioning steps, the learned null condition for guidance). A patch's input is its noised
    latent values (linear) + its learned 3D position + its own token's embedding (token i of a step belongs
    to patch i). Blocks are adaLN-zero on the flow-time embedding (the flex decoder's ``AdaLNBlock`` with one
    group), under ``time_block_causal`` or full attention; the head is an adaLN (shift, scale) and a
    zero-initialised linear, unpatchified to the velocity.
    """

    def __init__(self, config: GridDecoderConfig, latent_channels: int, max_steps: int,
                 latent_size: tuple[int, int], code_dim: int) -> None:
        super().__init__()
        self.config = config
        p, d = config.patch_size, config.width
        self.code_embed = nn.Linear(code_dim, d)
        self.prefix_mask_token = nn.Parameter(torch.zeros(d))
        self.null_condition = nn.Parameter(torch.zeros(d))
        self.patch_embed = nn.Linear(latent_channels * p * p, d)
        self.positions = PositionTable3D(max_steps, latent_size[0] // p, latent_size[1] // p, d)
        self.time_embed = TimestepEmbedder(d, scale=config.timestep_scale)
        self.blocks = nn.ModuleList(
            AdaLNBlock(d, config.head_dim, config.mlp_hidden, groups=1) for _ in range(config.depth)
        )
        self.head_modulation = GroupModulation(d, groups=1, chunks=2)
        self.head = nn.Linear(d, latent_channels * p * p)

    def embed_tokens(self, codes: torch.Tensor, prefix_steps: int | torch.Tensor = 0,
                     null: torch.Tensor | None = None) -> torch.Tensor:
        """FSQ codes ``[B,t,L,d]`` -> token embeddings ``[B,t,L,D]``.

        prefix_steps: leading steps given as clean latents (int or ``[B]``); their tokens become the
            prefix-mask token (their ids are never read).
        null: bool ``[B]``; those samples get the null condition on every patch (classifier-free guidance).
        """
        b, t = codes.shape[:2]
        x = self.code_embed(codes)
        step = torch.arange(t, device=codes.device)
        prefixed = step[None, :] < torch.as_tensor(prefix_steps, device=codes.device).reshape(-1, 1)  # [B|1,t]
        x = torch.where(prefixed[:, :, None, None], self.prefix_mask_token.to(x.dtype), x)
        if null is not None:
            x = torch.where(null.reshape(b, 1, 1, 1), self.null_condition.to(x.dtype), x)
        return x

    def null_tokens(self, batch: int, steps: int, patches: int) -> torch.Tensor:
        """Token embeddings of the unconditional branch: the null condition everywhere, ``[B,t,L,D]``."""
        return self.null_condition.expand(batch, steps, patches, -1)

    def forward(self, x: torch.Tensor, s: torch.Tensor, tokens: torch.Tensor,
                feature_block: int | None = None) -> DecoderOutput:
        """Velocity ``v = eps - x0`` ``[B,C,t,h,w]`` of ``x [B,C,t,h,w]`` at flow time ``s [B]`` (or per step
        ``[B,t]``), conditioned on the token embeddings ``tokens [B,t,L,D]`` (``L = (h/p)(w/p)``).

        feature_block: also return the patch tokens ``[B,t,L,D]`` after this many blocks (1-based; for REPA).
        Raises ``ValueError`` outside ``[1, depth]`` or for tokens that are not one per patch.
        """
        if feature_block is not None and not 1 <= feature_block <= len(self.blocks):
            raise ValueError(f"feature_block must lie in [1, {len(self.blocks)}], got {feature_block}")
        t, h, w = x.shape[2:]
        p = self.config.patch_size
        grid = (h // p, w // p)
        patches = self.patch_embed(patchify(x, p)) + self.positions(t, *grid)  # [B,t,L,D]
        if tokens.shape[1:3] != patches.shape[1:3]:
            raise ValueError(f"the decoder needs one token per patch: tokens {tuple(tokens.shape[1:3])} for "
                             f"{tuple(patches.shape[1:3])} (steps, patches)")
        parts = [patches + tokens.to(patches.dtype)]
        c = self.time_embed(s if s.dim() == 2 else s[:, None])  # [B,t|1,D]
        mask = attention_mask(self.attention_mask_kind, t, patches.shape[2], 0, x.device)
        features = None
        for i, block in enumerate(self.blocks, start=1):
            parts = block(parts, c, (PATCH_GROUP,), mask)
            if i == feature_block:
                features = parts[0]  # [B,t,L,D]
        shift, scale = self.head_modulation(c)[:, :, 0, :, None].unbind(2)  # [B,t|1,1,D] each
        y = unpatchify(self.head(modulate(layer_norm(parts[0]), shift, scale)), p, grid)  # [B,C,t,h,w]
        if self.config.prediction == "data":  # x0 -> the velocity (x_s - x0) / s
            y = data_to_velocity(x, y, s)
        return DecoderOutput(y, features)

    @property
    def attention_mask_kind(self) -> str:
        return "full" if self.config.attention == "full" else "time_block_causal"
