"""A chunk's events against the ledger of delivered ids, before any is queued.

Runs in the reader thread and decides only: which events go, which an earlier run
delivered (`already_sent`: skipped and counted), which repeat an id met earlier in this run
(`duplicate id`: to the report) and which have no id at all (to the report). The records
(run_records.py) apply the decision in the sending loop, which alone touches the counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from backfill.books.id_ledger import IdLedger
from backfill.mapping.events import MappedChunk, RowFailure
from backfill.mapping.order_ids import IdColumns, id_label, id_values

Item = tuple[int, bytes]
DUPLICATE_ID = "duplicate id"


@dataclass
class Screened:
    """What to send of a chunk, and what happened to the rest."""

    items: list[Item]
    ids: dict[int, str] = field(default_factory=dict)  # row -> id, for the rows to send
    already_sent: int = 0
    failures: list[RowFailure] = field(default_factory=list)
    settled_ids: list[str] = field(default_factory=list)  # rows an earlier run accepted


def row_ids(chunk: MappedChunk, columns: IdColumns, rows: list[int]) -> list[str | None]:
    """The id of each of `rows` as text (see `order_ids`); None when it has none."""
    if chunk.table is None or not rows:
        return [None] * len(rows)
    positions = {row: i for i, row in enumerate(chunk.rows.tolist())}
    taken = chunk.table.select(list(dict.fromkeys(columns)))
    taken = taken.take(pa.array([positions[r] for r in rows]))
    return id_values(taken, columns).to_pylist()


def screen(
    chunk: MappedChunk,
    items: list[Item],
    ledger: IdLedger,
    columns: IdColumns,
    is_done: Callable[[int], bool],
    accepted_before: Callable[[int], bool],
) -> Screened:
    """Sort the chunk's events by their ids. Rows of the chunk's file that an earlier run of
    this source settled (`is_done`) stay for the records to count; the ids of those it
    accepted are recorded again, in case its crash came before their commit."""
    done = [item for item in items if is_done(item[0])]
    todo = [item for item in items if not is_done(item[0])]
    result = Screened(items=done)
    source_name = chunk.source
    accepted = [row for row, _ in done if accepted_before(row)]
    settled = [
        (key, f"row {row} of {chunk.source}")
        for row, key in zip(accepted, row_ids(chunk, columns, accepted))
        if key
    ]
    result.settled_ids = [key for key, _ in settled]
    ids = row_ids(chunk, columns, [row for row, _ in todo])
    named = [(item, key) for item, key in zip(todo, ids) if key is not None]
    for (row, _), key in zip(todo, ids):
        if key is None:
            result.failures.append(_failure(chunk, row, source_name, columns, None, ""))
    origins = [f"row {row} of {source_name}" for (row, _), _ in named]
    checked = ledger.check([key for _, key in named], origins, settled)
    for position, (item, key) in enumerate(named):
        if checked.already_sent[position]:
            result.already_sent += 1
        elif position in checked.duplicates:
            first = checked.duplicates[position]
            result.failures.append(_failure(chunk, item[0], source_name, columns, key, first))
        else:
            result.items.append(item)
            result.ids[item[0]] = key
    result.items.sort(key=lambda item: item[0])
    return result


def _failure(
    chunk: MappedChunk, row: int, source: str, columns: IdColumns, key: str | None, first: str
) -> RowFailure:
    if key is None:
        reason = f"id ({id_label(columns)}) is missing"
        error = f"{reason}: an event without its id could be sent twice by a later export"
    else:
        reason = DUPLICATE_ID
        error = f"{DUPLICATE_ID}: {key!r} ({id_label(columns)}) was met before, at {first}"
    return RowFailure(
        row=row, source=source, stage="mapping", reason=reason, error=error,
        record=chunk.record(row),
    )  # fmt: skip
