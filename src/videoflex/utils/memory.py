"""Keep freed memory in the process for reuse (glibc's malloc), instead of handing it back to the OS.

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc serves an allocation of more than its
mmap threshold (dynamic, at most 32 MiB) with a fresh ``mmap`` and returns it at ``free``, and hands the
top of its heap back whenever more than its trim threshold is free there. Either way the next tensor of
that size starts as untouched pages, and the kernel faults in and zeroes every 4 KiB page of it on first
write. A decode allocates and frees activations of many megabytes per layer, so it pays that again and
again: measured on 2 cores of an AMD EPYC (one thread, ``benchmarks/vs_reference.py``'s L model run
alone: VidTok VAE of base width 32 decoding 17 frames of 128x128), 300,000-320,000 page faults per VAE
decode (about 1.2 GiB zeroed) and 2.55-2.58 s; with freed memory kept, 1,000-4,000 faults and 1.91-1.99 s.

:func:`keep_freed_memory` raises both thresholds so that freed memory stays in the heap and is reused.
The process then keeps its peak memory until it exits (what PyTorch's CUDA caching allocator does on a
GPU). The ``videoflex`` command calls it at start unless ``VIDEOFLEX_KEEP_FREED_MEMORY=0``; a library
user may call it once. The same as setting ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` in
the environment (or running under jemalloc or tcmalloc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV_SWITCH = "VIDEOFLEX_KEEP_FREED_MEMORY"
"""Set to ``0`` to keep the C library's defaults in the ``videoflex`` command."""

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
THRESHOLD = 2**31 - 1  # bytes; mallopt takes an int: allocations up to 2 GiB come from the heap


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 2 GiB for this process (``mallopt``), so that freed tensor
    memory is reused instead of returned to the OS and faulted in again (see the module docstring).

    Returns True when both were set; False where the C library is not glibc (macOS, Windows, musl: nothing
    changed) or glibc refused one of them. Safe to call more than once. Process-wide: it affects every allocation
    of the process, not only videoflex's.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):  # not glibc
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))


def keep_freed_memory_unless_disabled() -> bool:
    """:func:`keep_freed_memory` unless the environment sets ``VIDEOFLEX_KEEP_FREED_MEMORY=0``."""
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        return False
    return keep_freed_memory()
