"""A chunk of rows in, events and row failures out: the mapping applied to data.

Conversions run column by column over the whole chunk (see `convert`); Python objects are
made only for rows that fail (their original record and message) and, when asked, for the
events themselves. `validate` therefore never builds an event it would throw away, and
`run` asks for request bodies, which are written column by column without any `Event`.

Events are made along one path only: the request bodies. An `Event` (for `preview`, the
notebooks, a report) is the documented body read back, so it cannot differ from what is sent.

Here: the chunk's fate assembled (`EventMapper`, `MappedChunk`, `RowFailure`); a field's
column converted and its problems worded: `field_columns`; the bodies: `event_bodies`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from backfill.mapping.convert import Converted, PubkeyChecker
from backfill.mapping.envelopes import TORQUE_V1, Api, Event
from backfill.mapping.event_bodies import MappedRows
from backfill.mapping.field_columns import convert_field, failure_messages
from backfill.mapping.lookup import looked_up
from backfill.mapping.row_filter import RowFilter
from backfill.mapping.spec import Mapping
from backfill.mapping.time_columns import timestamp_ms
from backfill.read.source import Chunk

Stage = Literal["read", "mapping", "send"]


@dataclass
class RowFailure:
    """A row that did not become an accepted event, with all it takes to try it again."""

    row: int | None
    source: str
    stage: Stage
    reason: str
    error: str
    record: dict[str, Any]
    event: dict[str, Any] | None = None
    status: int | None = None
    attempts: int = 0


@dataclass
class MappedChunk:
    """The fate of every row of a chunk (of one file) as far as mapping can tell."""

    rows: np.ndarray
    filtered_rows: np.ndarray
    failures: list[RowFailure]
    event_rows: np.ndarray
    table: pa.Table | None = field(repr=False, default=None)
    source: str = ""  # the file all these rows come from; `rows` are numbers within it
    timestamp: Converted | None = field(repr=False, default=None)  # of the kept rows: for plan
    _build: Any = field(repr=False, default=None)  # events given as they are (a report's)
    _encode: Any = field(repr=False, default=None)  # api -> bodies: the one path of a mapper
    _positions: dict[int, int] | None = field(repr=False, default=None)

    @property
    def read(self) -> int:
        return len(self.rows) + sum(1 for f in self.failures if f.stage == "read")

    @property
    def filtered(self) -> int:
        return len(self.filtered_rows)

    def record(self, row: int) -> dict[str, Any]:
        """The original values of `row`, for the report of a row that fails later."""
        if self.table is None:
            return {}
        if self._positions is None:
            self._positions = {r: i for i, r in enumerate(self.rows.tolist())}
        return self.table.slice(self._positions[row], 1).to_pylist()[0]

    def events(self) -> Iterator[tuple[int, Event]]:
        """(row number, event) for each row that maps, made on demand: the torque-v1 bodies
        read back (or, for a report's stored events, the events as they were)."""
        if not len(self.event_rows):
            return iter(())
        if self._build is not None:
            return zip(self.event_rows.tolist(), self._build())
        if self._encode is None:
            return iter(())
        bodies = self._encode(TORQUE_V1)
        return zip(self.event_rows.tolist(), (TORQUE_V1.parse(json.loads(b)) for b in bodies))

    def bodies(self, api: Api) -> Iterator[tuple[int, bytes]]:
        """(row number, request body) for each row that maps. A chunk mapped here writes
        them column by column, without an `Event` or a dict per row: 3x cheaper."""
        if self._encode is not None and len(self.event_rows):
            return zip(self.event_rows.tolist(), self._encode(api))
        return ((row, api.encode(event)) for row, event in self.events())


class EventMapper:
    """Applies one mapping to the chunks of one source: filter, convert, sort each row into
    filtered, failed or mapped."""

    def __init__(self, mapping: Mapping, source_name: str, now_ms: int | None = None) -> None:
        self.mapping = mapping
        self.source_name = source_name
        self.now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self._pubkeys = PubkeyChecker()
        self._filter = RowFilter(mapping.filter, mapping.origin, source_name)

    def map_chunk(self, chunk: Chunk) -> MappedChunk:
        if len(chunk.skipped):
            return self._skipped(chunk)
        table = chunk.table
        keep = self._filter.keep(table, chunk.rows)
        kept = table.filter(pa.array(keep)) if not keep.all() else table
        kept_rows = chunk.rows[keep]
        timestamp = mapped_timestamp(kept, self.mapping, self.now_ms)
        pubkey = looked_up(
            kept.column(self.mapping.pubkey_column), self.mapping.pubkey_lookup, self._pubkeys.check
        )
        columns = [convert_field(spec, kept) for spec in self.mapping.fields]
        messages = failure_messages(self.mapping, kept, timestamp, pubkey, columns)
        failed = np.zeros(kept.num_rows, dtype=bool)
        failed[list(messages)] = True
        source = chunk.source or self.source_name
        failures = self._read_failures(chunk, source)
        failures += self._row_failures(kept, kept_rows, messages, source)
        ok = ~failed
        mapped = MappedRows(self.mapping, ok, timestamp, pubkey, columns)
        return MappedChunk(
            rows=chunk.rows,
            filtered_rows=chunk.rows[~keep],
            failures=failures,
            event_rows=kept_rows[ok],
            table=table,
            source=source,
            timestamp=timestamp,
            _encode=mapped.encode,
        )

    def _skipped(self, chunk: Chunk) -> MappedChunk:
        """Rows the filter provably drops, not read: filtered, as they would have been. The
        filter is still checked against the columns' types, as reading them would have."""
        self._filter.keep(chunk.table, chunk.rows)
        rows = chunk.skipped
        empty = np.empty(0, dtype=np.int64)
        source = chunk.source or self.source_name
        return MappedChunk(rows, rows, [], empty, source=source)

    def _read_failures(self, chunk: Chunk, source: str) -> list[RowFailure]:
        return [
            RowFailure(
                row=line.row,
                source=source,
                stage="read",
                reason=f"{line.what} skipped: {line.reason}",
                error=f"{line.what} skipped: {line.reason}: {line.text[:200]!r}",
                record={"_line": line.text},
            )
            for line in chunk.bad_lines
        ]

    def _row_failures(
        self,
        table: pa.Table,
        rows: np.ndarray,
        messages: dict[int, list[tuple[str, str]]],
        source: str,
    ) -> list[RowFailure]:
        if not messages:
            return []
        positions = sorted(messages)
        records = table.take(pa.array(positions)).to_pylist()
        return [
            RowFailure(
                row=int(rows[position]),
                source=source,
                stage="mapping",
                reason="; ".join(reason for reason, _ in messages[position]),
                error="; ".join(message for _, message in messages[position]),
                record=record,
            )
            for position, record in zip(positions, records)
        ]


def mapped_timestamp(table: pa.Table, mapping: Mapping, now_ms: int) -> Converted:
    """The rows' timestamps as the mapping reads them: one column, or a date and a time of
    day, in one zone or each row's (see `time_columns`)."""
    return timestamp_ms(
        table,
        mapping.timestamp_column,
        mapping.timestamp_rule,
        now_ms,
        mapping.time_column,
        mapping.timezone_column,
    )
