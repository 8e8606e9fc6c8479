"""The ledger of delivered ids: what holds across exports when the mapping names an `id:`.

The journal knows rows of one source; exports overlap (December's file holds the whole year
again), so a row must also be known by its order id. The ledger is a SQLite database (the
standard library's; a format made for this, not a home-made one) of the ids the server
accepted, per scope: the endpoint, the envelope (`--api`) and the event name. The same order
sent to another endpoint or as another event is another delivery.

Crash safety. The database runs in WAL mode with `synchronous=NORMAL`: a commit is a write to
the WAL without an fsync, so a `kill -9` loses nothing committed, and a power cut may lose the
last commits but never corrupts the database. Accepted ids are committed in batches, at least
every `COMMIT_INTERVAL` seconds, so a crash can lose the last fraction of a second of them.
The journal of that run still holds those rows (it writes each one at once), and `--resume`
records the ids of every row the journal skips: once a crashed run is resumed, the ledger
knows everything it delivered. The window that is left is the journal's own: requests in
flight at the crash.

Ids are text: an integer id 42 and the text "42" are the same id.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backfill.errors import JournalError

LEDGER_ENV = "BACKFILL_LEDGER"
LEDGER_NAME = "ledger.sqlite3"
COMMIT_INTERVAL = 0.5  # seconds between commits of accepted ids, at most
CACHE_KIB = 32 * 1024  # SQLite's page cache per connection: bounds the memory at any size
SCHEMA_VERSION = 1
QUERY_IDS = 20_000  # ids per query: one JSON array parameter each

_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS delivered (
    scope INTEGER NOT NULL,
    id TEXT NOT NULL,
    run INTEGER NOT NULL,
    PRIMARY KEY (scope, id)
) WITHOUT ROWID;
"""


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
    in the sending loop: two connections (WAL lets them work side by side)."""

    def __init__(self, path: str | Path, scope: LedgerScope, source: str = "") -> None:
        self.path = Path(path)
        self.scope = scope
        in_memory = str(path) == ":memory:"
        if not in_memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(self.path, in_memory)
        self._reader = self._writer if in_memory else _connect(self.path, False)
        self._write_lock = threading.Lock()
        self._read_lock = self._write_lock if in_memory else threading.Lock()
        self._scope_id, self._run = self._open_run(source)
        # Ids this run sent and has not committed yet (in flight, or accepted since the last
        # commit): the ledger alone would miss a duplicate of one of them.
        self._claimed: dict[str, str] = {}
        self._pending: list[str] = []
        self._last_commit = time.monotonic()
        self.recorded = 0

    def _open_run(self, source: str) -> tuple[int, int]:
        scope = self.scope
        with self._write_lock, _transaction(self._writer):
            self._writer.execute(
                "INSERT OR IGNORE INTO scopes (endpoint, api, event_name) VALUES (?, ?, ?)",
                (scope.endpoint, scope.api, scope.event_name),
            )
            row = self._writer.execute(
                "SELECT scope FROM scopes WHERE endpoint = ? AND api = ? AND event_name = ?",
                (scope.endpoint, scope.api, scope.event_name),
            ).fetchone()
            run = self._writer.execute(
                "INSERT INTO runs (started, source) VALUES (?, ?)", (time.time(), source)
            ).lastrowid
        return int(row[0]), int(run or 0)

    # --- reading -------------------------------------------------------------------------

    def delivered_by(self, ids: Sequence[str]) -> dict[int, int]:
        """Position -> the run that delivered it, for each of `ids` in the ledger."""
        found: dict[int, int] = {}
        with self._read_lock:
            for start in range(0, len(ids), QUERY_IDS):
                part = json.dumps(list(ids[start : start + QUERY_IDS]))
                rows = self._reader.execute(
                    "SELECT j.key, d.run FROM json_each(?) AS j "
                    "CROSS JOIN delivered AS d ON d.scope = ? AND d.id = j.value",
                    (part, self._scope_id),
                ).fetchall()
                found.update((start + position, run) for position, run in rows)
        return found

    def delivered(self, ids: Sequence[str]) -> np.ndarray:
        """Which of `ids` are in the ledger (any run, this one included), as a mask."""
        mask = np.zeros(len(ids), dtype=bool)
        mask[list(self.delivered_by(ids))] = True
        return mask

    def check(self, ids: Sequence[str], origins: Sequence[str]) -> IdCheck:
        """Sort a chunk's ids (of rows about to be sent) into: delivered by an earlier run;
        met before in this run; new, and then claimed for this run."""
        duplicates: dict[int, str] = {}
        first_in_chunk: dict[str, int] = {}
        for position, key in enumerate(ids):
            first = first_in_chunk.setdefault(key, position)
            if first != position:
                duplicates[position] = origins[first]
            elif key in self._claimed:  # before the ledger: a claim is dropped after its commit
                duplicates[position] = self._claimed[key]
        already_sent = np.zeros(len(ids), dtype=bool)
        for position, run in self.delivered_by(ids).items():
            if run != self._run:
                already_sent[position] = True
            else:
                duplicates.setdefault(position, "an earlier row of this run")
        for position, key in enumerate(ids):
            if not already_sent[position] and position not in duplicates:
                self._claimed[key] = origins[position]
        return IdCheck(already_sent, duplicates)

    def count(self) -> int:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT count(*) FROM delivered WHERE scope = ?", (self._scope_id,)
            ).fetchone()
        return int(row[0])

    # --- writing -------------------------------------------------------------------------

    def record(self, key: str) -> None:
        """An id the server accepted; committed with others, within COMMIT_INTERVAL."""
        self._pending.append(key)
        if time.monotonic() - self._last_commit >= COMMIT_INTERVAL:
            self.commit()

    def record_many(self, keys: Iterable[str]) -> None:
        self._pending.extend(keys)
        if time.monotonic() - self._last_commit >= COMMIT_INTERVAL:
            self.commit()

    def release(self, key: str) -> None:
        """An id claimed but not delivered (it failed or was not sent): a later row may."""
        self._claimed.pop(key, None)

    def commit(self) -> None:
        pending, self._pending = self._pending, []
        self._last_commit = time.monotonic()
        if not pending:
            return
        try:
            with self._write_lock, _transaction(self._writer):
                for start in range(0, len(pending), QUERY_IDS):
                    self._writer.execute(
                        "INSERT OR IGNORE INTO delivered (scope, id, run) "
                        "SELECT ?, value, ? FROM json_each(?)",
                        (self._scope_id, self._run, json.dumps(pending[start : start + QUERY_IDS])),
                    )
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: cannot record delivered ids ({exc}).") from exc
        for key in pending:  # only now: a check in between finds them in the ledger
            self._claimed.pop(key, None)
        self.recorded += len(pending)

    def close(self) -> None:
        self.commit()
        self._reader.close()
        if self._writer is not self._reader:
            self._writer.close()

    def __repr__(self) -> str:
        return f"<IdLedger {str(self.path)!r} {self.scope}>"


def delivered_reader(path: str | Path, scope: LedgerScope) -> Callable[[Sequence[str]], np.ndarray]:
    """A read-only look at one scope of a ledger, for `validate` and notebooks: which ids an
    earlier run delivered. Opens nothing for writing; a ledger that does not exist yet holds
    nothing."""
    path = Path(path)
    if not path.exists():
        return lambda ids: np.zeros(len(ids), dtype=bool)
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        row = connection.execute(
            "SELECT scope FROM scopes WHERE endpoint = ? AND api = ? AND event_name = ?",
            (scope.endpoint, scope.api, scope.event_name),
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: not a backfill ledger ({exc}).") from None
    if row is None:
        connection.close()
        return lambda ids: np.zeros(len(ids), dtype=bool)

    def delivered(ids: Sequence[str]) -> np.ndarray:
        found = np.zeros(len(ids), dtype=bool)
        for start in range(0, len(ids), QUERY_IDS):
            rows = connection.execute(
                "SELECT j.key FROM json_each(?) AS j "
                "CROSS JOIN delivered AS d ON d.scope = ? AND d.id = j.value",
                (json.dumps(list(ids[start : start + QUERY_IDS])), row[0]),
            ).fetchall()
            found[[start + r[0] for r in rows]] = True
        return found

    return delivered


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """One explicit transaction (the connections are in autocommit mode, so that a reader
    never keeps an old snapshot open)."""
    connection.execute("BEGIN")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _connect(path: Path, in_memory: bool) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(
            ":memory:" if in_memory else path, check_same_thread=False, isolation_level=None
        )
        if not in_memory:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=10000")
        connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        connection.executescript(_SCHEMA)
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise JournalError(
                f"{path}: a ledger of version {version}, from another backfill; "
                f"this one reads version {SCHEMA_VERSION}."
            )
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: not a backfill ledger ({exc}).") from None
    if not in_memory:
        with suppress(OSError):
            os.chmod(path, 0o600)  # ids of a shop's orders: the owner's alone
    return connection
