"""Helpers shared by the commands: option types, model loading, device, seed and output paths."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from videoflex import registry
from videoflex.cli.errors import UserError
from videoflex.models.pretrained import WEIGHTS_NAME
from videoflex.tokenizers.base import Tokenizer
from videoflex.utils import device as utils_device

DEFAULT_MODEL = Path("checkpoints") / "demo"
"""The shipped demo model, looked up in the working folder, then in the source checkout."""


# ----------------------------------------------------------------------------- option types


def _number(parse: type, noun: str, minimum: float, strict: bool) -> Callable[[str], float]:
    """An argparse type: a finite ``parse`` (int or float) above ``minimum`` (``strict``) or at least it."""
    sign = ">" if strict else ">="

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not (value > minimum if strict else value >= minimum) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be {sign} {minimum:g}, got {text}")
        return value

    return convert


positive_int = _number(int, "an integer", 1, strict=False)  # an integer >= 1
non_negative_int = _number(int, "an integer", 0, strict=False)  # an integer >= 0
positive_float = _number(float, "a number", 0, strict=True)  # a finite number > 0
non_negative_float = _number(float, "a number", 0, strict=False)  # a finite number >= 0


def keep_list(text: str) -> list[int]:
    """argparse type: comma-separated token counts >= 1, e.g. ``1,4,16,256`` (sorted, duplicates dropped)."""
    values = []
    for part in text.split(","):
        values.append(positive_int(part.strip()))
    return sorted(set(values))


# ----------------------------------------------------------------------------- shared options


def add_model_options(p: argparse.ArgumentParser, *, seed: bool = True) -> None:
    """``--model``, ``--device``, ``--seed``, ``--quiet``: the options of every command that runs a model."""
    p.add_argument("--model", metavar="PATH|PRESET",
                   help=f"a saved model (folder with model.safetensors, or the file) or a preset name "
                        f"(random weights; see 'videoflex presets'); default: {DEFAULT_MODEL} if it exists")
    p.add_argument("--device", default="cpu",
                   help="torch device to run on, e.g. cpu, cuda, cuda:1, mps (default: cpu)")
    if seed:
        p.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed of the decoder's noise: the same seed gives the same output (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def resolve_device(name: str) -> torch.device:
    """The device ``--device`` names (see :func:`videoflex.utils.device.resolve_device`); ``UserError`` if it
    is malformed or not available."""
    try:
        return utils_device.resolve_device(name)
    except ValueError as err:
        raise UserError(f"--device {name}: {str(err).split(': ', 1)[1]}") from None


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (fresh for every decode: same seed, same noise)."""
    return torch.Generator(device=device).manual_seed(seed)


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True)
class LoadedModel:
    """A tokenizer and where it came from (``source``: a path, or ``"preset <name> (random weights)"``)."""

    model: Tokenizer
    source: str


def default_model_path() -> Path | None:
    """``checkpoints/demo`` under the working folder or the source checkout, if it holds a model."""
    checkout = Path(__file__).resolve().parents[3]
    for root in (Path.cwd(), checkout):
        if (root / DEFAULT_MODEL / WEIGHTS_NAME).is_file():
            return root / DEFAULT_MODEL
    return None


def load_model(spec: str | None, device: torch.device) -> LoadedModel:
    """Load ``--model`` through :func:`videoflex.registry.load_model`: a saved model folder/file of any kind, a
    released checkpoint, else a preset name (seeded random weights); default :data:`DEFAULT_MODEL`.

    Raises ``UserError`` naming the problem (no default model, unknown name, unreadable file, a model that
    is not a tokenizer).
    """
    names = ", ".join(registry.PRESETS)
    if spec is None:
        found = default_model_path()
        if found is None:
            raise UserError(f"no model given and the demo model {DEFAULT_MODEL} is not there; pass --model "
                            f"PATH (a saved model) or --model PRESET ({names}; random weights)")
        spec = str(found)
    path = Path(spec)
    if path.exists():
        try:
            model = registry.load_model(path, device=str(device))
        except (ValueError, FileNotFoundError) as err:
            message = str(err)
            raise UserError(message if message.startswith(str(path)) else f"{path}: {message}") from None
        source = str(path)
    elif spec in registry.PRESETS:
        model = registry.load_model(spec, device=device)
        source = f"preset {spec} (random weights)"
    else:
        raise UserError(f"--model {spec}: no such file or folder, and not a preset ({names})")
    if not isinstance(model, Tokenizer):
        raise UserError(f"--model {spec}: a {model.kind} model, not a tokenizer")
    return LoadedModel(model.eval(), source)


# ----------------------------------------------------------------------------- files and messages


def require_input(path: str | Path) -> Path:
    """``path`` as a ``Path``; ``UserError`` unless it is an existing file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file")
    return path


def output_folder(path: str | Path) -> Path:
    """Create the output folder ``path`` (and its parents) if needed; ``UserError`` if it is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def warn(message: str) -> None:
    """One ``warning:`` line on stderr (printed even with ``--quiet``)."""
    print(f"warning: {message}", file=sys.stderr)


def size_text(size: tuple[int, int]) -> str:
    """``(H, W)`` as ``"WxH"`` (width first, as video tools print it)."""
    return f"{size[1]}x{size[0]}"
