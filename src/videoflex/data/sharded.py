"""What the on-disk sharded datasets (latent caches, token datasets) share: reading their ``index.json``
(found, parsed, of the right format), the per-clip metadata of a shard (labels, captions, sources), and
keeping each shard's metadata once read (:class:`ShardRecords`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ShardRecord:
    """The per-clip metadata of one shard: labels (-1 or None: none), captions (None: none), sources."""

    labels: list[int] | None
    captions: list[str | None]
    sources: list[str]


class ShardRecords:
    """Each shard's :class:`ShardRecord`, read on first use (:meth:`_open_shard`, given by the dataset) and
    kept; a pickled copy (a ``DataLoader`` worker's) starts with none, so every process reads its own."""

    _records: dict[int, ShardRecord]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_records": {}}

    def _record(self, shard: int) -> ShardRecord:
        if shard not in self._records:
            self._records[shard] = self._open_shard(shard)
        return self._records[shard]

    def _open_shard(self, shard: int) -> ShardRecord:
        raise NotImplementedError


def _json_list(path: Path, metadata: dict[str, str], key: str, count: int, optional: bool,
               error: type[FileError]) -> list:
    try:
        values = json.loads(metadata[key])
    except (KeyError, json.JSONDecodeError) as err:
        raise error(path, f"bad {key} metadata ({type(err).__name__}: {err})") from None
    ok = (str, type(None)) if optional else str
    if not isinstance(values, list) or len(values) != count or not all(isinstance(v, ok) for v in values):
        raise error(path, f"{key} metadata must list one {'string or null' if optional else 'string'} "
                          f"per clip ({count})")
    return values


def read_shard_record(path: Path, metadata: dict[str, str], labels: list[int] | None, count: int,
                      error: type[FileError]) -> ShardRecord:
    """A shard's :class:`ShardRecord` from its string ``metadata`` (``captions``: JSON list of strings or
    nulls, ``sources``: JSON list of strings, one per clip). Raises ``error`` naming ``path`` otherwise."""
    return ShardRecord(labels, _json_list(path, metadata, "captions", count, True, error),
                       _json_list(path, metadata, "sources", count, False, error))
