"""Named presets of the grid tokenizer (all kinds' presets are gathered in :data:`videoflex.registry.PRESETS`).

Each matches a flex preset's frame size, VAE, FSQ levels, width, recipe (flow times, decode steps) and, within
about 10%, its parameter count, so that the two differ in their tokens only (docs/design.md, "Model families").
"""

from __future__ import annotations

from collections.abc import Callable

from videoflex.nn.flow import SamplerConfig
from videoflex.tokenizers.config import FSQConfig, LossConfig
from videoflex.tokenizers.grid.config import GridDecoderConfig, GridEncoderConfig, GridTokenizerConfig
from videoflex.vae.config import VAEConfig


def tiny() -> GridTokenizerConfig:
    """Seconds on a CPU, for tests (as ``flex-tiny``): 32x32 pixels folded 4x4x4 into 192 channels, 2+2 blocks
    of width 64, patch 2: a 4x4 grid, 16 tokens a step (flex-tiny's N)."""
    return GridTokenizerConfig(
        name="grid-tiny",
        image_size=(32, 32),
        vae=VAEConfig(kind="space_to_depth", latent_channels=192, temporal_factor=4, spatial_factor=4),
        encoder=GridEncoderConfig(width=64, depth=2, head_dim=32, patch_size=2),
        decoder=GridDecoderConfig(width=64, depth=2, head_dim=32, patch_size=2),
        sampler=SamplerConfig(steps=4, guidance=3.0),
    )


def shapes() -> GridTokenizerConfig:
    """The grid counterpart of ``flex-shapes`` (the synthetic-shapes tokenizer): 32x32 pixels folded 4x4x4 into
    192 channels, patch 1: an 8x8 grid, 64 tokens a step (320 for 17 frames, against flex-shapes' 16 a step)
    over the same 1,000-code FSQ [8,5,5,5]; width 128 as flex-shapes, with flex-shapes' initialisation and
    recipe (a data-predicting decoder at flow times sigmoid(N(6, 0.5)), decoded in one step). Depths d2
    encoder + d6 decoder: 2.33M parameters in all against flex-shapes' 2.29M (+2%); without the decoder's adaLN
    linears (the paper's measure) 1.70M against 1.46M. A grid decoder block has one adaLN group, not two, and
    no linear paths, so it needs more blocks for the same total (d5 would give 2.03M, -11%).
    """
    return GridTokenizerConfig(
        name="grid-shapes",
        image_size=(32, 32),
        vae=VAEConfig(kind="space_to_depth", latent_channels=192, temporal_factor=4, spatial_factor=4),
        encoder=GridEncoderConfig(width=128, depth=2, head_dim=32, patch_size=1, code_init_std=0.1 * 128**-0.5,
                                  embedding_init_std=0.5),
        decoder=GridDecoderConfig(width=128, depth=6, head_dim=32, patch_size=1, prediction="data",
                                  zero_init_input=True, embedding_init_std=0.5),
        fsq=FSQConfig(levels=(8, 5, 5, 5)),
        sampler=SamplerConfig(steps=1, guidance=1.0, guidance_method="cfg"),
        loss=LossConfig(time_mean=6.0, time_std=0.5, nested_dropout=False),
    )


def demo() -> GridTokenizerConfig:
    """The grid counterpart of ``flex-demo``: 64x64 pixels folded 4x8x8 into 768 channels, patch 1: an 8x8 grid,
    64 tokens a step (flex-demo: 32) over the 64,000-code FSQ; width 192 and flex-demo's initialisation and
    recipe (data prediction at s = sigmoid(N(6, 0.5)), one decode step). Depths d2 encoder + d8 decoder: 6.82M
    parameters in all against flex-demo's 6.86M (-1%); without adaLN 4.96M against 4.12M.
    """
    return GridTokenizerConfig(
        name="grid-demo",
        image_size=(64, 64),
        vae=VAEConfig(kind="space_to_depth", latent_channels=768, temporal_factor=4, spatial_factor=8),
        encoder=GridEncoderConfig(width=192, depth=2, head_dim=64, patch_size=1, code_init_std=0.1 * 192**-0.5,
                                  embedding_init_std=0.5),
        decoder=GridDecoderConfig(width=192, depth=8, head_dim=64, patch_size=1, prediction="data",
                                  zero_init_input=True, embedding_init_std=0.5),
        sampler=SamplerConfig(steps=1, guidance=1.0, guidance_method="cfg"),
        loss=LossConfig(time_mean=6.0, time_std=0.5, nested_dropout=False),
    )


PRESETS: dict[str, Callable[[], GridTokenizerConfig]] = {
    "grid-tiny": tiny,
    "grid-shapes": shapes,
    "grid-demo": demo,
}
"""The grid tokenizer's presets by name; each config's ``name`` is its preset name."""
