"""The grid encoder: VAE latents -> one FSQ input per latent patch, causal in time."""

from __future__ import annotations

import torch
from torch import nn

from videoflex.nn.attention import layer_norm
from videoflex.nn.blocks import Block
from videoflex.nn.masks import attention_mask
from videoflex.nn.positions import PositionTable3D, patchify
from videoflex.tokenizers.grid.config import GridEncoderConfig


class GridEncoder(nn.Module):
    """Latents ``[B,C,t,h,w]`` -> pre-quantisation codes ``[B,t,L,d]``, ``L = (h/p)(w/p)`` patches a step
    (d = FSQ channels).

    The patches of every step (embedded, plus learned factorised 3D positions) go through pre-norm blocks
    (the flex encoder's ``Block``) under the ``time_block_causal`` mask: a patch sees every patch of its own
    and earlier steps, so the tokens of step i depend on the frames up to step i only. Each patch's output:
    non-affine LayerNorm, then a linear map to the FSQ dimension. There are no registers: the patches are
    the tokens, in row-major order over the ``(h/p, w/p)`` grid.
    """

    def __init__(self, config: GridEncoderConfig, latent_channels: int, max_steps: int,
                 latent_size: tuple[int, int], code_dim: int) -> None:
        super().__init__()
        self.config = config
        p, d = config.patch_size, config.width
        self.max_steps = max_steps
        self.patch_embed = nn.Linear(latent_channels * p * p, d)
        self.positions = PositionTable3D(max_steps, latent_size[0] // p, latent_size[1] // p, d)
        self.blocks = nn.ModuleList(Block(d, config.head_dim, config.mlp_hidden, scale=8.0 / config.head_dim)
                                    for _ in range(config.depth))
        self.to_codes = nn.Linear(d, code_dim)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B,C,t,h,w] -> [B,t,L,d]``."""
        b, _, t, h, w = latents.shape
        p = self.config.patch_size
        if t > self.max_steps:
            raise ValueError(f"the encoder takes at most {self.max_steps} latent steps per chunk, got {t}")
        patches = self.patch_embed(patchify(latents, p)) + self.positions(t, h // p, w // p)  # [B,t,L,D]
        n_patch = patches.shape[2]
        x = patches.flatten(1, 2)  # [B, t*L, D]
        mask = attention_mask("time_block_causal", t, n_patch, 0, x.device)
        for block in self.blocks:
            x = block(x, mask)
        return self.to_codes(layer_norm(x)).view(b, t, n_patch, -1)
