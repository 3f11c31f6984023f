"""The ``index.json`` of an on-disk dataset (latent caches, token datasets): found, parsed, of the right format."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from videoflex.io.errors import FileError

INDEX_NAME = "index.json"


def read_index_json(root: str | os.PathLike, fmt: str, error: type[FileError], no_index: str,
                    wrong_format: str) -> tuple[Path, dict[str, Any]]:
    """``(root/index.json, its JSON object)`` when it is a JSON object whose ``format`` is ``fmt``.

    Raises ``error`` (a :class:`~videoflex.io.errors.FileError`) naming the folder or file: no such folder,
    no index (message ``no_index``), not JSON, or another format (message ``wrong_format``). Checking the
    version and the fields is the caller's.
    """
    root = Path(root)
    path = root / INDEX_NAME
    if not root.is_dir():
        raise error(root, "no such folder")
    if not path.is_file():
        raise error(root, no_index)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(path, f"not valid JSON ({err})") from None
    if not isinstance(index, dict) or index.get("format") != fmt:
        raise error(path, wrong_format)
    return path, index
