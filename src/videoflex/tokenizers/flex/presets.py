"""Named presets of the flex tokenizer: Python constructors returning typed configs (all kinds' presets are
gathered in :data:`videoflex.registry.PRESETS`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from videoflex.tokenizers.flex.config import (
    DecoderConfig,
    EncoderConfig,
    FSQConfig,
    LossConfig,
    SamplerConfig,
    TokenizerConfig,
)
from videoflex.vae.config import VAEConfig

VIDTOK_488_16CH = VAEConfig(kind="vidtok", latent_channels=16, temporal_factor=4, spatial_factor=8,
                            base_channels=128, channel_mult=(1, 2, 4, 4), num_res_blocks=2)


def tiny() -> TokenizerConfig:
    """Seconds on a CPU: 32x32 pixels folded 4x4x4 into 192 channels, 2+2 blocks of width 64, 16 tokens a step."""
    return TokenizerConfig(
        name="flex-tiny",
        image_size=(32, 32),
        vae=VAEConfig(kind="space_to_depth", latent_channels=192, temporal_factor=4, spatial_factor=4),
        encoder=EncoderConfig(width=64, depth=2, head_dim=32, patch_size=2),
        decoder=DecoderConfig(width=64, depth=2, head_dim=32, patch_size=2),
        num_registers=16,
        sampler=SamplerConfig(steps=4, guidance=3.0),
    )


def ablation_d12() -> TokenizerConfig:
    """The paper's ablation size: d12 encoder and decoder (D=768), 128x128, VidTok VAE, patch 1."""
    return TokenizerConfig(
        name="flex-ablation-d12",
        image_size=(128, 128),
        vae=VIDTOK_488_16CH,
        encoder=EncoderConfig(width=768, depth=12, patch_size=1),
        decoder=DecoderConfig(width=768, depth=12, patch_size=1),
    )


def k600_d18() -> TokenizerConfig:
    """Kinetics-600 model (``EPFL-VILAB/videoflextok_d18_d18_k600``): d18+d18, D=1152, 128x128, patch 1.

    Decoder attention is full, as the released weights after their second (decoder fine-tuning) stage.
    """
    return TokenizerConfig(
        name="flex-k600-d18",
        image_size=(128, 128),
        vae=VIDTOK_488_16CH,
        encoder=EncoderConfig(width=1152, depth=18, patch_size=1),
        decoder=DecoderConfig(width=1152, depth=18, patch_size=1, attention="full"),
    )


def panda_d18_d28() -> TokenizerConfig:
    """Text-to-video model (``EPFL-VILAB/videoflextok_d18_d28``): d18 encoder (D=1152), d28 decoder
    (D=1792), 256x256, patch 2, full decoder attention."""
    return TokenizerConfig(
        name="flex-panda-d18-d28",
        image_size=(256, 256),
        vae=VIDTOK_488_16CH,
        encoder=EncoderConfig(width=1152, depth=18, patch_size=2),
        decoder=DecoderConfig(width=1792, depth=28, patch_size=2, attention="full"),
    )


