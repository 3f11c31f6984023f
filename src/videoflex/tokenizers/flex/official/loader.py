"""Load the released VideoFlexTok checkpoints (``apple/ml-videoflextok`` format) into :class:`VideoFlexTok`.

:func:`is_official_checkpoint` detects one, :func:`load_official` loads it: the embedded Hydra config is
parsed by :mod:`~videoflex.tokenizers.flex.official.config`, the tensors mapped by the table of
:mod:`~videoflex.tokenizers.flex.official.keys` (:func:`convert_state_dict`). Any missing, unexpected or
mis-shaped tensor is refused with a ``ValueError`` naming it. The weights of a REPA ``TransformerHead`` (a
training-only feature projection whose output never reaches the decoded latents) are dropped. Weights are cast
to float32, as the reference copies them into float32 modules. The loader is registered beside the model
kinds in :mod:`videoflex.registry`, so ``videoflex.load_model`` reads these files directly.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from videoflex.models.pretrained import LEGACY_FORMATS, MODEL_FORMAT
from videoflex.tokenizers.flex.config import TokenizerConfig
from videoflex.tokenizers.flex.model import VideoFlexTok
from videoflex.tokenizers.flex.official.config import (
    OfficialLayout,
    parse_official_config,
    read_header,
    read_official_config,
    resolve_checkpoint,
)
from videoflex.tokenizers.flex.official.keys import PREFIX, VAE_PREFIX, key_table, strip_prefix

MAX_LISTED = 20
NATIVE_FORMATS = (MODEL_FORMAT, *LEGACY_FORMATS)


def is_official_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` (a file or a folder holding one) is a safetensors file in the reference's layout."""
    try:
        metadata, shapes = read_header(resolve_checkpoint(path))
    except (OSError, SafetensorError):  # missing file, not safetensors, ambiguous folder: not ours to judge
        return False
    if metadata.get("format") in NATIVE_FORMATS:
        return False
    keys = [strip_prefix(k) for k in shapes]
    return any(k.startswith(("vae.vidtok.", "encoder.module_dict.", "decoder.module_dict.")) for k in keys)


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


def convert_state_dict(state: dict[str, torch.Tensor], config: TokenizerConfig,
                       layout: OfficialLayout, source: object = "official checkpoint") -> dict[str, torch.Tensor]:
    """An official state dict (keys with or without ``video_tokenizer.``) as ours.

    Raises ``ValueError`` naming every missing, unexpected or mis-shaped tensor. The weights of the REPA
    heads named in ``layout.dropped`` are dropped.
    """
    stripped = {strip_prefix(k): v for k, v in state.items()}
    if len(stripped) != len(state):
        raise ValueError(f"{source}: the same tensor appears with and without the {PREFIX!r} prefix")
    repa = tuple(f"decoder.module_dict.{name}." for name in layout.dropped)
    stripped = {k: v for k, v in stripped.items() if not k.startswith(repa)}
    rules = key_table(config, layout)
    expected = {rule.official: rule.shape for rule in rules}
    missing = sorted(set(expected) - set(stripped))
    unexpected = sorted(set(stripped) - set(expected))
    shapes = sorted(f"{k}: {tuple(stripped[k].shape)} vs {expected[k]}" for k in expected
                    if k in stripped and tuple(stripped[k].shape) != expected[k])
    problems = [f"{label} [{_listed(items)}]" for label, items in
                (("missing", missing), ("unexpected", unexpected), ("mis-shaped (file vs config)", shapes)) if items]
    if problems:
        raise ValueError(f"{source}: the tensors do not fit the checkpoint's config: " + "; ".join(problems))
    out: dict[str, torch.Tensor] = {}
    for rule in rules:
        out.update(zip(rule.ours, rule.convert(stripped[rule.official])))
    return out


# ------------------------------------------------------------------------------------------- loading


def _vae_base_channels(shapes: dict[str, tuple[int, ...]]) -> int:
    """The VAE's base width from its first convolution (128 in the released models)."""
    for key, shape in shapes.items():
        if strip_prefix(key) == VAE_PREFIX + "encoder.conv_in.conv.weight" and len(shape) == 5:
            return int(shape[0])
    return 128  # the packaged VidTok config; a missing tensor is reported by the key check


def load_official(path: str | Path, device: torch.device | str = "cpu") -> VideoFlexTok:
    """A :class:`VideoFlexTok` with the weights of an official checkpoint (a file or a folder holding one)."""
    file = resolve_checkpoint(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    _, shapes = read_header(file)
    config, layout = parse_official_config(read_official_config(file), _vae_base_channels(shapes),
                                           name=f"official-{file.stem}")
    state = load_file(str(file), device=str(device))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return VideoFlexTok.from_state_dict(config, convert_state_dict(state, config, layout, file), file)


def describe(config: TokenizerConfig) -> str:
    """One line about a converted model (for the CLI)."""
    e, d = config.encoder, config.decoder
    params = f"{config.image_size[0]}x{config.image_size[1]}, enc d{e.depth} D{e.width} p{e.patch_size}, " \
             f"dec d{d.depth} D{d.width} p{d.patch_size} ({d.attention}), {config.num_registers} tokens/step"
    return f"{config.name}: {params}, FSQ {list(config.fsq.levels)} ({math.prod(config.fsq.levels)} codes)"

