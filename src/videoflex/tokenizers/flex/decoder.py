"""The rectified-flow decoder: predicts the velocity of noised latents, conditioned on register tokens."""

from __future__ import annotations

import torch
from torch import nn

from videoflex.nn.attention import layer_norm
from videoflex.nn.blocks import AdaLNBlock, GroupModulation, modulate
from videoflex.nn.flow import data_to_velocity
from videoflex.nn.masks import attention_mask
from videoflex.nn.positions import PositionTable3D, patchify, unpatchify
from videoflex.nn.timestep import TimestepEmbedder
from videoflex.tokenizers.flex.config import DecoderConfig
from videoflex.tokenizers.training import DecoderOutput

PATCH_GROUP, REGISTER_GROUP = 0, 1  # adaLN sub-sequences, in the order of the modulation weights
SEQUENCE_GROUPS = (REGISTER_GROUP, PATCH_GROUP)  # the groups of each step's sequence, in sequence order


def _per_sample(value: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=torch.long).reshape(batch)
    return torch.full((batch,), int(value), dtype=torch.long, device=device)


class Decoder(nn.Module):
    """Noised latents ``[B,C,t,h,w]`` + flow time + register tokens -> velocity ``[B,C,t,h,w]``.

    Tokens are first turned into decoder registers by :meth:`embed_tokens` (FSQ codes -> linear, then the
    learned mask token past the kept prefix, the prefix-mask token on conditioning steps, the null
    condition for guidance). Each step is the block ``[registers_t (N) | patches_t (h'w')]``; blocks are
    adaLN-zero with separate modulation for registers and patches; the mask is time-block-causal or full.

    colour_token: the token whose codes in the chunk's first step are its colour (``TokenizerConfig.colour_token``;
        ``None``: none). In that step the linear path's mix reads the colour token's own coefficients from
        ``colour_refiner`` (the residual token refining it, which holds them there; ``None``: they are not sent)
        and leaves out the ``colour_masked`` tokens; where the colour token is kept, it moves the colour
        components of every step's r values a patch to the colour codes ``c``: ``mixed + colour_out(g * (c -
        colour_read(mixed)))`` (``colour_read``: ``L*r -> d``, ``colour_out``: ``d -> L*r``), all the way
        (``g = 1``) in the first step and by ``g = colour_gain[k - 1]`` (``[N, d]``, per kept token count ``k``)
        in the others, whose own codes carry more of their colour the more tokens are kept.
    """

    def __init__(self, config: DecoderConfig, latent_channels: int, max_steps: int,
                 latent_size: tuple[int, int], num_registers: int, code_dim: int,
                 colour_token: int | None = None, colour_refiner: int | None = None,
                 colour_masked: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.config = config
        p, d = config.patch_size, config.width
        self.num_registers = num_registers
        self.code_embed = nn.Linear(code_dim, d)
        self.nested_mask_token = nn.Parameter(torch.zeros(d))
        self.prefix_mask_token = nn.Parameter(torch.zeros(d))
        self.null_condition = nn.Parameter(torch.zeros(d))
        if config.register_positions:
            self.register_index = nn.Parameter(torch.zeros(num_registers, d))
            self.register_step = nn.Parameter(torch.zeros(max_steps, d))
        self.patch_embed = nn.Linear(latent_channels * p * p, d)
        self.positions = PositionTable3D(max_steps, latent_size[0] // p, latent_size[1] // p, d)
        self.time_embed = TimestepEmbedder(d, scale=config.timestep_scale)
        self.blocks = nn.ModuleList(
            AdaLNBlock(d, config.head_dim, config.mlp_hidden, groups=2) for _ in range(config.depth)
        )
        self.head_modulation = GroupModulation(d, groups=1, chunks=2)
        self.head = nn.Linear(d, latent_channels * p * p)
        if config.linear_path:  # see DecoderConfig.linear_path
            self.grid = (latent_size[0] // p, latent_size[1] // p)
            if config.linear_input == "registers":
                self.linear_in = nn.Linear(d, code_dim)
            self.linear_mix = nn.Linear(num_registers * code_dim, self.grid[0] * self.grid[1] * config.linear_path)
            self.linear_out = nn.Linear(config.linear_path, latent_channels * p * p)
            if config.linear_temporal:  # see DecoderConfig.linear_temporal
                self.linear_temporal = nn.Linear(2 * config.linear_path, config.linear_path, bias=False)
        self.colour_token, self.colour_refiner, self.colour_masked = colour_token, colour_refiner, tuple(colour_masked)
        if colour_token is not None:
            if not config.linear_path or config.linear_input != "codes":
                raise ValueError("the colour token needs the decoder's linear path reading codes "
                                 "(DecoderConfig.linear_path > 0, linear_input='codes')")
            size = self.grid[0] * self.grid[1] * config.linear_path
            self.colour_read = nn.Linear(size, code_dim)
            self.colour_out = nn.Linear(code_dim, size, bias=False)
            self.colour_gain = nn.Parameter(torch.ones(num_registers, code_dim))

    def embed_tokens(self, codes: torch.Tensor, keep: int | torch.Tensor, prefix_steps: int | torch.Tensor = 0,
                     null: torch.Tensor | None = None) -> torch.Tensor:
        """FSQ codes ``[B,t,N,d]`` -> decoder registers ``[B,t,N,D]``.

        keep: tokens kept per step (int or ``[B]``); positions ``>= keep`` become the nested-dropout mask
            token, so ids beyond ``keep`` never influence the output.
        prefix_steps: leading steps given as clean latents (int or ``[B]``); their registers become the
            prefix-mask token.
        null: bool ``[B]``; those samples get the null condition everywhere (classifier-free guidance).
        """
        b, t, n, _ = codes.shape
        x = self.code_embed(codes)
        if self.config.register_positions:  # only kept tokens carry their position; masks stay as they are
            x = x + (self.register_index[:n] + self.register_step[:t, None]).to(x.dtype)
        dropped, prefixed = _masks(codes, keep, prefix_steps)
        x = torch.where(dropped[:, None, :, None], self.nested_mask_token.to(x.dtype), x)
        x = torch.where(prefixed[:, :, None, None], self.prefix_mask_token.to(x.dtype), x)
        if null is not None:
            x = torch.where(null.reshape(b, 1, 1, 1), self.null_condition.to(x.dtype), x)
        return x

    def code_path(self, codes: torch.Tensor, keep: int | torch.Tensor, prefix_steps: int | torch.Tensor = 0,
                  null: torch.Tensor | None = None, first_step: int | torch.Tensor = 0) -> torch.Tensor | None:
        """The linear path's data ``[B,t,L,C*p*p]`` from FSQ codes ``[B,t,N,d]`` for a decoder whose path reads
        codes (``linear_input="codes"``; ``None`` for any other decoder). Positions ``>= keep``, prefix steps
        and ``null`` samples read code 0, as :meth:`embed_tokens` masks them; pass the result to
        :meth:`forward` as ``linear``. ``first_step`` (int or int64 ``[B]``): the step holding the colour
        token's colour (read even when it is a prefix step; no effect without a colour token)."""
        if not self.config.linear_path or self.config.linear_input != "codes":
            return None
        b, t, n = codes.shape[:3]
        dropped, prefixed = _masks(codes, keep, prefix_steps)
        off = dropped[:, None, :] | prefixed[:, :, None]  # [B,t,N]
        if null is not None:
            off = off | null.reshape(b, 1, 1)
        values = codes.masked_fill(off[..., None], 0.0)
        if self.colour_token is None:
            return self._linear_mix_out(values, prefixed)
        start = _per_sample(first_step, b, codes.device)
        kept = ~dropped[:, self.colour_token]  # [B]
        if null is not None:
            kept = kept & ~null.reshape(b)
        first = torch.arange(t, device=codes.device)[None, :] == start[:, None]  # [B,t]
        gain = self.colour_gain[_per_sample(keep, b, codes.device) - 1][:, None]  # [B,1,d]
        gain = torch.where(first[..., None], 1.0, gain) * kept[:, None, None]  # [B,t,d]
        colour = (codes[torch.arange(b, device=codes.device), start, self.colour_token], gain)  # [B,d], [B,t,d]
        # the first step: the colour token's own coefficients come from its refiner; the tokens refining those
        # (colour_masked) are left out
        masked = torch.zeros(n, dtype=torch.bool, device=codes.device)
        masked[[self.colour_token, *self.colour_masked]] = True
        if self.colour_refiner is not None:
            masked[self.colour_refiner] = True
        moved = values.masked_fill((first[:, :, None] & masked)[..., None], 0.0)
        if self.colour_refiner is not None:
            own = torch.where(first[..., None], values[:, :, self.colour_refiner], moved[:, :, self.colour_token])
            moved = torch.cat([moved[:, :, :self.colour_token], own[:, :, None], moved[:, :, self.colour_token + 1:]],
                              dim=2)
        return self._linear_mix_out(moved, prefixed, colour)

    def null_registers(self, batch: int, steps: int) -> torch.Tensor:
        """Registers of the unconditional branch: the null condition everywhere, ``[B,t,N,D]``."""
        return self.null_condition.expand(batch, steps, self.num_registers, -1)

    def forward(self, x: torch.Tensor, s: torch.Tensor, registers: torch.Tensor,
                feature_block: int | None = None, linear: torch.Tensor | None = None) -> DecoderOutput:
        """Velocity ``v = eps - x0`` of ``x [B,C,t,h,w]`` at flow time ``s [B]`` (or per step ``[B,t]``),
        conditioned on ``registers [B,t,N,D]``.

        feature_block: also return the patch tokens ``[B,t,L,D]`` after this many blocks (1-based; for
        REPA). Raises ``ValueError`` outside ``[1, depth]``.
        linear: the linear path's data ``[B,t,L,C*p*p]`` from :meth:`code_path`; required by a decoder whose
            path reads codes (``ValueError`` without it), refused by any other.
        """
        if feature_block is not None and not 1 <= feature_block <= len(self.blocks):
            raise ValueError(f"feature_block must lie in [1, {len(self.blocks)}], got {feature_block}")
        reads_codes = bool(self.config.linear_path) and self.config.linear_input == "codes"
        if reads_codes != (linear is not None):
            raise ValueError("this decoder's linear path reads FSQ codes: pass linear=decoder.code_path(...)"
                             if reads_codes else "this decoder takes no linear= (its linear path, if any, reads "
                             "the registers)")
        t, h, w = x.shape[2:]
        p = self.config.patch_size
        grid = (h // p, w // p)
        patches = self.patch_embed(patchify(x, p)) + self.positions(t, *grid)  # [B,t,L,D]
        n_reg, n_patch = registers.shape[2], patches.shape[2]
        c = self.time_embed(s if s.dim() == 2 else s[:, None])  # [B,t|1,D]
        parts = [registers.to(patches.dtype), patches]  # each step: [registers (N) | patches (L)]
        mask = attention_mask(self.attention_mask_kind, t, n_reg, n_patch, x.device)
        features = None
        for i, block in enumerate(self.blocks, start=1):
            parts = block(parts, c, SEQUENCE_GROUPS, mask)
            if i == feature_block:
                features = parts[1]  # [B,t,L,D]
        out = parts[1]  # [B,t,L,D]
        shift, scale = self.head_modulation(c)[:, :, 0, :, None].unbind(2)  # [B,t|1,1,D] each
        y = self.head(modulate(layer_norm(out), shift, scale))  # [B,t,L,C*p*p]
        if linear is not None:
            if grid != self.grid:
                raise ValueError(f"the decoder's linear path is built for a {self.grid} patch grid, got {grid}")
            y = y + linear.to(y.dtype)
        elif self.config.linear_path:
            y = y + self.linear_readout(registers.to(y.dtype), grid)
        y = unpatchify(y, p, grid)
        if self.config.prediction == "data":  # x0 -> the velocity (x_s - x0) / s
            y = data_to_velocity(x, y, s)
        return DecoderOutput(y, features)

    def linear_readout(self, registers: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Registers ``[B,t,N,D]`` -> the linear path's data ``[B,t,L,C*p*p]``."""
        if grid != self.grid:
            raise ValueError(f"the decoder's linear path is built for a {self.grid} patch grid, got {grid}")
        return self._linear_mix_out(self.linear_in(registers))

    def _linear_mix_out(self, values: torch.Tensor, prefixed: torch.Tensor | None = None,
                        colour: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``[B,t,N,code_dim]`` -> ``[B,t,L,C*p*p]``: a step's values mixed to r per patch (plus the temporal
        mix, ``DecoderConfig.linear_temporal``, where ``prefixed [B,t]`` marks the prefix steps; then the colour,
        ``colour = (codes [B,d], gains [B,t,d])``, see the class), each patch's r values to its latent values."""
        b, t = values.shape[:2]
        mixed = self.linear_mix(values.flatten(2)).view(b, t, self.grid[0] * self.grid[1], -1)  # [B,t,L,r]
        if self.config.linear_temporal and t > 1:
            mixed = mixed + self.temporal_term(mixed, prefixed)
        if colour is not None:
            codes, gain = colour
            flat = mixed.flatten(2)  # [B,t,L*r]
            mixed = (flat + self.colour_out(gain * (codes[:, None].to(flat.dtype) - self.colour_read(flat)))).view_as(mixed)
        return self.linear_out(mixed)

    def temporal_term(self, mixed: torch.Tensor, prefixed: torch.Tensor | None) -> torch.Tensor:
        """What ``DecoderConfig.linear_temporal`` adds to the r values a patch ``mixed [B,t,L,r]`` (t > 1):
        ``W [mixed_{t-1}; mixed_t]`` on every step after the first, zero on the first step and on a step whose
        predecessor is a prefix step (``prefixed [B,t]`` bool, or None: none)."""
        term = self.linear_temporal(torch.cat([mixed[:, :-1], mixed[:, 1:]], dim=-1))  # [B,t-1,L,r]
        if prefixed is not None:
            term = term.masked_fill(prefixed[:, :-1, None, None], 0.0)
        return torch.cat([torch.zeros_like(mixed[:, :1]), term], dim=1)

    @property
    def attention_mask_kind(self) -> str:
        return "full" if self.config.attention == "full" else "time_block_causal"


def _masks(codes: torch.Tensor, keep: int | torch.Tensor,
           prefix_steps: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For codes ``[B,t,N,d]``: the token positions past ``keep`` (bool ``[B,N]``) and the prefix steps (bool
    ``[B,t]``) of each sample."""
    b, t, n, _ = codes.shape
    position = torch.arange(n, device=codes.device)
    dropped = position[None, :] >= _per_sample(keep, b, codes.device)[:, None]
    step = torch.arange(t, device=codes.device)
    prefixed = step[None, :] < _per_sample(prefix_steps, b, codes.device)[:, None]
    return dropped, prefixed
