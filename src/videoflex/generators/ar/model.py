"""The autoregressive generator: a LLaMA-style decoder over a tokenizer's ids (kind ``"ar-generator"``).

Sequence of a clip with ids ``[t, k]`` laid out in the config's order (:mod:`~videoflex.generators.ar.orders`)
as ``x_0 .. x_{L-1}`` (``L = t * k``)::

    position   0          1     2    ...  L-1
    input      class      x_0   x_1  ...  x_{L-2}
    predicts   x_0        x_1   x_2  ...  x_{L-1}

The input at position p is the embedding of the previous id (position 0: of the class, or of the learned null
class) plus learned embeddings of the latent step and the rank of the id it *predicts* (its coordinates in
the layout), so the model knows what it predicts whatever the layout's t and k. Positions drive RoPE, the
causal mask and the KV cache (one :meth:`ARGenerator.forward` serves training, prefill and one-token decoding,
as gpt-fast). Blocks: pre-norm affine RMSNorm, attention without QK-norm at scale ``1/sqrt(head_dim)`` with
RoPE, SwiGLU, no biases; a final RMSNorm and an untied linear head.

Text conditioning (``config.text_encoder`` set): every position also attends to the prompt's token features
(:class:`~videoflex.generators.text_encoder.TextFeatures` of a frozen encoder, RMS-normed once) through a
cross-attention sub-layer in each block, between self-attention and the MLP. Its keys and values depend on
the text only: a cache holds them for the whole sequence (:meth:`ARGenerator.new_cache`). The learned null
text (one token of width ``text_dim``) stands for "no prompt": guidance dropout and CFG's unconditional rows
use it, with the null class. A model may have classes and text together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from videoflex.generators.ar.config import ARConfig
from videoflex.generators.ar.orders import SequenceLayout
from videoflex.generators.ar.presets import PRESETS
from videoflex.generators.text_encoder import TextFeatures
from videoflex.models.pretrained import PartCount, PretrainedModel
from videoflex.nn.attention import CrossKV, KVCache
from videoflex.nn.blocks import Block
from videoflex.nn.norm import RMSNorm
from videoflex.nn.rope import rope_angles

KIND = "ar-generator"


@dataclass(frozen=True)
class ARCache:
    """A preallocated KV cache of every block for ``batch`` rows and ``max_positions`` positions, and the
    causal mask ``[max_positions, max_positions]`` (bool, True = attend) whose rows the positions select.
    ``cross``: a text model's cross-attention keys and values of every block (None: not cached; the text is
    then passed to every call)."""

    layers: tuple[KVCache, ...]
    mask: torch.Tensor
    cross: tuple[CrossKV, ...] | None = None

    @property
    def max_positions(self) -> int:
        return self.mask.shape[0]


class ARGenerator(PretrainedModel):
    """Class- and/or text-conditional (or unconditional) autoregressive model over token ids; see the module
    docstring."""

    kind = KIND
    config_class = ARConfig
    presets = PRESETS

    def __init__(self, config: ARConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.class_embed = nn.Embedding(c.num_classes + 1, c.width)  # the last row is the null class
        self.token_embed = nn.Embedding(c.vocab_size, c.width)
        self.step_embed = nn.Embedding(c.max_steps, c.width)
        self.rank_embed = nn.Embedding(c.tokens_per_step, c.width)
        self.blocks = nn.ModuleList(Block(c.width, c.head_dim, c.mlp_hidden, qk_norm=False, scale=None, norm="rms",
                                          cross_dim=c.text_dim) for _ in range(c.depth))
        self.norm = RMSNorm(c.width)
        self.head = nn.Linear(c.width, c.vocab_size, bias=False)
        self.text_norm: RMSNorm | None = None
        self.null_text: nn.Parameter | None = None
        if c.has_text:
            self.text_norm = RMSNorm(c.text_dim)
            self.null_text = nn.Parameter(torch.zeros(c.text_dim))
        self.init_weights()

    def init_weights(self) -> None:
        """Normal(0, init_std) embeddings, linears and null text; the residual projections (attention output,
        SwiGLU's fc2, cross-attention output) scaled by ``1/sqrt(residual layers)`` (GPT-2, Radford et al.
        2019: 2 per block, 3 with cross-attention); RMSNorm weights one."""
        std = self.config.init_std
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
        residuals = (3 if self.config.has_text else 2) * self.config.depth
        for block in self.blocks:
            out = (block.attn.proj, block.mlp.fc2) + ((block.cross_attn.proj,) if block.cross_attn else ())
            for m in out:
                nn.init.normal_(m.weight, std=std / math.sqrt(residuals))
        if self.null_text is not None:
            nn.init.normal_(self.null_text, std=std)

    def parameter_parts(self) -> tuple[PartCount, ...]:
        def count(*modules: nn.Module) -> int:
            return sum(p.numel() for m in modules for p in m.parameters())

        text = (self.text_norm,) if self.text_norm is not None else ()
        null_text = self.null_text.numel() if self.null_text is not None else 0  # conditions count as "embed"
        embed = count(self.class_embed, self.token_embed, self.step_embed, self.rank_embed, *text) + null_text
        return (PartCount("embed", embed), PartCount("blocks", count(self.blocks)),
                PartCount("head", count(self.norm, self.head)))

    # ------------------------------------------------------------------------------------ layout

    def layout(self, steps: int, k: int | None = None) -> SequenceLayout:
        """The layout of ``steps`` steps of ``k`` ids (default: ``tokens_per_step``) in the config's order;
        ``ValueError`` beyond ``max_steps`` or ``tokens_per_step``."""
        c = self.config
        k = c.tokens_per_step if k is None else k
        if not 1 <= steps <= c.max_steps:
            raise ValueError(f"{c.name}: a context window holds 1 to max_steps={c.max_steps} steps, got {steps}")
        if not 1 <= k <= c.tokens_per_step:
            raise ValueError(f"{c.name}: k (tokens per step) must be in [1, tokens_per_step={c.tokens_per_step}], "
                             f"got {k}")
        return SequenceLayout(c.order, steps, k)

    def new_cache(self, batch: int, max_positions: int, text: TextFeatures | None = None) -> ARCache:
        """A zeroed :class:`ARCache` on the model's device, in its dtype; with ``text`` (``batch`` rows, text
        models only) it also holds the cross-attention keys and values of that text."""
        p = self.head.weight
        layers = tuple(KVCache(batch, self.config.heads, max_positions, self.config.head_dim, p.dtype, p.device)
                       for _ in self.blocks)
        positions = torch.arange(max_positions, device=p.device)
        cross = None if text is None else self.text_keys_values(self.check_text(text, batch))
        return ARCache(layers, positions[None, :] <= positions[:, None], cross)

    # ------------------------------------------------------------------------------------ text

    def check_text(self, text: TextFeatures | None, batch: int) -> TextFeatures | None:
        """``text`` on the model's device, checked: required (``batch`` rows, width ``text_dim``) by a text
        model, refused by any other (``ValueError``)."""
        c = self.config
        if not c.has_text:
            if text is not None:
                raise ValueError(f"{c.name} is not text-conditioned (text_encoder is empty): pass text=None")
            return None
        if text is None:
            raise ValueError(f"{c.name} is text-conditioned (text encoder {c.text_encoder!r}): text features are "
                             "needed")
        if text.batch != batch or text.dim != c.text_dim:
            raise ValueError(f"{c.name}: text features must be [{batch}, L, text_dim={c.text_dim}] (text encoder "
                             f"{c.text_encoder!r}), got {tuple(text.features.shape)}")
        return text.to(self.head.weight.device)

    def null_text_features(self, batch: int, length: int) -> TextFeatures:
        """The learned null text as ``batch`` rows of ``length >= 1`` tokens: the null token first, the rest
        masked out (text models only)."""
        if self.null_text is None:
            raise ValueError(f"{self.config.name} is not text-conditioned: it has no null text")
        features = torch.zeros(batch, length, self.config.text_dim, device=self.null_text.device)
        features = torch.cat([self.null_text.float().expand(batch, 1, -1), features[:, 1:]], dim=1)
        mask = torch.zeros(batch, length, dtype=torch.bool, device=self.null_text.device)
        mask[:, 0] = True
        return TextFeatures(features, mask)

    def drop_text(self, text: TextFeatures, drop: torch.Tensor) -> TextFeatures:
        """``text`` with the rows where ``drop [B]`` (bool) is True replaced by the null text."""
        null = self.null_text_features(text.batch, text.features.shape[1])
        return TextFeatures(torch.where(drop[:, None, None], null.features, text.features),
                            torch.where(drop[:, None], null.mask, text.mask))

    def text_keys_values(self, text: TextFeatures) -> tuple[CrossKV, ...]:
        """The cross-attention keys and values of every block for ``text`` (checked by :meth:`check_text`)."""
        if self.text_norm is None:
            raise ValueError(f"{self.config.name} is not text-conditioned: it has no cross-attention")
        features = self.text_norm(text.features.to(self.head.weight.dtype))
        return tuple(block.cross_attn.keys_values(features, text.mask) for block in self.blocks)

    # ------------------------------------------------------------------------------------ forward

    def hidden(self, tokens: torch.Tensor, cond: torch.Tensor, positions: torch.Tensor, layout: SequenceLayout,
               cache: ARCache | None = None, text: TextFeatures | None = None) -> torch.Tensor:
        """The final-norm features ``[B, S, D]`` of :meth:`forward` (the head not applied)."""
        c = self.config
        if tokens.dim() != 2 or positions.dim() != 1 or tokens.shape[1] != positions.shape[0]:
            raise ValueError(f"tokens must be [B, S] with positions [S], got {tuple(tokens.shape)} and "
                             f"{tuple(positions.shape)}")
        if cond.shape != (tokens.shape[0],):
            raise ValueError(f"cond must be [B] = [{tokens.shape[0]}], got {tuple(cond.shape)}")
        if tokens.dtype != torch.int64 or cond.dtype != torch.int64 or positions.dtype != torch.int64:
            raise ValueError(f"tokens, cond and positions must be int64, got {tokens.dtype}, {cond.dtype}, "
                             f"{positions.dtype}")
        if layout.steps > c.max_steps or layout.k > c.tokens_per_step:
            raise ValueError(f"{c.name}: layout of {layout.steps} steps x {layout.k} tokens exceeds "
                             f"max_steps={c.max_steps} x tokens_per_step={c.tokens_per_step}")
        step, rank = layout.coords(positions.device)
        first = (positions == 0)[None, :, None]
        x = torch.where(first, self.class_embed(cond)[:, None], self.token_embed(tokens))
        x = x + self.step_embed(step[positions]) + self.rank_embed(rank[positions])
        rope = rope_angles(positions, c.head_dim, c.rope_base)
        cross = self._cross(tokens.shape[0], cache, text)
        if cache is None:
            mask = positions[None, :] <= positions[:, None]
            for block, kv in zip(self.blocks, cross, strict=True):
                x = block(x, mask, rope, cross=kv)
        else:
            mask = cache.mask[positions]
            for block, layer, kv in zip(self.blocks, cache.layers, cross, strict=True):
                x = block(x, mask, rope, layer, positions, cross=kv)
        return self.norm(x)

    def _cross(self, batch: int, cache: ARCache | None, text: TextFeatures | None) -> tuple[CrossKV | None, ...]:
        """Each block's cross-attention keys and values: from the cache, else from ``text``; Nones for a model
        without text."""
        if cache is not None and cache.cross is not None:
            if text is not None:
                raise ValueError("the cache already holds the text (new_cache(..., text=...)): pass text=None")
            if cache.cross[0].batch != batch:
                raise ValueError(f"the cache holds the text of {cache.cross[0].batch} rows, tokens have {batch}")
            return cache.cross
        text = self.check_text(text, batch)
        if text is None:
            return (None,) * len(self.blocks)
        return self.text_keys_values(text)

    def forward(self, tokens: torch.Tensor, cond: torch.Tensor, positions: torch.Tensor, layout: SequenceLayout,
                cache: ARCache | None = None, text: TextFeatures | None = None) -> torch.Tensor:
        """Next-id logits ``[B, S, vocab_size]`` at ``positions``.

        tokens: ``[B, S]`` int64, the id at layout position ``positions[s] - 1`` (the input of position
            ``positions[s]``); ignored where ``positions[s] == 0``, which holds the condition.
        cond: ``[B]`` int64 class labels in ``[0, num_classes]`` (``num_classes`` = the null class).
        positions: ``[S]`` int64 sequence positions in ``[0, layout.length)``. Without a cache the call sees
            only these positions (training: ``arange(L)``); with one it writes their keys and values into
            ``cache`` and attends to every earlier position written (prefill: ``arange(n)``; decoding: one).
        layout: the order, steps and ids per step of the sequence (:meth:`layout`).
        text: a text model's prompt features (``B`` rows, width ``text_dim``; the null text where a row is
            unconditional: :meth:`null_text_features`), or None when ``cache`` was made with the text. Models
            without text refuse it (``ValueError``).
        """
        return self.head(self.hidden(tokens, cond, positions, layout, cache, text))

    # ------------------------------------------------------------------------------------ training

    def check_ids(self, ids: torch.Tensor) -> None:
        """``ValueError`` unless ``ids`` is an int64 ``[B, t, k]`` tensor of ids in ``[0, vocab_size)``."""
        if ids.dim() != 3 or ids.dtype != torch.int64:
            raise ValueError(f"ids must be int64 [B, t, k], got {ids.dtype} {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"ids must be in [0, vocab_size={self.config.vocab_size}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")

    def check_labels(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Class labels ``[B]`` int64 in ``[0, num_classes)`` (``ValueError`` otherwise); ``None`` for an
        unconditional model is the null class. Returns the labels on the model's device."""
        c = self.config
        device = self.head.weight.device
        if labels is None:
            if c.num_classes:
                raise ValueError(f"{c.name} is class-conditional ({c.num_classes} classes): labels are needed")
            return torch.full((batch,), c.null_class, dtype=torch.int64, device=device)
        if labels.shape != (batch,) or labels.dtype != torch.int64:
            raise ValueError(f"labels must be int64 [{batch}], got {labels.dtype} {tuple(labels.shape)}")
        if not c.num_classes:
            raise ValueError(f"{c.name} has no classes (num_classes=0): pass labels=None")
        if labels.numel() and (labels.min() < 0 or labels.max() >= c.num_classes):
            raise ValueError(f"labels must be in [0, num_classes={c.num_classes}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        return labels.to(device)

    def training_loss(self, ids: torch.Tensor, labels: torch.Tensor | None,
                      generator: torch.Generator | None = None, text: TextFeatures | None = None,
                      drop: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-id cross-entropy (float32 scalar) of clips ``ids [B, t, k]`` (int64) with class
        ``labels [B]`` (int64; None for a model without classes) and prompt features ``text`` (``B`` rows;
        required by a text model, refused by any other).

        Each clip's condition is dropped with probability ``guidance_dropout`` (one draw per clip from
        ``generator``, which must be on the model's device): its label becomes the null class and its text the
        null text, so that the same model gives CFG's unconditional logits. ``drop``: ``[B]`` bool, the clips
        to drop, drawn by the caller instead (``guidance_dropout`` and ``generator`` are then not used).
        ``t <= max_steps`` and ``k <= tokens_per_step`` (a smaller k trains that budget: nested budgets are a
        choice of the caller).
        """
        self.check_ids(ids)
        b, t, k = ids.shape
        cond = self.check_labels(labels, b)
        text = self.check_text(text, b)
        layout = self.layout(t, k)
        ids = ids.to(cond.device)
        if drop is None and self.config.guidance_dropout:
            drop = torch.rand(b, generator=generator, device=cond.device) < self.config.guidance_dropout
        if drop is not None:
            if drop.shape != (b,) or drop.dtype != torch.bool:
                raise ValueError(f"drop must be bool [{b}], got {drop.dtype} {tuple(drop.shape)}")
            drop = drop.to(cond.device)
            cond = torch.where(drop, self.config.null_class, cond)
            if text is not None:
                text = self.drop_text(text, drop)
        seq = layout.to_sequence(ids)
        inputs = F.pad(seq[:, :-1], (1, 0))
        positions = torch.arange(layout.length, device=cond.device)
        logits = self(inputs, cond, positions, layout, text=text)
        return F.cross_entropy(logits.float().flatten(0, 1), seq.flatten())
