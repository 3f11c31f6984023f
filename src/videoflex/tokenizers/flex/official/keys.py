"""The key table of a released VideoFlexTok checkpoint: every official tensor name, its shape, and the
tensors of :class:`~videoflex.tokenizers.flex.model.VideoFlexTok` made from it.

Official tensors are named ``[video_tokenizer.]{vae.vidtok|encoder.module_dict.<name>|decoder.module_dict.
<name>}.<param>``, with the module names of the checkpoint's :class:`OfficialLayout`. Three need reshaping:
the 3-D position parameter ``posembs [3,1,D,M]`` becomes our ``table_t/table_h/table_w`` (the rows our grid
uses), the register parameter ``[t_max,n_max,D]`` is cut to the steps and registers used, and the decoder
adaLN rows (one ``6D`` chunk per packed sub-sequence, in the packer's ``input_list_read_keys`` order) are
reordered to our ``[patches, registers]`` groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from videoflex.tokenizers.flex.config import TokenizerConfig
from videoflex.tokenizers.flex.decoder import PATCH_GROUP, REGISTER_GROUP
from videoflex.tokenizers.flex.official.config import OfficialLayout
from videoflex.vae.vidtok import VidTokVAE

PREFIX = "video_tokenizer."
VAE_PREFIX = "vae.vidtok."


def strip_prefix(key: str) -> str:
    """An official tensor name without the ``video_tokenizer.`` prefix of full-model files."""
    return key.removeprefix(PREFIX)


@dataclass(frozen=True)
class KeyRule:
    """One official tensor: its name (without ``video_tokenizer.``), shape, and our tensors made from it."""

    official: str
    shape: tuple[int, ...]
    ours: tuple[str, ...]
    convert: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


def _same(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (t,)


def _positions_rule(official: str, ours: str, width: int, size: int, grid: tuple[int, int, int]) -> KeyRule:
    def convert(t: torch.Tensor) -> tuple[torch.Tensor, ...]:  # [3,1,D,M] -> [t,D], [h,D], [w,D]
        return tuple(t[i, 0, :, :n].T.contiguous() for i, n in enumerate(grid))

    return KeyRule(official, (3, 1, width, size), tuple(f"{ours}.table_{a}" for a in "thw"), convert)


def _linear(official: str, ours: str, shape: tuple[int, int], bias: bool = True) -> list[KeyRule]:
    rules = [KeyRule(f"{official}.weight", shape, (f"{ours}.weight",), _same)]
    return rules + [KeyRule(f"{official}.bias", shape[:1], (f"{ours}.bias",), _same)] if bias else rules


def _blocks(official: str, ours: str, width: int, depth: int, hidden: int) -> list[KeyRule]:
    rules = []
    for i in range(depth):
        for w in ("wq", "wk", "wv", "proj"):
            rules += _linear(f"{official}.blocks.{i}.attn.{w}", f"{ours}.blocks.{i}.attn.{w}", (width, width), False)
        for fc, shape in (("fc1", (hidden, width)), ("fc2", (width, hidden)), ("fc3", (hidden, width))):
            rules += _linear(f"{official}.blocks.{i}.mlp.{fc}", f"{ours}.blocks.{i}.mlp.{fc}", shape, False)
    return rules


def key_table(config: TokenizerConfig, layout: OfficialLayout) -> list[KeyRule]:
    """Every tensor of an official checkpoint for ``config``/``layout`` and how it becomes ours."""
    rules: list[KeyRule] = []
    with torch.device("meta"):
        vae_shapes = {k: tuple(v.shape) for k, v in VidTokVAE(config.vae).state_dict().items()}
    rules += [KeyRule(VAE_PREFIX + k, s, (f"vae.{k}",), _same) for k, s in vae_shapes.items()]

    c, h, w = config.vae.latent_channels, *config.latent_size
    steps, n, code_dim = config.chunk_steps, config.num_registers, config.fsq.dim
    e, en = config.encoder, layout.encoder
    pe = "encoder.module_dict."
    rules += _linear(f"{pe}{en.patch_embed}.patch_proj", "encoder.patch_embed", (e.width, c * e.patch_size ** 2))
    rules.append(_positions_rule(f"{pe}{en.positions}.posembs", "encoder.positions", e.width, layout.positions[0],
                                 (steps, h // e.patch_size, w // e.patch_size)))
    rules.append(KeyRule(f"{pe}{en.registers}.registers", (*layout.register_table, e.width), ("encoder.registers",),
                         lambda t: (t[:steps, :n].contiguous(),)))
    rules += _blocks(f"{pe}{en.transformer}", "encoder", e.width, e.depth, e.mlp_hidden)
    rules += _linear(f"{pe}{en.head}.proj", "encoder.to_codes", (code_dim, e.width))

    d, dn = config.decoder, layout.decoder
    pd = "decoder.module_dict."
    rules += _linear(f"{pd}{dn.code_embed}.proj", "decoder.code_embed", (d.width, code_dim))
    rules += [KeyRule(f"{pd}{dn.nested_mask}.dropout_mask_token", (d.width,), ("decoder.nested_mask_token",), _same),
              KeyRule(f"{pd}{dn.prefix_mask}.dropout_mask_token", (d.width,), ("decoder.prefix_mask_token",), _same),
              KeyRule(f"{pd}{dn.null_condition}.nullcond", (d.width,), ("decoder.null_condition",), _same)]
    rules += _linear(f"{pd}{dn.patch_embed}.patch_proj", "decoder.patch_embed", (d.width, c * d.patch_size ** 2))
    rules.append(_positions_rule(f"{pd}{dn.positions}.posembs", "decoder.positions", d.width, layout.positions[1],
                                 (steps, h // d.patch_size, w // d.patch_size)))
    rules += _linear(f"{pd}{dn.time_embed}.mlp.0", "decoder.time_embed.fc1", (d.width, 256))
    rules += _linear(f"{pd}{dn.time_embed}.mlp.2", "decoder.time_embed.fc2", (d.width, d.width))
    rules += _blocks(f"{pd}{dn.transformer}", "decoder", d.width, d.depth, d.mlp_hidden)
    # adaLN: the official rows hold one 6D chunk per packed sub-sequence in the packer's order; ours
    # hold the groups PATCH_GROUP, REGISTER_GROUP
    groups = {PATCH_GROUP: "patches", REGISTER_GROUP: "registers"}
    source = [layout.decoder_order.index(groups[g]) for g in sorted(groups)]

    def reorder(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        chunks = t.chunk(2, dim=0)
        return (torch.cat([chunks[i] for i in source]).contiguous(),)

    for i in range(d.depth):
        for kind, shape in (("weight", (12 * d.width, d.width)), ("bias", (12 * d.width,))):
            rules.append(KeyRule(f"{pd}{dn.transformer}.blocks.{i}.adaLN_modulation.1.{kind}", shape,
                                 (f"decoder.blocks.{i}.modulation.linear.{kind}",), reorder))
    rules += _linear(f"{pd}{dn.head}.adaLN_modulation.1", "decoder.head_modulation.linear", (2 * d.width, d.width))
    rules += _linear(f"{pd}{dn.head}.proj", "decoder.head", (c * d.patch_size ** 2, d.width))
    return rules


def official_shapes(config: TokenizerConfig, layout: OfficialLayout) -> dict[str, tuple[int, ...]]:
    """Names (without ``video_tokenizer.``) and shapes of every tensor of an official checkpoint."""
    return {rule.official: rule.shape for rule in key_table(config, layout)}
