"""Helpers shared by the commands: option types, model loading, device, seed, output paths and warnings.

Every numeric option of every command takes one of the :class:`Number` types below (finite, in a range), and
every file or folder option one of the :class:`PathOption` types (inputs exist; outputs can be written: the
nearest existing folder takes a new entry, and every name fits the file system's limit). Both are checked while
the command line is parsed, so a bad value is one line and exit status 2 before any file is read or model run.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from videoflex import registry
from videoflex.cli.errors import UserError
from videoflex.models.pretrained import WEIGHTS_NAME
from videoflex.tokenizers.base import Tokenizer
from videoflex.utils import device as utils_device

DEFAULT_MODEL = Path("checkpoints") / "demo"
"""The shipped demo model, looked up in the working folder, then in the source checkout."""


# ----------------------------------------------------------------------------- option types: numbers


@dataclass(frozen=True)
class Number:
    """An argparse type: a finite ``parse`` (``int`` or ``float``) from ``minimum`` (excluded when ``above``) to
    ``maximum``; ``why`` is added to the range error. Raises ``argparse.ArgumentTypeError`` otherwise."""

    parse: type
    minimum: float
    maximum: float
    above: bool = False
    why: str = ""

    @property
    def noun(self) -> str:
        return "an integer" if self.parse is int else "a number"

    def range_text(self) -> str:
        def text(v: float) -> str:
            return str(int(v)) if self.parse is int else f"{v:g}"

        low = f"> {text(self.minimum)}" if self.above else f">= {text(self.minimum)}"
        return f"{self.noun} {low} and <= {text(self.maximum)}"

    def __call__(self, text: str) -> int | float:
        try:
            value = self.parse(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.noun}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if not (value > self.minimum if self.above else value >= self.minimum) or value > self.maximum:
            raise argparse.ArgumentTypeError(f"must be {self.range_text()}, got {text}{self.why}")
        return value


INT_MAX = 2**31 - 1  # counts and sizes: what torch and FFmpeg index with
positive_int = Number(int, 1, INT_MAX)  # a count >= 1
non_negative_int = Number(int, 0, INT_MAX)  # a count or index >= 0
positive_float = Number(float, 0, 1e6, above=True)  # a finite number > 0 (e.g. a learning rate)
non_negative_float = Number(float, 0, 1e6)  # a finite number >= 0
seed_value = Number(int, 0, 2**63 - 1)  # torch.Generator.manual_seed's range
frame_rate = Number(float, 1e-3, 1000)  # frames per second (1e-9 would be one frame in 31 years)
frame_count = Number(int, 1, 100_000)  # frames of one clip held in memory
pixels = Number(int, 8, 8192)  # a frame side
flow_steps = Number(int, 1, 1000)  # sampling steps of a flow decoder
guidance_scale = Number(float, 0, 100)  # classifier-free guidance, 1 = none
batch_size = Number(int, 1, 4096)
video_time = Number(float, 0, 1e7)  # a time in a video
chunk_batch = Number(int, 1, 4096)  # chunks a tokenizer encodes at once


def add_chunk_batch_option(p: argparse.ArgumentParser) -> None:
    """``--chunk-batch N``: chunks of a long video the tokenizer encodes at once (memory against speed)."""
    p.add_argument("--chunk-batch", type=chunk_batch, metavar="N",
                   help="video chunks encoded at once: peak memory stays flat in video length; larger "
                        "is faster on long videos (default: the tokenizer's, 4)")


def keep_list(text: str) -> list[int]:
    """argparse type: comma-separated token counts >= 1, e.g. ``1,4,16,256`` (sorted, duplicates dropped)."""
    values = []
    for part in text.split(","):
        values.append(positive_int(part.strip()))
    return sorted(set(values))


# ----------------------------------------------------------------------------- option types: paths

TEMP_NAME_EXTRA = 32
"""Bytes :func:`videoflex.io.video.atomic_output_path` adds to a file name for its temporary file
(``.{stem}.{pid}.{8 hex}.tmp{suffix}``: 15 plus the process id's digits), with room to spare."""


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (``os.path.lexists``: a too-long name does not)."""
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_output_path(path: str | Path, *, folder: bool) -> Path:
    """Check, without creating anything, that the output ``path`` (a file, or a ``folder`` to create or write
    into) can be written: every name within the file system's length limit (a file's with room for its
    temporary name), not a folder where a file goes or a file where a folder goes, and a new entry can be
    made in the nearest existing folder (tried: a temporary folder made and removed there).

    Raises ``UserError`` naming the path and the problem.
    """
    path = Path(path)
    if str(path) in ("", "."):
        if folder:
            path = Path(".")
        else:
            raise UserError("empty output file name")
    existing = _nearest_existing(path)
    if not existing.is_dir() and existing != Path(os.path.abspath(path)):
        raise UserError(f"{path}: {existing} is a file, not a folder")
    try:
        name_max = os.pathconf(existing if existing.is_dir() else existing.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for i, part in enumerate(path.parts):
        extra = TEMP_NAME_EXTRA if i == len(path.parts) - 1 and not folder else 0
        if len(os.fsencode(part)) + extra > name_max:
            limit = f"; {extra} more are needed for the temporary file" if extra else ""
            raise UserError(f"{path}: file name too long ({len(os.fsencode(part))} bytes, the file system's "
                            f"limit is {name_max}{limit})")
    if os.path.lexists(path):
        if folder and not path.is_dir():
            raise UserError(f"{path}: exists and is not a folder")
        if not folder and path.is_dir():
            raise UserError(f"{path}: is a folder; give a file name")
        existing = path if folder else _nearest_existing(path.parent)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".videoflex-check-", dir=existing))
    except OSError as err:
        raise UserError(f"{path}: cannot write in {existing} ({err.strerror or err})") from None
    return path


def make_parent(path: Path) -> Path:
    """Create the folder of the output file ``path`` (checked by :func:`check_output_path`) if it is missing;
    called just before the file is written, so that a failed command leaves no empty folder behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


