"""Compiled CPU kernels for the VAE's element-wise work, which eager PyTorch spreads over several passes.

Once the VAE's convolutions run at a CPU core's peak, its element-wise work is about a third of a decode:

- :func:`channel_norm_swish`: LayerNorm over channels followed by swish (every residual block, twice), six to
  seven passes over the activation in eager PyTorch (mean, centre, norm, divide, scale, shift, swish), one here;
- :func:`time_upsample_sums`: the temporal upsampler's three tap sums written interleaved, a copy and three
  strided additions in eager PyTorch, one pass here.

Their speed against the eager path: ``benchmarks/cpu_kernels.py``.

The source (``csrc/cpu_kernels.cpp``) is compiled with the host's C++ compiler at first use
(``torch.utils.cpp_extension``: needs ``g++`` or ``clang++`` and ``ninja``; 10-30 s once) into videoflex's
cache, ``cpu-kernels/<name>`` under :func:`videoflex.utils.cache.default_cache_dir`. The build's name carries a
digest of the source, the flags, the torch version and the CPU's instruction-set flags, so a changed source
or another CPU (a home directory shared by several machines) builds its own copy, and a copy built with
``-march=native`` never runs on a CPU it was not built for. Where the build fails (no compiler, no ninja,
another platform) a warning says why and the callers take the eager path, which gives the same results
(slower). ``VIDEOFLEX_CPU_KERNELS=0`` turns them off (the eager path everywhere).

Results equal the eager path's up to float rounding (its swish uses a polynomial ``exp``, relative error
about 1e-7): within 3e-6 absolute on unit-scale activations, not bit for bit, so outputs written with and
without the kernels differ in the last bits. With the same setting they are deterministic, whatever the
number of threads (every position is computed alone).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import torch

from videoflex.utils.cache import default_cache_dir

ENV_SWITCH = "VIDEOFLEX_CPU_KERNELS"
"""Set to ``0`` to never build or use the compiled CPU kernels."""

SOURCE = Path(__file__).parent / "csrc" / "cpu_kernels.cpp"

# -ffast-math lets the compiler vectorise the row sums (reassociation) and the division; finite-math-only is
# turned back off so that NaN and infinity keep their meaning (a NaN in gives NaN out, never a clamped value).
FLAGS = ("-O3", "-ffast-math", "-fno-finite-math-only", "-fopenmp-simd")

_lock = threading.Lock()


def enabled() -> bool:
    """False when the environment sets ``VIDEOFLEX_CPU_KERNELS=0``."""
    return os.environ.get(ENV_SWITCH, "1").strip() != "0"


def _cpu_signature() -> str:
    """What the compiled code depends on besides the source: machine type and (Linux) the CPU's flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()}|{flags.strip()}"


def _flags() -> list[str]:
    return [*FLAGS, "-march=native"] if platform.machine() in ("x86_64", "AMD64") else list(FLAGS)


def build_name() -> str:
    """The extension's name: ``videoflex_cpu_kernels_`` and a digest of the source, the compiler flags, the
    torch version and :func:`_cpu_signature` (so each of those builds its own copy)."""
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(_flags()).encode(), torch.__version__.encode(),
                 _cpu_signature().encode()):
        digest.update(part)
        digest.update(b"\0")
    return f"videoflex_cpu_kernels_{digest.hexdigest()[:16]}"


def _ninja_on_path() -> None:
    """torch's builder runs ``ninja`` from ``PATH``; a virtual environment's (the ``ninja`` wheel) is not on
    it unless activated, so its directory is appended when no other ``ninja`` is found."""
    if shutil.which("ninja") is not None:
        return
    try:
        import ninja  # the PyPI wheel
    except ImportError:
        return
    os.environ["PATH"] = os.pathsep.join(filter(None, (os.environ.get("PATH"), ninja.BIN_DIR)))


def build_directory(name: str | None = None) -> Path:
    """Where the kernels are built: ``<videoflex cache>/cpu-kernels/<name>`` (default :func:`build_name`)."""
    return default_cache_dir() / "cpu-kernels" / (name or build_name())


