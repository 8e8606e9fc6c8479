"""A blocked Bloom filter over 64-bit hashes, kept as a numpy array of 64-bit words.

Each value's bits lie in one word, so a test or an insert touches one cache line, not one per
bit, and a whole batch is a handful of vectorised steps. Used where a set of millions of
hashes must be asked "seen before?" in bounded memory: the audit's duplicate ids and the
ledger's segments. The values must already be well mixed hashes: the word comes from their
low bits, the bits within it from their high ones.
"""

from __future__ import annotations

import math

import numpy as np

HASHES = 4  # bits set per value, within its word
INSERT_BATCH = 1 << 16


class BlockedBloom:
    """A filter of `len(words)` words; `words` may come back from storage as they were."""

    def __init__(self, words: np.ndarray) -> None:
        self.words = words

    @classmethod
    def empty(cls, word_count: int) -> BlockedBloom:
        return cls(np.zeros(max(1, word_count), np.uint64))

    @classmethod
    def of(cls, values: np.ndarray, bits_per_value: int) -> BlockedBloom:
        """A filter sized for `values` at about `bits_per_value` bits each, holding them."""
        bloom = cls.empty(-(-len(values) * bits_per_value // 64))
        for start in range(0, len(values), INSERT_BATCH):  # bounded temporaries
            bloom.insert(values[start : start + INSERT_BATCH])
        return bloom

    def positions(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.words_of(values), masks_of(values)

    def words_of(self, values: np.ndarray) -> np.ndarray:
        return (values % np.uint64(len(self.words))).astype(np.int64)

    def contains(self, values: np.ndarray) -> np.ndarray:
        return self.contains_at(self.positions(values))

    def contains_at(self, positions: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        word, mask = positions
        return (self.words[word] & mask) == mask

    def insert(self, values: np.ndarray) -> None:
        self.insert_at(self.positions(values))

    def insert_at(self, positions: tuple[np.ndarray, np.ndarray]) -> None:
        """Set the bits. A plain fancy-indexed OR loses bits when two values land in one word
        in the same step (the last write wins): those few are set again until none is
        missing, which is much quicker than `np.bitwise_or.at`."""
        word, mask = positions
        while len(word):
            self.words[word] |= mask
            lost = (self.words[word] & mask) != mask
            word, mask = word[lost], mask[lost]


def masks_of(values: np.ndarray) -> np.ndarray:
    """Each value's bits within its word: the same in every filter, so a batch asked of
    many filters computes them once."""
    with np.errstate(over="ignore"):
        mask = np.zeros(len(values), np.uint64)
        for i in range(HASHES):
            bit = (values >> np.uint64(32 + 6 * i)) & np.uint64(63)
            mask |= np.uint64(1) << bit
        return mask


def false_positive_chance(inserted: int, word_count: int) -> float:
    """The chance that a value never inserted looks present in a filter of `word_count` words
    holding `inserted` values: over the Poisson number of values already in its word, the
    chance that all its bits are set."""
    load = inserted / word_count
    chance, weight = 0.0, math.exp(-load)
    for count in range(60):
        chance += weight * (1 - (63 / 64) ** (HASHES * count)) ** HASHES
        weight *= load / (count + 1)
    return chance