Role = Literal["file", "folder", "file or folder", "output file", "output folder"]


@dataclass(frozen=True)
class PathOption:
    """An argparse type for a path: an input (``file``, ``folder``, ``file or folder``) that must exist, or an
    output (``output file``, ``output folder``) checked by :func:`check_output_path`; an output file's suffix
    must be one of ``suffixes`` when given. Returns a ``Path``; raises ``argparse.ArgumentTypeError``."""

    role: Role
    suffixes: tuple[str, ...] = ()
    hint: str = ""  # added to the error of a missing input

    def __call__(self, text: str) -> Path:
        path = Path(text)
        try:
            if self.role.startswith("output"):
                if self.suffixes and path.suffix.lower() not in self.suffixes:
                    raise UserError(f"{path}: the file name must end in {' or '.join(self.suffixes)}")
                return check_output_path(path, folder=self.role == "output folder")
            if not text or not os.path.exists(path):
                raise UserError(f"{path}: no such {self.role}{self.hint}")
            if self.role == "file" and path.is_dir():
                raise UserError(f"{path}: is a folder, not a file")
            if self.role == "folder" and not path.is_dir():
                raise UserError(f"{path}: not a folder")
            if not os.access(path, os.R_OK):
                raise UserError(f"{path}: not readable")
        except UserError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return path


input_file = PathOption("file")
input_folder = PathOption("folder")
input_path = PathOption("file or folder")
output_file = PathOption("output file")
output_dir = PathOption("output folder")


# ----------------------------------------------------------------------------- shared options


DECODER_SEED_HELP = ("seed of the decoder's flow noise (every k of a run starts from the same noise): the same seed "
                     "gives the same output; deterministic decoders ignore it (default: 0)")
ENCODER_SEED_HELP = ("seed of the encoder's noise (the VAE posterior sample, for models that sample it): the same "
                     "seed gives the same tokens (default: 0)")


def add_model_options(p: argparse.ArgumentParser, *, seed: bool = True, seed_help: str = DECODER_SEED_HELP) -> None:
    """``--model``, ``--device``, ``--seed``, ``--quiet``: the options of every command that runs a model;
    ``seed_help`` says what ``--seed`` seeds in that command."""
    p.add_argument("--model", metavar="PATH|PRESET",
                   help=f"a saved model (folder with model.safetensors, or the file) or a preset name "
                        f"(random weights; see 'videoflex presets'); default: {DEFAULT_MODEL} if it exists")
    p.add_argument("--device", default="cpu",
                   help="torch device to run on, e.g. cpu, cuda, cuda:1, mps (default: cpu)")
    if seed:
        p.add_argument("--seed", type=seed_value, default=0, help=seed_help)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def resolve_device(name: str) -> torch.device:
    """The device ``--device`` names (see :func:`videoflex.utils.device.resolve_device`); ``UserError`` if it
    is malformed or not available."""
    try:
        return utils_device.resolve_device(name)
    except ValueError as err:
        raise UserError(f"--device {name}: {str(err).split(': ', 1)[-1]}") from None


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
    names = ", ".join(name for name, preset in registry.PRESETS.items()
                      if issubclass(preset.kind.model_class, Tokenizer))  # the commands here need a tokenizer
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


@contextmanager
def model_output_checked(loaded: LoadedModel) -> Iterator[None]:
    """Turn a model's non-finite output (:class:`~videoflex.utils.finite.NonFiniteOutputError`, which names the
    weights that are not finite) into a ``UserError`` that also names where the model came from."""
    from videoflex.utils.finite import NonFiniteOutputError

    try:
        yield
    except NonFiniteOutputError as err:
        raise UserError(f"--model {loaded.source}: {err}") from None


# ----------------------------------------------------------------------------- files and messages


def output_folder(path: str | Path) -> Path:
    """Create the output folder ``path`` (and its parents) if needed, just before the first file goes in;
    ``UserError`` if it is a file or cannot be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{path}: cannot create the folder ({err.strerror or err})") from None
    return path


_held_warnings: list[str] | None = None


def warn(message: str) -> None:
    """A warning: one ``warning:`` line on stderr (printed even with ``--quiet``), or held while a command runs
    under :func:`held_warnings`."""
    if _held_warnings is not None:
        _held_warnings.append(message)
    else:
        print(f"warning: {message}", file=sys.stderr)


@contextmanager
def held_warnings() -> Iterator[list[str]]:
    """Hold the warnings of a command (:func:`warn` and Python's ``warnings``, one line each) in the yielded
    list instead of printing them; ``videoflex`` prints them when the command succeeds and folds them into
    its one error line when it fails."""
    global _held_warnings
    previous, held = _held_warnings, []
    _held_warnings = held

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        held.append(str(message))

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            yield held
    finally:
        _held_warnings = previous


def one_line(text: str) -> str:
    """``text`` with its line breaks (and runs of spaces around them) made single spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def size_text(size: tuple[int, int]) -> str:
    """``(H, W)`` as ``"WxH"`` (width first, as video tools print it)."""
    return f"{size[1]}x{size[0]}"
