"""Where set-up commands put the files they fetch once (weights, sample data)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """$VIDEOFLEX_CACHE if set, else ~/.cache/videoflex."""
    env = os.environ.get("VIDEOFLEX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "videoflex"
