"""The ids a run has met and not committed to the ledger yet: what the ledger alone would miss.

Apart from the ledger (id_ledger.py), which holds what is committed: these are the ids in
between, in memory, that a duplicate must still be caught against. An id is claimed when its
row is about to be sent, and let go when its commit is done or its row is not delivered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class IdClaims:
    """`claimed`: ids this run sent and has not committed yet (in flight, or accepted since
    the last commit), with the row that claimed each and its digest (computed once, for the
    check and the commit). `settling`: ids an earlier run delivered (its journal says so)
    about to be recorded again, in case its crash came before their commit: with the row
    that delivered each."""

    def __init__(self) -> None:
        self.claimed: dict[str, tuple[str, bytes]] = {}
        self.settling: dict[str, str] = {}

    def settle(self, settled: Iterable[tuple[str, str]]) -> None:
        """(id, row) of rows an earlier run's journal says were accepted."""
        self.settling.update(settled)

    def met_before(self, ids: Sequence[str], origins: Sequence[str]) -> dict[int, str]:
        """Position -> where its id was met first: earlier in the chunk, or claimed by a row
        of an earlier chunk and not committed yet (after its commit the ledger knows it)."""
        first_at = dict(zip(reversed(ids), range(len(ids) - 1, -1, -1)))  # C speed
        duplicates: dict[int, str] = {}
        if len(first_at) < len(ids):  # rare: an id twice in one chunk
            for position, key in enumerate(ids):
                if first_at[key] != position:
                    duplicates[position] = origins[first_at[key]]
        for key in first_at.keys() & self.claimed.keys():
            duplicates[first_at[key]] = self.claimed[key][0]
        for key in first_at.keys() & self.settling.keys():
            duplicates.setdefault(first_at[key], self.settling[key])
        return duplicates

    def claim(
        self,
        ids: Sequence[str],
        origins: Sequence[str],
        raw: list[bytes],
        positions: Iterable[int] | None = None,
    ) -> None:
        """Ids about to be sent, with their rows and digests: all, or those at `positions`."""
        if positions is None:
            self.claimed.update(zip(ids, zip(origins, raw)))
        else:
            self.claimed.update((ids[p], (origins[p], raw[p])) for p in positions)

    def release(self, key: str) -> None:
        """An id claimed but not delivered (it failed or was not sent): a later row may."""
        self.claimed.pop(key, None)

    def split(self, pending: list[str]) -> tuple[list[bytes], list[str], list[str]]:
        """Accepted ids to commit, in two: the digests and ids of those this run claimed, and
        the ids it did not (settled on --resume: their digests are computed then)."""
        known = list(map(self.claimed.get, pending))  # (row, digest) of ids this run claimed
        new = [entry[1] for entry in known if entry is not None]
        claimed = [key for key, entry in zip(pending, known) if entry is not None]
        settled = [key for key, entry in zip(pending, known) if entry is None]
        return new, claimed, settled

    def committed(self, keys: list[str]) -> None:
        """Committed: only now are the claims let go (a check in between finds them)."""
        for key in keys:
            self.claimed.pop(key, None)
            self.settling.pop(key, None)