def load() -> bool:
    """Whether the compiled kernels are loaded (built on first use, see the module docstring) as the operators
    ``torch.ops.videoflex.channel_norm_swish`` (``channel_norm_swish_`` in place) and
    ``torch.ops.videoflex.time_upsample_sums``: False when
    turned off by ``VIDEOFLEX_CPU_KERNELS=0`` or when the build failed (with a warning, once per process)."""
    if not enabled():
        return False
    with _lock:
        return _build()


@functools.cache
def _build() -> bool:
    try:
        from torch.utils import cpp_extension

        name = build_name()
        folder = build_directory(name)
        folder.mkdir(parents=True, exist_ok=True)
        _ninja_on_path()
        if not any(folder.glob(f"{name}.*")):  # no library built yet (torch names it <name>.so)
            print(f"videoflex: compiling the CPU kernels into {folder} (once for this machine and version; "
                  f"10-30 s; {ENV_SWITCH}=0 skips them)", file=sys.stderr, flush=True)
        cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=_flags(), build_directory=str(folder),
                           is_python_module=False, verbose=False)
        return True
    except (RuntimeError, OSError, ImportError, subprocess.CalledProcessError) as e:  # the eager path stays
        # (torch reports a missing ninja, a compiler error or a failed link as RuntimeError, a missing compiler
        # as OSError, a library that does not load as ImportError)
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        first_line = first_line if len(first_line) <= 240 else first_line[:240] + "..."  # a compiler command line
        warnings.warn(f"videoflex: the compiled CPU kernels are not available ({type(e).__name__}: {first_line}); "
                      f"using the slower eager path. Set {ENV_SWITCH}=0 to skip the build.", RuntimeWarning,
                      stacklevel=3)
        return False


def channel_norm_swish(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                       inplace: bool = False, out: torch.Tensor | None = None) -> torch.Tensor | None:
    """``swish(layer_norm(x, [C], weight, bias, eps))`` over the last axis of ``x`` ``[..., C]``, in one pass of
    the compiled kernel; None where it does not apply, for the caller to take its eager path: not float32 on
    the CPU, ``x`` not contiguous, autograd needed (the kernel has no backward), or the kernels off or
    unavailable (:func:`load`).

    ``weight`` and ``bias`` are float32 ``[C]``; returns a new float32 tensor shaped like ``x``; with ``inplace``
    ``x`` itself, overwritten (no new buffer: for a temporary the caller no longer needs); with ``out`` (a
    contiguous float32 CPU tensor shaped like ``x``, not overlapping it) ``out``, written (None where ``out`` does
    not qualify)."""
    if not _applies(x, weight, bias):
        return None
    if out is not None:
        if out.shape != x.shape or out.dtype != torch.float32 or out.device.type != "cpu" or not out.is_contiguous():
            return None
        return torch.ops.videoflex.channel_norm_swish.out(x, weight, bias, float(eps), out=out)
    op = torch.ops.videoflex.channel_norm_swish_ if inplace else torch.ops.videoflex.channel_norm_swish
    return op(x, weight, bias, float(eps))


def time_upsample_sums(y: torch.Tensor, batch: int) -> torch.Tensor | None:
    """The sums of :class:`videoflex.vae.vidtok.TimeUpsample2x`: ``y`` ``[B*T, P, 3, C]`` holds the taps ``y0, y1,
    y2`` of every frame's convolution (``P`` pixels); returns ``[B, T, 2, P, C]`` with ``out[:, i, 0] = y2[i] +
    y1[i-1] + y0[i-1]`` and ``out[:, i, 1] = y2[i] + y1[i] + y0[i-1]`` (the ``i-1`` terms left out for ``i = 0``).
    None where the kernel does not apply (as :func:`channel_norm_swish`)."""
    if not _applies(y):
        return None
    return torch.ops.videoflex.time_upsample_sums(y, batch)


def _applies(x: torch.Tensor, *params: torch.Tensor) -> bool:
    """Whether a kernel runs on ``x`` (with float32 ``params``): a non-empty contiguous float32 CPU tensor, no
    gradient needed (the kernels have no backward), and the kernels loaded (:func:`load`)."""
    if x.device.type != "cpu" or not x.is_contiguous() or x.numel() == 0:
        return False
    if any(t.dtype != torch.float32 for t in (x, *params)):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params)):
        return False
    return load()