def demo() -> TokenizerConfig:
    """The architecture of the earlier CPU demo model (``checkpoints/demo`` before its ``flex-demo-256`` revision): 64x64 pixels folded 4x8x8
    into 768 channels (no learned VAE), d2 encoder and d6 decoder of width 192, 32 tokens a step (160 for 17 frames). Trained with the
    encoder at 0.3x the learning rate, it fitted 512 real crops 0.9 dB better at k = 32 after 600 steps
    from scratch than d4 + d4 at 1x (16.5 against 15.6 dB; the same cost a step), and the held-out clip
    0.7 dB better (see ``checkpoints/demo/README.md``). The decoder predicts data (a 768-value patch
    from a 192-wide token), converted to the flow velocity; its registers carry learned positions and
    its input projection starts at zero (see ``DecoderConfig``); positions and registers start at std
    0.5 (``embedding_init_std``); the code projection starts random so that the tokens carry
    information early.

    Flow times are drawn at s = sigmoid(N(6, 0.5)), 0.993..0.999: the decoder's input is all but pure
    noise, so everything it reconstructs must come from the tokens, and it decodes in **one** step (its
    conditional mean: a deterministic, blurred reconstruction; more steps visit noise levels it never
    learned). At lower noise (``time_mean`` 3, s about 0.95) a pixel-space decoder reads the coarse
    picture from the noised input itself (a 768-value patch at 5% signal still shows its mean), and after
    1,500 CPU steps the tokens were unused: one-step reconstructions of held-out clips at the level of
    the mean image.
    """
    return TokenizerConfig(
        name="flex-demo",
        image_size=(64, 64),
        vae=VAEConfig(kind="space_to_depth", latent_channels=768, temporal_factor=4, spatial_factor=8),
        encoder=EncoderConfig(width=192, depth=2, head_dim=64, patch_size=1, code_init_std=0.1 * 192**-0.5,
                              embedding_init_std=0.5),
        decoder=DecoderConfig(width=192, depth=6, head_dim=64, patch_size=1, prediction="data",
                              register_positions=True, zero_init_input=True, embedding_init_std=0.5),
        num_registers=32,
        sampler=SamplerConfig(steps=1, guidance=1.0, guidance_method="cfg"),
        loss=LossConfig(time_mean=6.0, time_std=0.5),
    )


def demo_linear() -> TokenizerConfig:
    """``flex-demo`` with a rank-32 linear path beside its encoder and decoder (``EncoderConfig.linear_path``):
    the tokens start from what a linear code of the same budget gives, and the transformers add to it.
    Not in the paper; for small models trained briefly (see ``checkpoints/demo/README.md``)."""
    base = demo()
    return dataclasses.replace(
        base, name="flex-demo-linear",
        encoder=dataclasses.replace(base.encoder, linear_path=32),
        decoder=dataclasses.replace(base.decoder, linear_path=32),
    )


def demo_256() -> TokenizerConfig:
    """``flex-demo`` with the paper's largest register count, 256 tokens a step (1,280 for 17 frames), and
    rank-48 linear paths whose decoder side reads the FSQ codes (``DecoderConfig.linear_input``) and blends
    each step with the one before (``DecoderConfig.linear_temporal``), so that training can start from a
    linear code of the budget (``linear_code_clips`` in the recipe: principal components,
    :mod:`videoflex.tokenizers.flex.pca`) and the transformers learn what it misses.
    Its FSQ rounds to evenly spaced levels (``FSQConfig.bound="clip"``), so that the starting code rounds each
    coefficient to its nearest level as the linear code it is compared with does. Four residual tokens
    (``FSQConfig.residuals``): token 4 holds the rounding error of token 0 and tokens 8, 9, 10 those of tokens
    1, 2, 3, each at 1/7 (8 levels) or 1/4 (5 levels) of the step, because the rounding of the first, largest
    coefficients is much of what the fine budgets miss (one-off probe on the fitted start: rounding only the
    first 6 tokens' values exactly gave +1.5 dB at k = 256 on carphone and +1.7 on cup); k <= 4 is unchanged.
    Its FSQ predicts each step's codes from the step before's (``FSQConfig.temporal_prediction``: closed-loop
    DPCM per token and channel, gains and scales fitted with the linear code), so each step rounds only what
    changed: on the fitted start it gained 0.1 to 0.3 dB at k = 4 and 1.2 to 1.5 at k = 256 on carphone and
    cup (``checkpoints/demo/README.md``); a step predicted from nothing is rounded over the coefficients' whole
    range (``FSQConfig.full_range_restarts``). Token 1 is the colour token (``TokenizerConfig.colour_token``): in
    a chunk's first step it holds the chunk's colour, which every step shows from k = 2 on, so that the
    coarse budgets show the clip's colours rather than the training footage's tints (the 4x4 thumbnail's colour
    error at k = 2 on carphone 0.073 -> 0.048; ``checkpoints/demo/README.md``).
    Not in the paper; the architecture of the shipped CPU demo model (``checkpoints/demo``: trained by
    ``configs/demo_256.yaml`` before it had the colour token, which ``scripts/add_colour_token.py`` fitted to it;
    the recipe trains this architecture; its model card has the measurements)."""
    base = demo()
    return dataclasses.replace(
        base, name="flex-demo-256", num_registers=256,
        encoder=dataclasses.replace(base.encoder, linear_path=48),
        decoder=dataclasses.replace(base.decoder, linear_path=48, linear_input="codes", linear_temporal=True),
        fsq=dataclasses.replace(base.fsq, bound="clip", residuals=((4, 0), (8, 1), (9, 2), (10, 3)),
                                temporal_prediction=True, full_range_restarts=True),
        colour_token=1,
    )


