"""Files that set-up commands fetch once (weights, sample data): where they go, and their checksums.

The download itself is :func:`videoflex.utils.download.fetch_file` (``videoflex fetch ...``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def default_cache_dir() -> Path:
    """$VIDEOFLEX_CACHE if set, else ~/.cache/videoflex."""
    env = os.environ.get("VIDEOFLEX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "videoflex"


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
