"""A training run's folder (``out_dir``): one trainer at a time, and a failed start leaves nothing behind.

:class:`RunDirectory` creates the folder when it is missing and takes an exclusive ``fcntl.flock`` on
``OUT/.lock`` for the whole run: the kernel releases it when the trainer exits or is killed (even with
``kill -9``), so a stale lock never blocks a later run. The lock file holds the holder's process id, which
the refusal of a second trainer names. The file itself stays (deleting it would let two trainers lock two
different files). Until :meth:`RunDirectory.started`, :meth:`RunDirectory.abandon` removes every entry the
start created (the folder itself, and its parents, when they were created): a run that fails to start
leaves the file system as it found it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from videoflex.train.errors import RecipeError, RunLocked

LOCK_NAME = ".lock"


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long: not there
        return False


class RunDirectory:
    """``out``: the run's folder. Use :meth:`acquire`, then :meth:`started` once the run is under way (or
    :meth:`abandon` when its start failed), and :meth:`release` at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.created: Path | None = None  # the topmost folder this run created
        self.before: set[str] = set()  # the folder's entries before this run
        self.fd: int | None = None
        self.is_started = False
        self.acquired = False  # only a folder this process made or locked is ever cleaned up

    def acquire(self) -> None:
        """Create ``out`` if missing and lock it. Raises :class:`RunLocked` naming the holder's pid when
        another trainer holds the lock, and :class:`RecipeError` when the folder or its lock file cannot be
        made (a file in the way, no permission, a name too long); either way nothing this call created is
        left."""
        missing = [p for p in (self.out, *self.out.parents) if not _exists(p)]
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.out.mkdir()  # made here, not by a trainer starting at the same moment
                made = True
            except FileExistsError:
                if not self.out.is_dir():
                    raise
                made = False
        except OSError as err:
            top = next((p for p in reversed(missing) if _exists(p)), None)
            if top is not None:
                shutil.rmtree(top, ignore_errors=True)
            raise RecipeError(f"out_dir={self.out}: cannot be made ({err.strerror or err})") from None
        self.created = (missing[-1] if missing[-1] != self.out or made else None) if missing else None
        self.before = set() if self.created is not None else set(os.listdir(self.out))
        self.acquired = True
        try:
            self.fd = os.open(self.out / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            self.acquired = False  # the folder is the holder's: nothing of it is removed
            self.release()
            raise RunLocked(f"{self.out}: another trainer (pid {holder}) is running in this out_dir; wait for "
                            "it to finish or choose another out_dir") from None
        except OSError as err:
            self.abandon()
            raise RecipeError(f"out_dir={self.out}: cannot hold the run's lock file ({err.strerror or err})") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def started(self) -> None:
        """The run is under way: from now on its files stay."""
        self.is_started = True

    def abandon(self) -> None:
        """Remove what the start created (only before :meth:`started`, and only in the process that called
        :meth:`acquire`: under torchrun the main process) and release the lock."""
        if self.acquired and not self.is_started:
            if self.created is not None:
                shutil.rmtree(self.created, ignore_errors=True)
            elif self.out.is_dir():
                for name in set(os.listdir(self.out)) - self.before:
                    path = self.out / name
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() and not path.is_symlink() \
                        else path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        """Release the lock (closing the file; the kernel also does this when the process ends)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
