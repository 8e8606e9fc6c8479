"""What `run` would do with each mapped chunk beyond mapping it, for `validate` and `plan`:
so that their counts are the run's, field by field.

A run, after mapping a chunk, (1) stops after the --limit-th event not settled before,
(2) skips the rows an earlier run of this source delivered (its journal's accepted rows,
when resuming), (3) skips the events whose `id:` the ledger says an earlier run delivered,
and (4) sends each other id once: a repeat is a `duplicate id` failure, a missing id a
failure too. Rows an earlier run reported as failing are counted as failing (a resumed run
counts them as already done). Steps 1 and 4 are the
run's own functions (`limit_chunk`, `screen`, on a throwaway in-memory ledger); step 3
reads the user's ledger without writing to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backfill.books.id_ledger import IdLedger, LedgerScope
from backfill.books.id_screen import row_ids, screen
from backfill.books.journal import RowSet
from backfill.mapping.events import MappedChunk, RowFailure
from backfill.mapping.limit import limit_chunk
from backfill.mapping.spec import Mapping

Item = tuple[int, bytes]
Delivered = Callable[[Sequence[str]], np.ndarray]


@dataclass
class Settled:
    """The rows of one file an earlier run of this source delivered (its journal's)."""

    accepted: RowSet = field(default_factory=RowSet)

    def is_done(self, row: int) -> bool:
        return row in self.accepted


@dataclass
class ChunkForecast:
    """One chunk as the run would treat it."""

    chunk: MappedChunk  # cut after the --limit-th event
    to_send: int
    failures: list[RowFailure]  # the mapping's (of rows not settled before) and the ids'
    already_done: int  # delivered by an earlier run of this source (its journal)
    already_sent: int  # their id delivered by an earlier run (the ledger)

    @property
    def events(self) -> int:
        """Rows that map to an event, sent now or before."""
        return self.to_send + self.already_done + self.already_sent


class RunForecast:
    """Feed it mapped chunks in order; `take` says what the run would do with each, and
    None once --limit is reached (the run reads no further)."""

    def __init__(
        self,
        mapping: Mapping,
        *,
        delivered: Delivered | None = None,
        settled: dict[str, Settled] | None = None,
        limit: int | None = None,
    ) -> None:
        self.id_columns = mapping.id_columns
        self.delivered = delivered
        self.settled = settled or {}
        self.remaining = limit
        self.ledger: IdLedger | None = None
        if self.id_columns:
            scope = LedgerScope.of("forecast", "forecast", mapping.event_name)
            self.ledger = IdLedger(Path(":memory:"), scope)

    def take(self, mapped: MappedChunk) -> ChunkForecast | None:
        if self.remaining == 0:
            return None
        books = self.settled.get(mapped.source) or Settled()
        items: list[Item] = [(row, b"") for row in mapped.event_rows.tolist()]

        def not_done(some: list[Item]) -> list[Item]:
            return [item for item in some if not books.is_done(item[0])]

        chunk, items, self.remaining = limit_chunk(mapped, items, self.remaining, not_done)
        failures = list(chunk.failures)
        fresh = not_done(items)
        already_done = len(items) - len(fresh)
        if self.ledger is None or not self.id_columns:
            return ChunkForecast(chunk, len(fresh), failures, already_done, 0)
        fresh, already_sent = self._not_delivered(chunk, fresh)
        done = [item for item in items if books.is_done(item[0])]
        screened = screen(
            chunk, done + fresh, self.ledger, self.id_columns, books.is_done, books.is_done
        )
        to_send = sum(1 for row, _ in screened.items if not books.is_done(row))
        failures += screened.failures
        return ChunkForecast(
            chunk, to_send, failures, already_done, already_sent + screened.already_sent
        )

    def _not_delivered(self, chunk: MappedChunk, items: list[Item]) -> tuple[list[Item], int]:
        """The items whose id the user's ledger does not hold, and how many it does."""
        if self.delivered is None or not self.id_columns or not items:
            return items, 0
        ids = row_ids(chunk, self.id_columns, [row for row, _ in items])
        named = [position for position, key in enumerate(ids) if key is not None]
        sent = np.zeros(len(items), dtype=bool)
        if named:
            found = self.delivered([ids[p] for p in named])  # type: ignore[misc]
            sent[np.asarray(named)[found]] = True
        return [item for item, gone in zip(items, sent) if not gone], int(sent.sum())
