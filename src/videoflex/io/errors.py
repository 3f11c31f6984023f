"""User-facing errors of the video I/O layer.

Each error names the file (or in-memory source) and the problem in one line, so a command line can
print ``str(error)`` and exit with status 2. They subclass ``ValueError`` (bad input, not a bug).
"""

from __future__ import annotations

import os


class FileError(ValueError):
    """A file could not be used; ``str(error)`` is ``"<source>: <problem>"``.

    Attributes:
        source: the file path (or a name for in-memory data, e.g. ``"shard-000.tar:0001.mp4"``).
        problem: what went wrong, in a few words.
    """

    def __init__(self, source: str | os.PathLike, problem: str = "") -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if problem else self.source)

    def __reduce__(self):  # keep both fields through pickling (DataLoader workers)
        return (type(self), (self.source, self.problem))


class VideoError(FileError):
    """A video file could not be used."""


class VideoReadError(VideoError):
    """A file is missing, empty, corrupt, truncated, not a video, or has no decodable frames."""


class VideoNotFoundError(VideoReadError, FileNotFoundError):
    """The file does not exist (also a ``FileNotFoundError``)."""


class VideoWriteError(VideoError):
    """A video could not be encoded or written (no such folder, no usable encoder, ...)."""