def shapes() -> TokenizerConfig:
    """The architecture of the shipped synthetic-shapes tokenizer (``checkpoints/shapes``, the generators'
    tokenizer): 32x32 pixels folded 4x4x4 into 192 channels (no learned VAE), d2 encoder and d4 decoder
    of width 128 with rank-16 linear paths (as ``flex-demo-linear``), 16 tokens a step (80 for 17 frames)
    over a 1,000-code FSQ [8,5,5,5], so that a small generator's embedding and output layer stay small.
    Trained like ``flex-demo`` (a data-predicting decoder at flow times near pure noise, decoded in one
    step), on moving shapes (``configs/shapes.yaml``). Without the linear paths, 500 steps of that recipe
    left the tokens unused (17.4 dB at every k: the mean picture).
    """
    return TokenizerConfig(
        name="flex-shapes",
        image_size=(32, 32),
        vae=VAEConfig(kind="space_to_depth", latent_channels=192, temporal_factor=4, spatial_factor=4),
        encoder=EncoderConfig(width=128, depth=2, head_dim=32, patch_size=1, code_init_std=0.1 * 128**-0.5,
                              embedding_init_std=0.5, linear_path=16),
        decoder=DecoderConfig(width=128, depth=4, head_dim=32, patch_size=1, prediction="data",
                              register_positions=True, zero_init_input=True, embedding_init_std=0.5,
                              linear_path=16),
        fsq=FSQConfig(levels=(8, 5, 5, 5)),
        num_registers=16,
        sampler=SamplerConfig(steps=1, guidance=1.0, guidance_method="cfg"),
        loss=LossConfig(time_mean=6.0, time_std=0.5),
    )


def shapes_codes() -> TokenizerConfig:
    """``flex-shapes`` whose decoder's linear path reads the FSQ codes (``DecoderConfig.linear_input``), so
    that training starts from a linear code of the budget (``linear_code_clips`` in the recipe: principal
    components, :mod:`videoflex.tokenizers.flex.pca`) and the transformers learn what it misses
    (``configs/shapes_codes.yaml``). Not in the paper. Trained from random weights, ``flex-shapes`` keeps little
    of a shape's colour (``checkpoints/shapes/README.md``); the linear code keeps it from the first step."""
    base = shapes()
    return dataclasses.replace(
        base, name="flex-shapes-codes",
        decoder=dataclasses.replace(base.decoder, linear_input="codes"),
    )


PRESETS: dict[str, Callable[[], TokenizerConfig]] = {
    "flex-tiny": tiny,
    "flex-demo": demo,
    "flex-demo-linear": demo_linear,
    "flex-demo-256": demo_256,
    "flex-shapes": shapes,
    "flex-shapes-codes": shapes_codes,
    "flex-ablation-d12": ablation_d12,
    "flex-k600-d18": k600_d18,
    "flex-panda-d18-d28": panda_d18_d28,
}
"""The flex tokenizer's presets by name; each config's ``name`` is its preset name. No preset shares a name
with a shipped trained model (``checkpoints/demo`` is named ``demo``; its architecture is ``flex-demo-256``)."""


def get_preset(name: str) -> TokenizerConfig:
    """The config of a flex-tokenizer preset (``ValueError`` naming the presets if unknown)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
