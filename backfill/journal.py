"""The crash-safe record of rows already accepted, so a resumed run sends only the rest.

A journal is an append-only text file beside the report (`<report>.state`):

    {"version": 1, "source": ..., "size": ..., "mtime_ns": ..., "mapping": ..., ...}
    a 17
    a 3
    ...
    done {"accepted": ..., ...}

The header keys it to one source file and one mapping. Each accepted row is written to the
operating system the moment the server accepts it (a `kill -9` loses nothing the OS has),
and fsynced in batches (a power cut loses at most a second). Failed rows need no entry:
the failure report is their record. Filtered rows need none: the filter decides again.
So after any crash the only rows that can be sent twice are those in flight at that moment.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backfill.errors import JournalError
from backfill.report import PRIVATE_FILE_MODE

JOURNAL_VERSION = 1
FSYNC_INTERVAL = 1.0


@dataclass(frozen=True)
class JournalKey:
    """What makes two runs the same backfill: the same bytes mapped the same way."""

    source: str
    size: int
    mtime_ns: int
    mapping: str
    api: str

    @classmethod
    def for_source(cls, source_path: Path, mapping_fingerprint: str, api: str) -> JournalKey:
        paths = sorted(source_path.glob("*.parquet")) if source_path.is_dir() else [source_path]
        stats = [p.stat() for p in paths]
        return cls(
            source=str(source_path.resolve()),
            size=sum(s.st_size for s in stats),
            mtime_ns=max((s.st_mtime_ns for s in stats), default=0),
            mapping=mapping_fingerprint,
            api=api,
        )


class RowSet:
    """Row numbers as a growable bitmap: 10 million rows cost 10 MB, not a Python set."""

    def __init__(self) -> None:
        self._bits = np.zeros(1024, dtype=bool)
        self.count = 0

    def add(self, row: int) -> None:
        if row >= len(self._bits):
            grown = np.zeros(max(row + 1, len(self._bits) * 2), dtype=bool)
            grown[: len(self._bits)] = self._bits
            self._bits = grown
        if not self._bits[row]:
            self._bits[row] = True
            self.count += 1

    def __contains__(self, row: object) -> bool:
        return isinstance(row, int) and 0 <= row < len(self._bits) and bool(self._bits[row])

    def __len__(self) -> int:
        return self.count


@dataclass
class JournalState:
    key: dict[str, Any]
    accepted: RowSet
    finished: bool


def journal_path(report_path: Path) -> Path:
    return report_path.with_name(report_path.name + ".state")


def read_journal(path: Path) -> JournalState | None:
    """The journal at `path`, or None if there is none. A torn last line is ignored."""
    if not path.exists():
        return None
    accepted = RowSet()
    finished = False
    with path.open(encoding="utf-8") as lines:
        header = lines.readline()
        try:
            key = json.loads(header)
        except json.JSONDecodeError:
            raise JournalError(
                f"{path}: not a backfill journal (unreadable header); remove it or use --restart."
            ) from None
        for line in lines:
            if not line.endswith("\n"):
                break
            if line.startswith("a "):
                accepted.add(int(line[2:]))
            elif line.startswith("done"):
                finished = True
    return JournalState(key=key, accepted=accepted, finished=finished)


def check_journal(
    path: Path,
    state: JournalState | None,
    key: JournalKey | None,
    *,
    resume: bool,
    restart: bool,
) -> bool:
    """Decide from an earlier journal whether this run resumes; refuse what would resend."""
    if restart:
        return False
    if state is None:
        if resume:
            raise JournalError(
                f"--resume: there is no journal at {path} to resume; "
                "check --report, or run without --resume to start."
            )
        return False
    wanted = asdict(key) if key else {}
    differs = [
        k
        for k in ("source", "size", "mtime_ns", "mapping", "api")
        if state.key.get(k) != wanted.get(k)
    ]
    if differs:
        raise JournalError(
            f"{path} belongs to another backfill (its {', '.join(differs)} differ from this "
            "run's). Use --report to write elsewhere, or --restart to discard that journal."
        )
    if resume:
        return True
    accepted = len(state.accepted)
    if state.finished:
        raise JournalError(
            f"this source was already sent with this mapping ({accepted:,} rows accepted; "
            f"journal {path}). Nothing was sent. Use --restart to send everything again."
        )
    raise JournalError(
        f"an unfinished run of this source exists ({accepted:,} rows accepted so far; "
        f"journal {path}). Nothing was sent. Continue it with --resume, or start over "
        "with --restart (rows already accepted would be sent again)."
    )


def drop_torn_tail(path: Path) -> None:
    """A crash mid-write leaves a last line without its newline: cut it off."""
    with path.open("rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


class JournalWriter:
    """Appends accepted rows; the header is written when the journal is created."""

    def __init__(self, path: Path, key: JournalKey, *, append: bool) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        # A raw descriptor: each line reaches the OS in one write(2), with no Python buffer
        # that a kill -9 could lose.
        self._fd: int | None = os.open(path, flags, PRIVATE_FILE_MODE)
        self._last_sync = time.monotonic()
        if not append:
            header = {"version": JOURNAL_VERSION, **asdict(key), "started": time.time()}
            self._write(json.dumps(header) + "\n")

    def accepted(self, row: int) -> None:
        self._write(f"a {row}\n")

    def finish(self, summary: dict[str, Any]) -> None:
        self._write("done " + json.dumps(summary) + "\n")
        self.sync()

    def _write(self, line: str) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: the journal is closed")
        os.write(self._fd, line.encode())
        if time.monotonic() - self._last_sync >= FSYNC_INTERVAL:
            self.sync()

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None
