"""The ledger's segments as SQLite tables, and the view of them a connection keeps in
memory (each segment's fences and Bloom filter), brought up to date at the start of every
transaction with what other connections committed.

Apart from SegmentStore (id_segments.py), which decides what to look up, add and merge: this
is the storage under it, and the one place that knows the tables and transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np

from backfill.books.bloom import BlockedBloom
from backfill.books.id_digests import ENTRY, Segment

PAGE_SLOTS = 1 << 24  # a page's row key is segment × PAGE_SLOTS + its number

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    segment INTEGER PRIMARY KEY AUTOINCREMENT,
    scope INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    fences BLOB NOT NULL,
    bloom BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_scope ON segments (scope, segment);
CREATE TABLE IF NOT EXISTS pages (
    key INTEGER PRIMARY KEY,
    entries BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS generation (
    only INTEGER PRIMARY KEY CHECK (only = 0),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO generation VALUES (0, 0);
"""


class SegmentTables:
    """The segments of one scope, through one connection. The caller serialises the calls
    (one lock), and each call is one transaction of its own."""

    def __init__(self, connection: sqlite3.Connection, scope: int) -> None:
        self._connection = connection
        self._scope = scope
        self._segments: dict[int, Segment] = {}
        self._version: int | None = None

    def _delete(self, segment: Segment) -> None:
        """A segment and its pages gone (merged into another)."""
        base = segment.number * PAGE_SLOTS
        self._connection.execute(
            "DELETE FROM pages WHERE key >= ? AND key < ?", (base, base + PAGE_SLOTS)
        )
        self._connection.execute("DELETE FROM segments WHERE segment = ?", (segment.number,))
        del self._segments[segment.number]

    def _read_segment_into(self, segment: int, entries: np.ndarray, at: int) -> int:
        """Copy a segment's entries into `entries` from `at`, page by page (no second copy of
        the segment in memory); where the next one goes."""
        base = segment * PAGE_SLOTS
        raw = entries.view(np.uint8)
        for (page,) in self._connection.execute(
            "SELECT entries FROM pages WHERE key >= ? AND key < ? ORDER BY key",
            (base, base + PAGE_SLOTS),
        ):
            start = at * ENTRY.itemsize
            raw[start : start + len(page)] = np.frombuffer(page, np.uint8)
            at += len(page) // ENTRY.itemsize
        return at

    def _reading(self) -> AbstractContextManager[None]:
        return self._transaction("BEGIN")

    def _writing(self) -> AbstractContextManager[None]:
        return self._transaction("BEGIN IMMEDIATE")

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[None]:
        """One transaction, with the segments brought up to date at its start. On any error
        (a failed COMMIT included) the segments in memory are reloaded at the next one:
        what this transaction wrote there never happened."""
        writes = begin != "BEGIN"
        try:
            with transaction(self._connection, begin):
                self._refresh()
                yield
                if writes:
                    self._connection.execute("UPDATE generation SET value = value + 1")
        except BaseException:
            self._segments = {}
            self._version = None
            raise
        if writes:
            self._version = (self._version or 0) + 1

    def _refresh(self) -> None:
        """Load what other connections committed since: new segments in, merged ones out.
        The generation is read inside the transaction, so it and the segments are one
        snapshot; every write transaction counts it up."""
        version = self._connection.execute("SELECT value FROM generation").fetchone()[0]
        if version == self._version:
            return
        rows = self._connection.execute(
            "SELECT segment, entries FROM segments WHERE scope = ? ORDER BY segment",
            (self._scope,),
        ).fetchall()
        known = self._segments
        self._segments = {
            number: known.get(number) or self._load(number, entries) for number, entries in rows
        }
        self._version = version

    def _load(self, number: int, entries: int) -> Segment:
        fences, bloom = self._connection.execute(
            "SELECT fences, bloom FROM segments WHERE segment = ?", (number,)
        ).fetchone()
        return Segment(
            number,
            entries,
            np.frombuffer(fences, np.uint64),
            BlockedBloom(np.frombuffer(bloom, np.uint64)),
        )


@contextmanager
def transaction(connection: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """One explicit transaction (the connection is in autocommit mode, so that it never keeps
    an old snapshot open). A COMMIT that fails (a full disk) rolls back too."""
    connection.execute(begin)
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
