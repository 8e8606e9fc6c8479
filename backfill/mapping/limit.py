"""--limit: a run sends at most N events; it stops reading just after the row of the Nth
(rows an earlier run settled do not count). `run` and `plan` cut chunks with this alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from backfill.mapping.events import MappedChunk

Item = TypeVar("Item", bound=tuple[int, Any])  # (row, whatever goes with it)


def limit_chunk(
    chunk: MappedChunk,
    items: list[Item],
    remaining: int | None,
    not_done: Callable[[list[Item]], list[Item]],
) -> tuple[MappedChunk, list[Item], int | None]:
    """With --limit, cut the chunk just after the last event that may still go."""
    if remaining is None:
        return chunk, items, None
    fresh = not_done(items)
    if len(fresh) < remaining:
        return chunk, items, remaining - len(fresh)
    last_row = fresh[remaining - 1][0]
    cut = int(np.flatnonzero(chunk.rows == last_row)[0]) + 1
    kept_rows = set(chunk.rows[:cut].tolist())
    trimmed = MappedChunk(
        rows=chunk.rows[:cut],
        filtered_rows=chunk.filtered_rows[np.isin(chunk.filtered_rows, chunk.rows[:cut])],
        failures=[f for f in chunk.failures if f.row is None or f.row <= last_row],
        event_rows=chunk.event_rows[np.isin(chunk.event_rows, chunk.rows[:cut])],
        table=chunk.table,
        source=chunk.source,
    )
    return trimmed, [item for item in items if item[0] in kept_rows], 0
