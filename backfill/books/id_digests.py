"""Ids as 128-bit digests, and the sorted entries a segment holds: the arithmetic of the
ledger's segments, with no SQLite (id_segments.py stores them, segment_tables.py keeps them).

An id is kept as its 128-bit BLAKE2b digest (two 64-bit halves, `hi` and `lo`) with the run
that delivered it. Two different ids share a digest with a chance below 10^-20 even at a
billion ids, so the digest stands for the id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b

import numpy as np

from backfill.books.bloom import BlockedBloom

ENTRY = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("run", "<u4")])


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


def pages_for(segment: Segment, hi: np.ndarray) -> np.ndarray:
    """The pages digests starting with `hi` would be on. Entries sharing a `hi` (one in
    10^12 at 10 million ids) may straddle pages: all those pages are named."""
    first = np.maximum(np.searchsorted(segment.fences, hi, "left") - 1, 0)
    last = np.maximum(np.searchsorted(segment.fences, hi, "right") - 1, 0)
    pages = [first] + [np.arange(a, b + 1) for a, b in zip(first, last) if b > a]
    return np.unique(np.concatenate(pages)).astype(np.uint64)


def find(entries: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
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


def entries_of(hi: np.ndarray, lo: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Entries sorted by digest, each digest once."""
    order = np.lexsort((lo, hi))
    entries = np.empty(len(hi), ENTRY)
    entries["hi"], entries["lo"], entries["run"] = hi[order], lo[order], runs[order]
    return without_repeats(entries)


def without_repeats(entries: np.ndarray) -> np.ndarray:
    """Drop an entry equal to the one before it (sorted by hi, so repeats are neighbours
    unless another id shares their hi: then the lookup still finds the first)."""
    if len(entries) < 2:
        return entries
    repeat = np.zeros(len(entries), bool)
    repeat[1:] = (entries["hi"][1:] == entries["hi"][:-1]) & (
        entries["lo"][1:] == entries["lo"][:-1]
    )
    return entries[~repeat] if repeat.any() else entries
