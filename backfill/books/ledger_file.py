"""The ledger's SQLite file opened: its pragmas, its schema version, and the upgrade of a
version 1 ledger (ids as text in one B-tree) into segments of digests.

Apart from the ledger (id_ledger.py), which is about ids and runs: opening a file that may
be old, foreign or not a ledger at all, and saying which in one line, is its own job.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backfill.books.id_digests import digests
from backfill.books.id_segments import LARGEST_MERGE, SegmentStore
from backfill.books.segment_tables import SCHEMA as SEGMENTS_SCHEMA
from backfill.books.segment_tables import transaction
from backfill.errors import JournalError

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


@dataclass(frozen=True)
class LedgerScope:
    """Where an id counts as delivered: one endpoint, one envelope, one event name."""

    endpoint: str
    api: str
    event_name: str

    @classmethod
    def of(cls, endpoint: str, api: str, event_name: str) -> LedgerScope:
        return cls(endpoint.rstrip("/"), api, event_name)


def scope_number(connection: sqlite3.Connection, scope: LedgerScope, *, create: bool) -> int | None:
    """The scope's number in the file (its segments are kept under it); None if it has none."""
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


def connect(path: Path, in_memory: bool, *, writable: bool) -> sqlite3.Connection:
    """The ledger file opened (created or upgraded when `writable`), in autocommit mode: every
    transaction is explicit, so none keeps an old snapshot open."""
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
