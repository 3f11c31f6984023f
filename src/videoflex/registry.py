"""Every model kind of videoflex, their presets, and the loaders of foreign checkpoints.

``--model``, ``videoflex presets``, ``inspect`` and :func:`load_model` read these tables; a new model
family adds one :class:`ModelKind` here (and a :class:`Loader` if it reads someone else's files). This
module imports the kinds; nothing under it imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videoflex.generators.ar.model import ARGenerator
from videoflex.models.pretrained import PretrainedModel, read_saved_model
from videoflex.tokenizers.flex.model import VideoFlexTok
from videoflex.tokenizers.flex.official.loader import is_official_checkpoint, load_official
from videoflex.tokenizers.grid.model import GridTokenizer


@dataclass(frozen=True)
class ModelKind:
    """One model family: its config dataclass, its model class and its presets (name -> config builder)."""

    name: str
    config_class: type
    model_class: type[PretrainedModel]
    presets: Mapping[str, Callable[[], Any]]


@dataclass(frozen=True)
class Preset:
    """A named config of one kind; :func:`load_model` builds it with seeded random weights."""

    name: str
    kind: ModelKind

    def config(self) -> Any:
        return self.kind.presets[self.name]()


@dataclass(frozen=True)
class Loader:
    """Reads checkpoints in a foreign format: ``detect(path)`` says whether it can (cheaply, from the header;
    never raises), ``load(path, device)`` returns the converted model."""

    name: str
    detect: Callable[[Path], bool]
    load: Callable[[Path, torch.device | str], PretrainedModel]


def _kind(model_class: type[PretrainedModel]) -> ModelKind:
    return ModelKind(model_class.kind, model_class.config_class, model_class, model_class.presets)


KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (_kind(VideoFlexTok), _kind(GridTokenizer),
                                                             _kind(ARGenerator))}
"""Model kinds by name (``"flex-tokenizer"``: :class:`~videoflex.tokenizers.flex.model.VideoFlexTok`;
``"grid-tokenizer"``: :class:`~videoflex.tokenizers.grid.model.GridTokenizer`; ``"ar-generator"``:
:class:`~videoflex.generators.ar.model.ARGenerator`)."""

LOADERS: tuple[Loader, ...] = (
    Loader("apple/ml-videoflextok", is_official_checkpoint, load_official),
)
"""Foreign checkpoint formats :func:`load_model` reads (tried in order after the native format)."""


def gather_presets(kinds: Mapping[str, ModelKind]) -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    for kind in kinds.values():
        for name in kind.presets:
            if name in presets:
                raise ValueError(f"preset {name!r} is defined by kinds {presets[name].kind.name!r} and "
                                 f"{kind.name!r}; preset names must be unique across kinds")
            presets[name] = Preset(name, kind)
    return presets


PRESETS: dict[str, Preset] = gather_presets(KINDS)
"""Every preset of every kind, by name (names are unique across kinds)."""


def get_kind(name: str) -> ModelKind:
    """The kind called ``name`` (``ValueError`` listing the kinds if there is none)."""
    if name not in KINDS:
        raise ValueError(f"unknown model kind {name!r}; this videoflex knows {sorted(KINDS)}")
    return KINDS[name]


def load_model(spec: str | Path, device: torch.device | str = "cpu") -> PretrainedModel:
    """A model from a path or a preset name, in eval mode.

    spec: a saved model (a folder with ``model.safetensors``, or the file), loaded as the kind stored in it;
        a checkpoint one of :data:`LOADERS` reads (a released apple/ml-videoflextok file or folder),
        converted while loading; or a name in :data:`PRESETS`: random weights, seeded, so the same preset
        gives the same weights and identity in every process.

    Raises ``FileNotFoundError`` / ``ValueError`` (naming the path) for a path no format reads, an unknown
    kind or weights that do not fit; ``ValueError`` for a name that is neither a path nor a preset.
    """
    path = Path(spec)
    if path.exists():
        try:
            saved = read_saved_model(path)
        except (FileNotFoundError, ValueError) as native_error:
            for loader in LOADERS:
                if loader.detect(path):
                    return loader.load(path, device).eval()
            raise native_error from None
        if saved.kind not in KINDS:
            raise ValueError(f"{saved.file}: a model of kind {saved.kind!r}, which this videoflex does not know "
                             f"(it knows {sorted(KINDS)}); upgrade videoflex")
        return KINDS[saved.kind].model_class.from_pretrained(path, device=device)
    if str(spec) in PRESETS:
        preset = PRESETS[str(spec)]
        return preset.kind.model_class.from_preset(preset.name, device=device).eval()
    raise ValueError(f"{spec}: no such file or folder, and not a preset ({', '.join(PRESETS)})")
