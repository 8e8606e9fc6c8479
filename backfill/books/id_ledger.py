"""The ledger of delivered ids: what holds across exports when the mapping names an `id:`.

The journal knows rows of one source; exports overlap (December's file holds the whole year
again), so a row must also be known by its order id. The ledger is a SQLite database (the
standard library's; a format made for this, not a home-made one) of the ids the server
accepted, per scope: the endpoint, the envelope (`--api`) and the event name. The same order
sent to another endpoint or as another event is another delivery. Inside it, each scope's ids
are digests in sorted, merged segments (id_segments.py): checking and recording cost the same
whatever the order of the ids, and the memory stays flat as the ledger grows. The file holds
digests, not the ids themselves.

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

from backfill.books.id_digests import digest_list, digests, halves
from backfill.books.id_segments import LARGEST_MERGE, SegmentStore
from backfill.books.segment_tables import SCHEMA as SEGMENTS_SCHEMA
from backfill.books.segment_tables import transaction
from backfill.errors import JournalError

LEDGER_ENV = "BACKFILL_LEDGER"
LEDGER_NAME = "ledger.sqlite3"
COMMIT_INTERVAL = 0.5  # seconds between commits of accepted ids
CACHE_KIB = 32 * 1024  # SQLite's page cache: bounds the memory at any size
SCHEMA_VERSION = 2  # 1 kept the ids as text in one B-tree: upgraded when opened to write

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS scopes (
    scope INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL,
    api TEXT NOT NULL,
    event_name TEXT NOT NULL,
    UNIQUE (endpoint, api, event_name)
);
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    source TEXT NOT NULL
);
"""
    + SEGMENTS_SCHEMA
)


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


@dataclass(frozen=True)
class LedgerScope:
    """Where an id counts as delivered: one endpoint, one envelope, one event name."""

    endpoint: str
    api: str
    event_name: str

    @classmethod
    def of(cls, endpoint: str, api: str, event_name: str) -> LedgerScope:
        return cls(endpoint.rstrip("/"), api, event_name)


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
        self._connection = _connect(self.path, in_memory, writable=True)
        self._lock = threading.Lock()
        scope_id, self._run = self._open_run(source)
        self._store = SegmentStore(self._connection, scope_id)
        # Ids this run sent and has not committed yet (in flight, or accepted since the last
        # commit): the ledger alone would miss a duplicate of one of them. With the row that
        # claimed each, and its digest (computed once, for the check and the commit).
        self._claimed: dict[str, tuple[str, bytes]] = {}
        # Ids an earlier run delivered (its journal says so) about to be recorded again, in
        # case its crash came before their commit: with the row that delivered each.
        self._settling: dict[str, str] = {}
        self._pending: list[str] = []
        self._last_commit = time.monotonic()
        self.recorded = 0

    def _open_run(self, source: str) -> tuple[int, int]:
        scope = self.scope
        with self._lock, transaction(self._connection):
            scope_id = _scope_id(self._connection, scope, create=True)
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
        self._settling.update(settled)
        duplicates = self._met_before(ids, origins)
        raw = digest_list(ids)
        runs = self._runs_of(raw)
        already_sent = (runs != 0) & (runs != self._run)
        for position in np.flatnonzero(runs == self._run).tolist():
            duplicates.setdefault(position, "an earlier row of this run")
        if not duplicates and not already_sent.any():  # the usual chunk: claim every id
            self._claimed.update(zip(ids, zip(origins, raw)))
        else:
            claims = [p for p in np.flatnonzero(~already_sent).tolist() if p not in duplicates]
            self._claimed.update((ids[p], (origins[p], raw[p])) for p in claims)
        return IdCheck(already_sent, duplicates)

    def _met_before(self, ids: Sequence[str], origins: Sequence[str]) -> dict[int, str]:
        """Position -> where its id was met first: earlier in the chunk, or claimed by a row
        of an earlier chunk and not committed yet (after its commit the ledger knows it)."""
        first_at = dict(zip(reversed(ids), range(len(ids) - 1, -1, -1)))  # C speed
        duplicates: dict[int, str] = {}
        if len(first_at) < len(ids):  # rare: an id twice in one chunk
            for position, key in enumerate(ids):
                if first_at[key] != position:
                    duplicates[position] = origins[first_at[key]]
        for key in first_at.keys() & self._claimed.keys():
            duplicates[first_at[key]] = self._claimed[key][0]
        for key in first_at.keys() & self._settling.keys():
            duplicates.setdefault(first_at[key], self._settling[key])
        return duplicates

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
        self._claimed.pop(key, None)

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
        known = list(map(self._claimed.get, pending))  # (row, digest) of ids this run claimed
        new = [entry[1] for entry in known if entry is not None]
        claimed = [key for key, entry in zip(pending, known) if entry is not None]
        settled = [key for key, entry in zip(pending, known) if entry is None]  # on --resume
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
        """Committed: only now are the claims let go (a check in between finds them)."""
        for key in keys:
            self._claimed.pop(key, None)
            self._settling.pop(key, None)
        self.recorded += len(keys)

    def close(self) -> None:
        try:
            self.commit()  # no merge here: a stop stays quick; the next check merges
        finally:
            self._connection.close()

    def __repr__(self) -> str:
        return f"<IdLedger {str(self.path)!r} {self.scope}>"


