"""Duplicate ids among a file's events, in bounded memory, for the audit of `backfill plan`.

Each id is reduced to a 64-bit hash, computed column-wise without a Python object per value.
Up to `EXACT_IDS` events the check is exact (8 bytes a hash and 8 a row number, sorted at
the end). Beyond that the hashes go into a Bloom filter of `BLOOM_BITS` bits (32 MB) and the
count becomes an estimate: a repeat is an id the filter says it has seen, which is wrong for
a small share of new ids (`false_repeat_chance`: 0.1 % of new ids at 10 million, 0.03 %
over such a file). The warning then says "about", and fires only when the repeats clearly
exceed the expected false ones. Memory stays flat whatever the file's size.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backfill.books.bloom import BlockedBloom, false_positive_chance

EXACT_IDS = 1_000_000
BLOOM_BITS = 1 << 28
BLOOM_WORDS = BLOOM_BITS // 64
EXAMPLE_ROWS = 5


class DuplicateIds:
    """Fed (rows, hashes) chunk by chunk; `result()` is None or (repeats, example rows,
    whether the count is an estimate)."""

    def __init__(self) -> None:
        self.hashes: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []
        self.stored = 0
        self.bloom: BlockedBloom | None = None
        self.inserted = 0
        self.repeats = 0
        self.expected_false = 0.0
        self.example_rows: list[int] = []

    def add(self, rows: np.ndarray, hashes: np.ndarray) -> None:
        if self.bloom is not None:
            self._filter(rows, hashes)
            return
        self.hashes.append(hashes)
        self.rows.append(rows)
        self.stored += len(hashes)
        if self.stored > EXACT_IDS:
            self.bloom = BlockedBloom.empty(BLOOM_WORDS)
            stored = list(zip(self.rows, self.hashes))
            self.hashes, self.rows = [], []
            for earlier_rows, earlier_hashes in stored:
                self._filter(earlier_rows, earlier_hashes)

    def result(self) -> tuple[int, list[int], bool] | None:
        if self.bloom is not None:
            if self.repeats <= 2 * self.expected_false + 10:
                return None
            return self.repeats, self.example_rows, True
        if not self.hashes:
            return None
        hashes = np.concatenate(self.hashes)
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        repeat = np.zeros(len(hashes), bool)
        repeat[order[1:]] = ordered[1:] == ordered[:-1]  # every occurrence after the first
        if not repeat.any():
            return None
        rows = np.sort(np.concatenate(self.rows)[repeat])
        return int(repeat.sum()), [int(r) for r in rows[:EXAMPLE_ROWS]], False

    def _filter(self, rows: np.ndarray, hashes: np.ndarray) -> None:
        """Repeats among `hashes`: those the filter has seen, and later ones of a value that
        occurs more than once in this batch; then the batch goes into the filter."""
        assert self.bloom is not None
        positions = self.bloom.positions(hashes)
        seen = self.bloom.contains_at(positions)
        ordered = np.sort(hashes)
        again = np.zeros(len(hashes), bool)
        if (ordered[1:] == ordered[:-1]).any():  # rare: only then the costlier argsort
            order = np.argsort(hashes, kind="stable")
            again[order[1:]] = hashes[order[1:]] == hashes[order[:-1]]
        repeat = seen | again
        self.repeats += int(repeat.sum())
        room = EXAMPLE_ROWS - len(self.example_rows)
        if room > 0 and repeat.any():
            self.example_rows += [int(r) for r in rows[repeat][:room]]
        self.expected_false += len(hashes) * false_repeat_chance(self.inserted)
        self.bloom.insert_at(positions)
        self.inserted += len(hashes)


def false_repeat_chance(inserted: int) -> float:
    """The chance that a new value looks seen, once `inserted` values are in the filter."""
    return false_positive_chance(inserted, BLOOM_WORDS)


_FNV_PRIME = np.uint64(0x100000001B3)


def value_hashes(values: pa.Array) -> np.ndarray:
    """A 64-bit hash of each value, vectorised (no Python object per value): integers as
    themselves, anything else through its text, hashed polynomially over its UTF-8 bytes and
    mixed (splitmix64) so that similar ids spread."""
    if pa.types.is_integer(values.type):
        raw = pc.fill_null(pc.cast(values, pa.int64()), 0).to_numpy().view(np.uint64)
        return _mix(raw)
    text = (
        pc.cast(values, pa.large_string()).combine_chunks()
        if isinstance(values, pa.ChunkedArray)
        else pc.cast(values, pa.large_string())
    )
    _, offsets_buffer, data_buffer = text.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64)[text.offset : text.offset + len(text) + 1]
    data = (
        np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    )
    lengths = np.diff(offsets)
    if len(lengths) and lengths.min() == lengths.max() > 0:  # one length: 8 bytes a step
        return _fixed_width_hashes(data[offsets[0] : offsets[-1]], len(text), int(lengths[0]))
    starts = offsets[:-1] - offsets[0]
    span = data[offsets[0] : offsets[-1]].astype(np.uint64) + np.uint64(1)
    if not len(span):
        return _mix(lengths.astype(np.uint64))
    position = np.arange(len(span)) - np.repeat(starts, lengths)
    powers = np.cumprod(np.full(int(lengths.max()), _FNV_PRIME, np.uint64))
    with np.errstate(over="ignore"):
        terms = span * powers[position]
        sums = np.zeros(len(text), np.uint64)
        filled = lengths > 0
        sums[filled] = np.add.reduceat(terms, starts[filled])
        return _mix(sums ^ (lengths.astype(np.uint64) << np.uint64(56)))


def _fixed_width_hashes(data: np.ndarray, count: int, width: int) -> np.ndarray:
    padded = -(-width // 8) * 8
    cells = np.zeros((count, padded), np.uint8)
    cells[:, :width] = data.reshape(count, width)
    words = cells.view(np.uint64)
    hashes = np.full(count, np.uint64(width), np.uint64)
    with np.errstate(over="ignore"):
        for column in range(words.shape[1]):
            hashes = _mix(hashes * _FNV_PRIME + words[:, column])
    return hashes


def _mix(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
