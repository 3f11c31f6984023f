"""The register encoder: VAE latents -> per-step causal registers -> FSQ inputs."""

from __future__ import annotations

import torch
from torch import nn

from videoflex.nn.attention import layer_norm
from videoflex.nn.blocks import Block
from videoflex.nn.masks import dense_mask
from videoflex.nn.positions import PositionTable3D, patchify
from videoflex.tokenizers.flex.config import EncoderConfig


class Encoder(nn.Module):
    """Latents ``[B,C,t,h,w]`` -> pre-quantisation codes ``[B,t,N,d]`` (d = FSQ channels).

    Each latent step t becomes the block ``[patches_t (h'w') | registers_t (N)]``; every step has its own
    N learned register vectors. Under the time-block-causal-last mask a step sees only earlier steps and
    register i sees only registers ``<= i`` of its step, so tokens are streamable and coarse-to-fine.
    Only the register outputs are kept: non-affine LayerNorm, then a zero-initialised linear to the FSQ
    dimension. With a colour token (``TokenizerConfig.colour_token``) the linear path gives that token of the
    first step the step's colour coefficients (``colour_in``, ``L*r -> d``) and its own values to
    ``colour_refiner``, the residual token refining it (:attr:`~videoflex.nn.fsq.FSQ.colour_refiner`; ``None``:
    they are dropped).
    """

    def __init__(self, config: EncoderConfig, latent_channels: int, max_steps: int,
                 latent_size: tuple[int, int], num_registers: int, code_dim: int,
                 colour_token: int | None = None, colour_refiner: int | None = None) -> None:
        super().__init__()
        self.config = config
        p, d = config.patch_size, config.width
        self.patch_embed = nn.Linear(latent_channels * p * p, d)
        self.positions = PositionTable3D(max_steps, latent_size[0] // p, latent_size[1] // p, d)
        self.registers = nn.Parameter(torch.zeros(max_steps, num_registers, d))
        self.blocks = nn.ModuleList(Block(d, config.head_dim, config.mlp_hidden, scale=8.0 / config.head_dim)
                                    for _ in range(config.depth))
        self.to_codes = nn.Linear(d, code_dim)
        if config.linear_path:  # see EncoderConfig.linear_path
            self.grid = (latent_size[0] // p, latent_size[1] // p)
            self.linear_patch = nn.Linear(latent_channels * p * p, config.linear_path)
            self.linear_mix = nn.Linear(self.grid[0] * self.grid[1] * config.linear_path, num_registers * code_dim)
        self.colour_token, self.colour_refiner = colour_token, colour_refiner
        if colour_token is not None:
            if not config.linear_path:
                raise ValueError("the colour token needs the encoder's linear path (EncoderConfig.linear_path > 0)")
            self.colour_in = nn.Linear(self.grid[0] * self.grid[1] * config.linear_path, code_dim)

    @property
    def max_steps(self) -> int:
        return self.registers.shape[0]

    def forward(self, latents: torch.Tensor, first_step: int | torch.Tensor = 0) -> torch.Tensor:
        """``[B,C,t,h,w] -> [B,t,N,d]``; ``first_step`` (int or int64 ``[B]``): the step whose colour token holds
        the colour coefficients (the chunk's first token step; no effect without a colour token)."""
        b, _, t, h, w = latents.shape
        p = self.config.patch_size
        if t > self.max_steps:
            raise ValueError(f"the encoder takes at most {self.max_steps} latent steps per chunk, got {t}")
        values = patchify(latents, p)  # [B,t,L,C*p*p]
        patches = self.patch_embed(values) + self.positions(t, h // p, w // p)  # [B,t,L,D]
        registers = self.registers[:t].expand(b, -1, -1, -1).to(patches.dtype)  # [B,t,N,D]
        n_patch, n_reg = patches.shape[2], registers.shape[2]
        x = torch.cat([patches, registers], dim=2).flatten(1, 2)  # [B, t*(L+N), D]
        mask = dense_mask("time_block_causal_last", t, n_patch, n_reg, x.device)
        for block in self.blocks:
            x = block(x, mask)
        registers_out = x.view(b, t, n_patch + n_reg, -1)[:, :, n_patch:]  # [B,t,N,D]
        codes = self.to_codes(layer_norm(registers_out))
        if self.config.linear_path:
            if (h // p, w // p) != self.grid:
                raise ValueError(f"the encoder's linear path is built for a {self.grid} patch grid, got {(h // p, w // p)}")
            codes = codes + self.linear_codes(values, first_step)
        return codes

    def linear_codes(self, values: torch.Tensor, first_step: int | torch.Tensor = 0) -> torch.Tensor:
        """The linear path's part of the output ``[B,t,N,d]`` from the patch values ``[B,t,L,C*p*p]``
        (``first_step`` as in :meth:`forward`)."""
        b, t = values.shape[:2]
        reduced = self.linear_patch(values).flatten(2)  # [B,t,L*r]
        linear = self.linear_mix(reduced).view(b, t, self.registers.shape[1], -1)
        if self.colour_token is None:
            return linear
        start = torch.as_tensor(first_step, device=values.device).reshape(-1, 1)  # [B|1, 1]
        first = (torch.arange(t, device=values.device) == start)[..., None]  # [B|1,t,1]
        tokens = list(linear.unbind(2))
        if self.colour_refiner is not None:
            tokens[self.colour_refiner] = torch.where(first, tokens[self.colour_token], tokens[self.colour_refiner])
        tokens[self.colour_token] = torch.where(first, self.colour_in(reduced), tokens[self.colour_token])
        return torch.stack(tokens, dim=2)
