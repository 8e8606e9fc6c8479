"""The ledger of delivered ids: what holds across exports when the mapping names an `id:`.

The journal knows rows of one source; exports overlap (December's file holds the whole year
again), so a row must also be known by its order id. The ledger is a SQLite database (the
standard library's; a format made for this, not a home-made one) of the ids the server
accepted, per scope: the endpoint, the envelope (`--api`) and the event name. The same order
sent to another endpoint or as another event is another delivery. Inside it, each scope's ids
are digests in sorted, merged segments (id_segments.py): checking and recording cost the same
whatever the order of the ids, and the memory stays flat as the ledger grows. The file holds
digests, not the ids themselves. Opening the file (its version, its upgrade) is
ledger_file.py's job; the ids met but not committed yet are id_claims.py's.

Crash safety. The database runs in WAL mode with `synchronous=NORMAL`: a commit is a write
to the WAL without an fsync, so a `kill -9` loses nothing committed, and a power cut may
lose the last commits (SQLite's WAL keeps the file intact where the disk honours fsync).
Accepted ids are committed in batches, every `COMMIT_INTERVAL` seconds (later while the
reader thread holds the ledger for a merge of segments: the sending loop never waits for
this process's merges; another run merging in the same ledger file can hold a commit for up
to SQLite's busy timeout). A crash can lose the last of them; the journal of that run still
holds those rows (it writes each one at once), and `--resume` records the ids of every row
the journal skips: once a crashed run is resumed, the ledger knows everything it delivered.
The window that is left is the journal's own: requests in flight at the crash.

Ids are text: an integer id 42 and the text "42" are the same id.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backfill.books.id_claims import IdClaims
from backfill.books.id_digests import digest_list, digests, halves
from backfill.books.id_segments import SegmentStore
from backfill.books.ledger_file import LedgerScope, connect, scope_number
from backfill.books.segment_tables import transaction
from backfill.errors import JournalError

LEDGER_ENV = "BACKFILL_LEDGER"
LEDGER_NAME = "ledger.sqlite3"
COMMIT_INTERVAL = 0.5  # seconds between commits of accepted ids


def default_ledger_path() -> Path:
    """`BACKFILL_LEDGER`, else the user's data folder: one ledger for every export and
    every folder a user runs from, since it is about where events went, not which file."""
    chosen = os.environ.get(LEDGER_ENV, "").strip()
    if chosen:
        return Path(chosen).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "backfill" / LEDGER_NAME


@dataclass
class IdCheck:
    """A chunk's ids against the ledger: delivered by an earlier run (skip and count), or
    met earlier in this run (position -> where, for the report)."""

    already_sent: np.ndarray
    duplicates: dict[int, str]


class IdLedger:
    """One scope of a ledger file, for one run. `check` runs in the reader thread, `record`
    in the sending loop; one connection, one lock."""

    def __init__(self, path: str | Path, scope: LedgerScope, source: str = "") -> None:
        self.path = Path(path)
        self.scope = scope
        in_memory = str(path) == ":memory:"
        if not in_memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = connect(self.path, in_memory, writable=True)
        self._lock = threading.Lock()
        scope_id, self._run = self._open_run(source)
        self._store = SegmentStore(self._connection, scope_id)
        self._claims = IdClaims()  # met by this run, not committed yet
        self._pending: list[str] = []
        self._last_commit = time.monotonic()
        self.recorded = 0

    def _open_run(self, source: str) -> tuple[int, int]:
        scope = self.scope
        with self._lock, transaction(self._connection):
            scope_id = scope_number(self._connection, scope, create=True)
            run = self._connection.execute(
                "INSERT INTO runs (started, source) VALUES (?, ?)", (time.time(), source)
            ).lastrowid
        assert scope_id is not None
        return scope_id, int(run or 0)

    # --- reading -------------------------------------------------------------------------

    def delivered_by(self, ids: Sequence[str]) -> np.ndarray:
        """The run that delivered each of `ids`; 0 where none did."""
        return self._runs_of(digest_list(ids))

    def _runs_of(self, raw: list[bytes]) -> np.ndarray:
        hi, lo = halves(raw)
        with self._lock:
            # Merges happen here, in the reader thread, never in the sending loop. One that
            # fails (a full disk) leaves the segments as they were: a later check tries again.
            with suppress(sqlite3.Error):
                self._store.merge_due()
            try:
                return self._store.runs_of(hi, lo)
            except sqlite3.Error as exc:
                raise JournalError(f"{self.path}: cannot read delivered ids ({exc}).") from exc

    def delivered(self, ids: Sequence[str]) -> np.ndarray:
        """Which of `ids` are in the ledger (any run, this one included), as a mask."""
        return self.delivered_by(ids) != 0

    def check(
        self,
        ids: Sequence[str],
        origins: Sequence[str],
        settled: Iterable[tuple[str, str]] = (),
    ) -> IdCheck:
        """Sort a chunk's ids (of rows about to be sent) into: delivered by an earlier run;
        met before in this run; new, and then claimed for this run. `settled`: (id, row) of
        the chunk's rows an earlier run's journal says were accepted, which the ledger may
        not hold yet (recorded after this check, and committed later)."""
        self._claims.settle(settled)
        duplicates = self._claims.met_before(ids, origins)
        raw = digest_list(ids)
        runs = self._runs_of(raw)
        already_sent = (runs != 0) & (runs != self._run)
        for position in np.flatnonzero(runs == self._run).tolist():
            duplicates.setdefault(position, "an earlier row of this run")
        if not duplicates and not already_sent.any():  # the usual chunk: claim every id
            self._claims.claim(ids, origins, raw)
        else:
            claims = [p for p in np.flatnonzero(~already_sent).tolist() if p not in duplicates]
            self._claims.claim(ids, origins, raw, claims)
        return IdCheck(already_sent, duplicates)

    def count(self) -> int:
        with self._lock:
            return self._store.count()

    # --- writing -------------------------------------------------------------------------

    def record(self, key: str) -> None:
        """An id the server accepted; committed with others, every COMMIT_INTERVAL."""
        self._pending.append(key)
        self._commit_when_due()

    def record_many(self, keys: Iterable[str]) -> None:
        self._pending.extend(keys)
        self._commit_when_due()

    def release(self, key: str) -> None:
        """An id claimed but not delivered (it failed or was not sent): a later row may."""
        self._claims.release(key)

    def _commit_when_due(self) -> None:
        if time.monotonic() - self._last_commit < COMMIT_INTERVAL:
            return
        if self._lock.acquire(blocking=False):  # busy with a merge: at the next record
            try:
                self._commit_locked()
            finally:
                self._lock.release()

    def commit(self) -> None:
        with self._lock:
            self._commit_locked()

    def _commit_locked(self) -> None:
        pending, self._pending = self._pending, []
        self._last_commit = time.monotonic()
        if not pending:
            return
        new, claimed, settled = self._claims.split(pending)  # settled: on --resume
        left = pending  # what is not committed yet: tried again at the next commit
        try:
            if new:
                self._store.add(*halves(new), np.full(len(new), self._run, np.uint32), new=True)
                self._recorded_now(claimed)
                left = settled
            if settled:
                self._store.add(*digests(settled), np.full(len(settled), self._run, np.uint32))
                self._recorded_now(settled)
        except sqlite3.Error as exc:
            self._pending = left + self._pending
            raise JournalError(f"{self.path}: cannot record delivered ids ({exc}).") from exc

    def _recorded_now(self, keys: list[str]) -> None:
        self._claims.committed(keys)
        self.recorded += len(keys)

    def close(self) -> None:
        try:
            self.commit()  # no merge here: a stop stays quick; the next check merges
        finally:
            self._connection.close()


def delivered_reader(path: str | Path, scope: LedgerScope) -> Callable[[Sequence[str]], np.ndarray]:
    """A read-only look at one scope of a ledger, for `validate` and notebooks: which ids an
    earlier run delivered. Opens nothing for writing; a ledger that does not exist yet holds
    nothing."""
    path = Path(path)
    if not path.exists():
        return lambda ids: np.zeros(len(ids), dtype=bool)
    connection = connect(path, False, writable=False)
    try:
        scope_id = scope_number(connection, scope, create=False)
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: not a backfill ledger ({exc}).") from None
    if scope_id is None:
        connection.close()
        return lambda ids: np.zeros(len(ids), dtype=bool)
    store = SegmentStore(connection, scope_id)
    return lambda ids: store.runs_of(*digests(ids)) != 0