def delivered_reader(path: str | Path, scope: LedgerScope) -> Callable[[Sequence[str]], np.ndarray]:
    """A read-only look at one scope of a ledger, for `validate` and notebooks: which ids an
    earlier run delivered. Opens nothing for writing; a ledger that does not exist yet holds
    nothing."""
    path = Path(path)
    if not path.exists():
        return lambda ids: np.zeros(len(ids), dtype=bool)
    connection = _connect(path, False, writable=False)
    try:
        scope_id = _scope_id(connection, scope, create=False)
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: not a backfill ledger ({exc}).") from None
    if scope_id is None:
        connection.close()
        return lambda ids: np.zeros(len(ids), dtype=bool)
    store = SegmentStore(connection, scope_id)
    return lambda ids: store.runs_of(*digests(ids)) != 0


def _scope_id(connection: sqlite3.Connection, scope: LedgerScope, *, create: bool) -> int | None:
    if create:
        connection.execute(
            "INSERT OR IGNORE INTO scopes (endpoint, api, event_name) VALUES (?, ?, ?)",
            (scope.endpoint, scope.api, scope.event_name),
        )
    row = connection.execute(
        "SELECT scope FROM scopes WHERE endpoint = ? AND api = ? AND event_name = ?",
        (scope.endpoint, scope.api, scope.event_name),
    ).fetchone()
    return None if row is None else int(row[0])


def _connect(path: Path, in_memory: bool, *, writable: bool) -> sqlite3.Connection:
    connection: sqlite3.Connection | None = None
    try:
        if in_memory:
            connection = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        elif writable:
            connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        else:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            connection = sqlite3.connect(
                uri, uri=True, check_same_thread=False, isolation_level=None
            )
        connection.execute("PRAGMA busy_timeout=10000")
        connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if writable:
            _create_or_upgrade(connection, version, path)
        elif version != SCHEMA_VERSION:
            raise JournalError(_version_message(path, version))
    except (sqlite3.DatabaseError, JournalError) as exc:
        if connection is not None:
            connection.close()
        if isinstance(exc, JournalError):
            raise
        raise JournalError(f"{path}: not a backfill ledger ({exc}).") from None
    if writable and not in_memory:
        with suppress(OSError):
            os.chmod(path, 0o600)  # ids of a shop's orders: the owner's alone
    return connection


def _version_message(path: Path, version: int) -> str:
    if version == 1:
        return (
            f"{path}: a ledger from an earlier backfill (version 1); the next `backfill run` "
            "with it upgrades it, then this works."
        )
    return (
        f"{path}: a ledger of version {version}, from another backfill; "
        f"this one reads version {SCHEMA_VERSION}."
    )


def _create_or_upgrade(connection: sqlite3.Connection, version: int, path: Path) -> None:
    if version == SCHEMA_VERSION:
        return
    if version not in (0, 1):
        raise JournalError(_version_message(path, version))
    with transaction(connection):
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
    if version == 1:
        try:
            _upgrade_text_ids(connection)
        except sqlite3.OperationalError:
            if _user_version(connection) == SCHEMA_VERSION:
                return  # another run upgraded it meanwhile (and dropped the table we read)
            raise
    with transaction(connection):  # the old table goes with the version's change: one step
        connection.execute("DROP TABLE IF EXISTS delivered")
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _user_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _upgrade_text_ids(connection: sqlite3.Connection) -> None:
    """Version 1 kept each id as text in one B-tree: move them into segments, a batch at a
    time (each its own transaction: an interrupted upgrade starts over where it stopped,
    since a digest already in a segment is not added twice). The caller drops the old table
    in the transaction that sets the new version, so a crash between the two cannot leave
    a version 1 ledger without its table."""
    if not connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'delivered'"
    ).fetchone():
        return  # an upgrade by an earlier backfill stopped after dropping it: nothing to move
    stores: dict[int, SegmentStore] = {}
    after: tuple[int, str] = (-1, "")
    while rows := connection.execute(
        "SELECT scope, id, run FROM delivered WHERE (scope, id) > (?, ?) "
        "ORDER BY scope, id LIMIT ?",
        (*after, LARGEST_MERGE),
    ).fetchall():
        for scope in sorted({row[0] for row in rows}):
            mine = [row for row in rows if row[0] == scope]
            hi, lo = digests([row[1] for row in mine])
            store = stores.setdefault(scope, SegmentStore(connection, scope))
            store.add(hi, lo, np.array([row[2] for row in mine], np.uint32))
        after = rows[-1][0], rows[-1][1]
    for store in stores.values():
        store.merge_due()
