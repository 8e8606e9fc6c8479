"""An append-only record file (the report, the journal): every line reaches the operating
system in one `write(2)`, and nothing is buffered in Python, so a `kill -9` loses nothing.

Durability beyond the process is explicit: `sync` fsyncs the file (a run calls it on a
timer and at the end), and a new file's directory entry is fsynced when it is created, so
the file itself survives a power cut. A failed or short write raises `RecordWriteError`
naming the file and the OS error, and the file refuses every later write: its last line is
then at worst torn, which readers ignore and a resumed run cuts off.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from backfill.errors import RecordWriteError

PRIVATE_FILE_MODE = 0o600


def fsync_directory(directory: Path) -> None:
    """Make a file's creation durable: its name lives in the directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some systems cannot open a directory (Windows): nothing to do there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not every filesystem can fsync a directory; the file's data is still synced
    finally:
        os.close(fd)


def describe_os_error(path: Path, exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return f"cannot write {path}: {reason} (errno {exc.errno})"


class RecordFile:
    """One append-only file, created readable by its owner only (it holds customer data)."""

    def __init__(self, path: Path, *, truncate: bool = False) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
        try:
            self._fd: int | None = os.open(path, flags, PRIVATE_FILE_MODE)
            os.fchmod(self._fd, PRIVATE_FILE_MODE)  # also over an old world-readable file
        except OSError as exc:
            raise RecordWriteError(describe_os_error(path, exc)) from None
        self.broken: str | None = None
        self._dirty = False
        self._lock = threading.Lock()  # `sync` may run in a thread while the loop writes

    @property
    def size(self) -> int:
        return os.fstat(self._fd).st_size if self._fd is not None else 0

    def write(self, data: bytes) -> None:
        if self.broken is not None:
            raise RecordWriteError(self.broken)
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        try:
            written = os.write(self._fd, data)
            while 0 < written < len(data):  # a short write: the rest says why (EFBIG...)
                count = os.write(self._fd, data[written:])
                if count <= 0:
                    break
                written += count
        except OSError as exc:
            self.broken = describe_os_error(self.path, exc)
            raise RecordWriteError(self.broken) from None
        if written != len(data):
            self.broken = (
                f"cannot write {self.path}: short write ({written} of {len(data)} bytes; "
                "is the disk full?)"
            )
            raise RecordWriteError(self.broken)
        self._dirty = True

    def sync(self) -> None:
        """fsync what was written since the last sync; safe to call from another thread."""
        with self._lock:
            if self._fd is None or not self._dirty:
                return
            self._dirty = False
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self.broken = self.broken or describe_os_error(self.path, exc)
                raise RecordWriteError(self.broken) from None

    def make_durable(self) -> None:
        """At creation: the first lines (a header) and the directory entry, on disk."""
        self._dirty = True
        self.sync()
        fsync_directory(self.path.parent)

    def close(self) -> None:
        """Sync and close; a file that already failed is closed without another error."""
        try:
            if self.broken is None:
                self.sync()
        finally:
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
