"""Named presets of the AR generator (gathered with every kind's in :data:`videoflex.registry.PRESETS`).

Every size is laid out for the long-video default of issue 16: 21 latent steps (81 frames with a 4x temporal
VAE) of 32 tokens each, 672 ids, over the flex tokenizers' 64,000-code vocabulary. Sizes follow LLaMA's
shapes (head_dim 64 or 128, SwiGLU hidden :func:`llama_hidden`). They are unconditional; a class-conditional
model sets ``num_classes``, a text-conditional one ``text_encoder`` and ``text_dim`` (``dataclasses.replace``;
``ar-debug-text`` is the small text one). Parameter counts (``videoflex presets``, built on the
meta device; embeddings and head included): ar-s 92.8M, ar-m 183.3M, ar-l 439.5M, ar-xl 876.2M.
"""

from __future__ import annotations

from collections.abc import Callable

from videoflex.generators.ar.config import ARConfig, llama_hidden

FLEX_VOCAB = 64000
"""The flex tokenizers' codebook: FSQ levels (8, 8, 8, 5, 5, 5) (VideoFlexTok, Apple 2025)."""


def debug() -> ARConfig:
    """For tests, seconds on a CPU: a 64-id vocabulary, 4 classes, 3 steps of 4 tokens, 2 blocks of width 64."""
    return ARConfig(name="ar-debug", vocab_size=64, num_classes=4, tokens_per_step=4, max_steps=3, width=64,
                    depth=2, head_dim=16, mlp_hidden=128)


def debug_text() -> ARConfig:
    """For tests and CPU runs of text conditioning: :func:`debug` without classes, conditioned on prompts
    through all-MiniLM-L6-v2 (``"minilm"``, features of width 384, 16 encoder tokens per prompt)."""
    return ARConfig(name="ar-debug-text", vocab_size=64, num_classes=0, tokens_per_step=4, max_steps=3, width=64,
                    depth=2, head_dim=16, mlp_hidden=128, text_encoder="minilm", text_dim=384,
                    text_max_tokens=16)


def _sized(name: str, width: int, depth: int, head_dim: int) -> ARConfig:
    return ARConfig(name=name, vocab_size=FLEX_VOCAB, num_classes=0, tokens_per_step=32, max_steps=21,
                    width=width, depth=depth, head_dim=head_dim, mlp_hidden=llama_hidden(width))


def tiny() -> ARConfig:
    """d3, D=128 (0.6M in the blocks): the smallest size of CPU scaling runs."""
    return _sized("ar-2xs", 128, 3, 64)


def xsmall() -> ARConfig:
    """d4, D=256 (3.4M in the blocks): the shipped CPU generators' size (``configs/generator_shapes_*.yaml``)."""
    return _sized("ar-xs", 256, 4, 64)


def small() -> ARConfig:
    """d8, D=512 (27M parameters in the blocks)."""
    return _sized("ar-s", 512, 8, 64)


def medium() -> ARConfig:
    """d12, D=768 (85M in the blocks)."""
    return _sized("ar-m", 768, 12, 64)


def large() -> ARConfig:
    """d24, D=1024 (308M in the blocks)."""
    return _sized("ar-l", 1024, 24, 64)


def xlarge() -> ARConfig:
    """d24, D=1536 (680M in the blocks), about 0.9B with embeddings and head."""
    return _sized("ar-xl", 1536, 24, 128)


PRESETS: dict[str, Callable[[], ARConfig]] = {
    "ar-debug": debug,
    "ar-debug-text": debug_text,
    "ar-2xs": tiny,
    "ar-xs": xsmall,
    "ar-s": small,
    "ar-m": medium,
    "ar-l": large,
    "ar-xl": xlarge,
}
