"""Sorted segments of id digests: how the ledger finds an id among ten million without a
page read per id, and records one without a write into the middle of a big index.

An id is kept as its 128-bit BLAKE2b digest (two 64-bit halves, `hi` and `lo`) with the run
that delivered it. Two different ids share a digest with a chance below 10^-20 even at a
billion ids, so the digest stands for the id.

A commit writes the ids it brings as one new *segment*: sorted by digest, cut into pages of
PAGE_ENTRIES, with a Bloom filter of its ids and the first digest of each page (its fence).
Segments are never changed in place, only merged: when MERGE_FANOUT segments of one size
class exist they become one (a log-structured merge, as in LevelDB), so an id is rewritten a
few times in all, and a commit is an append whatever the ids' order. A B-tree keyed by the id
(the first ledger) dirtied one page per id once it outgrew its cache: 11,000 ids/s at 10
million ids in random order.

Asking about a batch of ids costs, per segment, one look into its Bloom filter (in memory,
BLOOM_BITS_PER_ID bits an id); only where the filter says "maybe" is the one page the id
would be on read. A new id mostly reads no page, a delivered one one page.

Segments and pages are tables of the ledger's SQLite file, changed in transactions: a crash
leaves the old segments or the merged one, never half. Another process's commits (a second
run on the same ledger) are seen through a generation number every write counts up.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from hashlib import blake2b

import numpy as np

from backfill.books.bloom import BlockedBloom, masks_of

ENTRY = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("run", "<u4")])
PAGE_ENTRIES = 200  # 4,000 bytes: one SQLite page (4,096) each, no overflow
PAGE_SLOTS = 1 << 24  # a page's row key is segment × PAGE_SLOTS + its number
BLOOM_BITS_PER_ID = 16  # 0.5 % of new ids read a page, per segment they might be in
MERGE_FANOUT = 8  # segments of one size class merged at once
LARGEST_MERGE = 1 << 20  # entries: no merge makes a bigger segment (bounds its memory)
LOOKUP_BATCH = 4096  # ids whose pages are read at once: bounds the pages in memory

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


def digest_list(ids: Iterable[str]) -> list[bytes]:
    """Each id's 128-bit digest, as bytes: kept with an id's claim, so computed once."""
    return [blake2b(key.encode(), digest_size=16).digest() for key in ids]


def halves(raw: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Digests as their two 64-bit halves, `hi` and `lo`."""
    pairs = np.frombuffer(b"".join(raw), ">u8").astype(np.uint64).reshape(-1, 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def digests(ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    return halves(digest_list(ids))


@dataclass(frozen=True)
class Segment:
    """What a segment keeps in memory: its fences and its Bloom filter."""

    number: int
    entries: int
    fences: np.ndarray
    bloom: BlockedBloom

    @property
    def size_class(self) -> int:
        """Sizes within a factor of 8 share a class: below 1,024, below 8,192, ..."""
        return max(0, (self.entries.bit_length() - 8) // 3)


class SegmentStore:
    """The segments of one scope, through one connection. The caller serialises the calls
    (one lock), and each call is one transaction of its own."""

    def __init__(self, connection: sqlite3.Connection, scope: int) -> None:
        self._connection = connection
        self._scope = scope
        self._segments: dict[int, Segment] = {}
        self._version: int | None = None

    # --- asking --------------------------------------------------------------------------

    def runs_of(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """The run that delivered each digest; 0 where none did."""
        with self._reading():
            return self._runs_of(hi, lo)

    def count(self) -> int:
        with self._reading():
            return sum(segment.entries for segment in self._segments.values())

    def _runs_of(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hi), np.uint32)
        masks = masks_of(lo)
        asked: list[tuple[Segment, np.ndarray]] = []  # digests each filter says "maybe" to
        for segment in self._segments.values():
            maybe = np.flatnonzero(segment.bloom.contains_at((segment.bloom.words_of(lo), masks)))
            asked += [
                (segment, maybe[start : start + LOOKUP_BATCH])
                for start in range(0, len(maybe), LOOKUP_BATCH)
            ]
        group: list[tuple[Segment, np.ndarray]] = []
        size = 0
        for segment, positions in asked:  # one read per LOOKUP_BATCH digests, any segments
            if group and size + len(positions) > LOOKUP_BATCH:
                self._look_up(group, hi, lo, found)
                group, size = [], 0
            group.append((segment, positions))
            size += len(positions)
        if group:
            self._look_up(group, hi, lo, found)
        return found

    def _look_up(
        self,
        asked: list[tuple[Segment, np.ndarray]],
        hi: np.ndarray,
        lo: np.ndarray,
        found: np.ndarray,
    ) -> None:
        """Read the pages the asked digests would be on, in one query, and find them there.
        An id is in one segment (`add` looks first), unless two processes recorded it at
        once: then the first found counts."""
        keys = [
            _pages_for(segment, hi[positions]) + np.uint64(segment.number * PAGE_SLOTS)
            for segment, positions in asked
        ]
        rows = self._connection.execute(
            "SELECT key, entries FROM pages WHERE key IN (SELECT value FROM json_each(?)) "
            "ORDER BY key",
            (json.dumps(np.concatenate(keys).tolist()),),
        ).fetchall()
        pages: dict[int, list[bytes]] = {}
        for key, blob in rows:
            pages.setdefault(key // PAGE_SLOTS, []).append(blob)
        for segment, positions in asked:
            entries = np.frombuffer(b"".join(pages.get(segment.number, [])), ENTRY)
            runs = _find(entries, hi[positions], lo[positions])
            new = (runs != 0) & (found[positions] == 0)
            found[positions[new]] = runs[new]

    # --- recording -----------------------------------------------------------------------

    def add(self, hi: np.ndarray, lo: np.ndarray, runs: np.ndarray, *, new: bool = False) -> int:
        """Record digests as delivered by their runs, those not recorded already; how many.
        `new`: the caller has just found none of them recorded, so they are not looked up
        again (should another process record one meanwhile, a lookup finds either entry)."""
        with self._writing():
            entries = _entries(hi, lo, runs)
            if not new:
                entries = entries[self._runs_of(entries["hi"], entries["lo"]) == 0]
            if len(entries):
                self._write(entries)
            return len(entries)

    def merge_due(self) -> int:
        """Merge segments where a size class has MERGE_FANOUT of them; how many merges."""
        merges = 0
        while chosen := self._due():
            with self._writing():
                self._merge(chosen)
            merges += 1
        return merges

    def _due(self) -> list[Segment]:
        classes: dict[int, list[Segment]] = {}
        for segment in self._segments.values():
            classes.setdefault(segment.size_class, []).append(segment)
        for size_class in sorted(classes):
            members = classes[size_class]
            if len(members) < MERGE_FANOUT:
                continue
            chosen, total = [], 0
            for segment in sorted(members, key=lambda member: member.entries)[:MERGE_FANOUT]:
                if total + segment.entries > LARGEST_MERGE:
                    break
                chosen.append(segment)
                total += segment.entries
            if len(chosen) >= 2:
                return sorted(chosen, key=lambda member: member.number)  # oldest first
        return []

    def _merge(self, chosen: list[Segment]) -> None:
        if any(segment.number not in self._segments for segment in chosen):
            return  # another process merged them first
        merged = np.empty(sum(segment.entries for segment in chosen), ENTRY)
        filled = 0
        for segment in chosen:  # oldest first: the stable sort keeps an id's first run
            filled = self._read_segment_into(segment.number, merged, filled)
        merged = merged[:filled]
        merged = merged[np.argsort(merged["hi"], kind="stable")]
        self._write(_without_repeats(merged))
        for segment in chosen:
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

    def _write(self, entries: np.ndarray) -> None:
        """A new segment of `entries`, sorted by hi."""
        fences = entries["hi"][::PAGE_ENTRIES].copy()
        bloom = BlockedBloom.of(entries["lo"], BLOOM_BITS_PER_ID)
        number = self._connection.execute(
            "INSERT INTO segments (scope, entries, fences, bloom) VALUES (?, ?, ?, ?)",
            (self._scope, len(entries), fences.tobytes(), bloom.words.tobytes()),
        ).lastrowid
        assert number is not None
        base = number * PAGE_SLOTS
        self._connection.executemany(
            "INSERT INTO pages (key, entries) VALUES (?, ?)",
            (
                (base + page, entries[start : start + PAGE_ENTRIES].tobytes())
                for page, start in enumerate(range(0, len(entries), PAGE_ENTRIES))
            ),
        )
        self._segments[number] = Segment(number, len(entries), fences, bloom)

    # --- transactions, and what other connections changed ----------------------------------

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


def _pages_for(segment: Segment, hi: np.ndarray) -> np.ndarray:
    """The pages digests starting with `hi` would be on. Entries sharing a `hi` (one in
    10^12 at 10 million ids) may straddle pages: all those pages are named."""
    first = np.maximum(np.searchsorted(segment.fences, hi, "left") - 1, 0)
    last = np.maximum(np.searchsorted(segment.fences, hi, "right") - 1, 0)
    pages = [first] + [np.arange(a, b + 1) for a, b in zip(first, last) if b > a]
    return np.unique(np.concatenate(pages)).astype(np.uint64)


def _find(entries: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """The run of each digest among `entries` (sorted by hi); 0 where it is not there."""
    if not len(entries):
        return np.zeros(len(hi), np.uint32)
    at = np.searchsorted(entries["hi"], hi, "left")
    clipped = np.minimum(at, len(entries) - 1)
    same_hi = (at < len(entries)) & (entries["hi"][clipped] == hi)
    exact = same_hi & (entries["lo"][clipped] == lo)
    runs = np.where(exact, entries["run"][clipped], 0).astype(np.uint32)
    for k in np.flatnonzero(same_hi & ~exact):  # another id with this hi: look along
        j = int(at[k])
        while j < len(entries) and entries["hi"][j] == hi[k]:
            if entries["lo"][j] == lo[k]:
                runs[k] = entries["run"][j]
                break
            j += 1
    return runs


def _entries(hi: np.ndarray, lo: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Entries sorted by digest, each digest once."""
    order = np.lexsort((lo, hi))
    entries = np.empty(len(hi), ENTRY)
    entries["hi"], entries["lo"], entries["run"] = hi[order], lo[order], runs[order]
    return _without_repeats(entries)


def _without_repeats(entries: np.ndarray) -> np.ndarray:
    """Drop an entry equal to the one before it (sorted by hi, so repeats are neighbours
    unless another id shares their hi: then the lookup still finds the first)."""
    if len(entries) < 2:
        return entries
    repeat = np.zeros(len(entries), bool)
    repeat[1:] = (entries["hi"][1:] == entries["hi"][:-1]) & (
        entries["lo"][1:] == entries["lo"][:-1]
    )
    return entries[~repeat] if repeat.any() else entries
