"""Sorted segments of id digests: how the ledger finds an id among ten million without a
page read per id, and records one without a write into the middle of a big index.

An id is kept as its 128-bit digest with the run that delivered it (id_digests.py).

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
run on the same ledger) are seen through a generation number every write counts up
(segment_tables.py).
"""

from __future__ import annotations

import json

import numpy as np

from backfill.books.bloom import BlockedBloom, masks_of
from backfill.books.id_digests import (
    ENTRY,
    Segment,
    entries_of,
    find,
    pages_for,
    without_repeats,
)
from backfill.books.segment_tables import PAGE_SLOTS, SegmentTables

PAGE_ENTRIES = 200  # 4,000 bytes: one SQLite page (4,096) each, no overflow
BLOOM_BITS_PER_ID = 16  # 0.5 % of new ids read a page, per segment they might be in
MERGE_FANOUT = 8  # segments of one size class merged at once
LARGEST_MERGE = 1 << 20  # entries: no merge makes a bigger segment (bounds its memory)
LOOKUP_BATCH = 4096  # ids whose pages are read at once: bounds the pages in memory


class SegmentStore(SegmentTables):
    """What the ledger asks of its segments: which run delivered each digest, record new
    ones, merge segments when a size class is full. The tables and transactions under it are
    SegmentTables'; the arithmetic of digests and entries is id_digests'."""

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
            pages_for(segment, hi[positions]) + np.uint64(segment.number * PAGE_SLOTS)
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
            runs = find(entries, hi[positions], lo[positions])
            new = (runs != 0) & (found[positions] == 0)
            found[positions[new]] = runs[new]

    # --- recording -----------------------------------------------------------------------

    def add(self, hi: np.ndarray, lo: np.ndarray, runs: np.ndarray, *, new: bool = False) -> int:
        """Record digests as delivered by their runs, those not recorded already; how many.
        `new`: the caller has just found none of them recorded, so they are not looked up
        again (should another process record one meanwhile, a lookup finds either entry)."""
        with self._writing():
            entries = entries_of(hi, lo, runs)
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
        self._write(without_repeats(merged))
        for segment in chosen:
            self._delete(segment)

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
