"""The offline half: map a whole file without sending, and look at what would be sent.

`validate` is what `backfill validate` and the notebooks call; `preview` shows the first
events beside their rows. Results render as tables in Jupyter and turn into DataFrames,
so a notebook stays a few lines long.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backfill.books.id_ledger import LedgerScope, delivered_reader
from backfill.books.report import ReportWriter
from backfill.look.forecast import ChunkForecast, RunForecast
from backfill.mapping.envelopes import Event, get_api
from backfill.mapping.events import EventMapper, MappedChunk, RowFailure
from backfill.mapping.mapped_read import mapped_chunks_of, require_mapped_columns
from backfill.mapping.spec import Mapping, load_mapping
from backfill.read.source import DEFAULT_CHUNK_ROWS, Source, read_source

EXAMPLES_PER_REASON = 5
ProgressCallback = Callable[[int], None]


@dataclass
class ReasonCount:
    reason: str
    count: int = 0
    example_rows: list[int | None] = field(default_factory=list)
    example_files: list[str] = field(default_factory=list)  # each example row's own file
    example_error: str = ""

    def examples(self, name_files: bool) -> str:
        return examples_text(self.example_rows, self.example_files, name_files)


def examples_text(rows: Sequence[int | None], files: Sequence[str], name_files: bool) -> str:
    """ "rows 3, 7" or, across files, "a.csv rows 3, 7; b.csv row 2": a row number means
    something only within its file."""
    if not name_files:
        return _rows_words(rows)
    groups: list[tuple[str, list[int | None]]] = []
    for file, row in zip(files, rows):
        if not groups or groups[-1][0] != file:
            groups.append((file, []))
        groups[-1][1].append(row)
    return "; ".join(f"{file} {_rows_words(rows)}" for file, rows in groups)


def _rows_words(rows: Sequence[int | None]) -> str:
    numbers = ", ".join("?" if row is None else str(row) for row in rows)
    return f"{'row' if len(rows) == 1 else 'rows'} {numbers}"


@dataclass
class ValidationResult:
    """Counts for a whole file, and the failure reasons grouped with example rows."""

    source: str
    mapping: str
    read: int = 0
    mappable: int = 0
    filtered: int = 0
    failing: int = 0
    reasons: dict[str, ReasonCount] = field(default_factory=dict)
    report_path: Path | None = None
    new: int | None = None  # of `mappable`: rows whose `id:` the ledger does not hold
    files: list[str] = field(default_factory=list)  # the source's files met, in order

    def add(self, forecast: ChunkForecast) -> None:
        """A chunk as the run would treat it: `mappable` counts its events, sent now or
        before; duplicate and missing ids fail as they would in the run."""
        chunk = forecast.chunk
        if not self.files or self.files[-1] != chunk.source:
            self.files.append(chunk.source)
        self.read += chunk.read
        self.mappable += forecast.events
        self.filtered += chunk.filtered
        self.failing += len(forecast.failures)
        for failure in forecast.failures:
            self.count_reason(failure)

    def count_reason(self, failure: RowFailure) -> None:
        entry = self.reasons.setdefault(failure.reason, ReasonCount(failure.reason))
        entry.count += 1
        if len(entry.example_rows) < EXAMPLES_PER_REASON:
            entry.example_rows.append(failure.row)
            entry.example_files.append(failure.source)
        if not entry.example_error:
            entry.example_error = failure.error

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "mapping": self.mapping,
            "read": self.read,
            "would_send": self.mappable,
            "filtered": self.filtered,
            "failing": self.failing,
            **(
                {"new": self.new, "already_sent": self.mappable - self.new}
                if self.new is not None
                else {}
            ),
            "reasons": [
                {
                    "reason": r.reason,
                    "count": r.count,
                    "example_rows": r.example_rows,
                    "example_files": r.example_files,
                }
                for r in self.sorted_reasons()
            ],
            "report": str(self.report_path) if self.report_path else None,
        }

    def sorted_reasons(self) -> list[ReasonCount]:
        return sorted(self.reasons.values(), key=lambda r: (-r.count, r.reason))

    @property
    def many_files(self) -> bool:
        return len(set(self.files)) > 1

    def reasons_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "reason": r.reason,
                    "count": r.count,
                    "example_rows": r.example_rows,
                    "example_files": r.example_files,
                }
                for r in self.sorted_reasons()
            ],
            columns=["reason", "count", "example_rows", "example_files"],
        )

    def _repr_html_(self) -> str:
        head = (
            f"<b>{html.escape(self.source)}</b>: read {self.read:,}, would send "
            f"{self.mappable:,}, filtered {self.filtered:,}, failing {self.failing:,}"
        )
        return head + (self.reasons_frame().to_html(index=False) if self.reasons else "")


def open_inputs(
    source: str | Path | Source,
    mapping: str | Path | Mapping,
    delimiter: str | None = None,
    *,
    encoding: str | None = None,
    sheet: str | None = None,
) -> tuple[Source, Mapping]:
    """Open both and check the mapping's columns against the source's, before any row.
    `delimiter`, `encoding` and `sheet` say how the source is read (see `read_source`)."""
    opened_mapping = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    opened_source = (
        source
        if isinstance(source, Source)
        else read_source(source, delimiter=delimiter, encoding=encoding, sheet=sheet)
    )
    require_mapped_columns(opened_source, opened_mapping)
    opened_mapping.check_columns(opened_source.columns, opened_source.name)
    return opened_source, opened_mapping


def mapped_chunks(
    source: Source, mapping: Mapping, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[MappedChunk]:
    mapper = EventMapper(mapping, source.name)
    for chunk in mapped_chunks_of(source, mapping, chunk_rows):
        yield mapper.map_chunk(chunk)


def validate(
    source: str | Path | Source,
    mapping: str | Path | Mapping,
    *,
    report: str | Path | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_progress: ProgressCallback | None = None,
    ledger: str | Path | None = None,
    endpoint: str | None = None,
    api: str = "torque-v1",
) -> ValidationResult:
    """Map every row, send nothing; optionally write the failure report `run` would write.
    With a mapping's `id:` and a `ledger`, also count the rows that are new there: whose id
    no earlier run delivered to `endpoint` (default: the api's) with this event name."""
    opened_source, opened_mapping = open_inputs(
        source, mapping, delimiter, encoding=encoding, sheet=sheet
    )
    result = ValidationResult(opened_source.name, opened_mapping.origin)
    delivered = delivered_check(opened_mapping, ledger, endpoint, api)
    if delivered is not None:
        result.new = 0
    forecast = RunForecast(opened_mapping, delivered=delivered)
    writer = _fresh_report(report)
    try:
        for chunk in mapped_chunks(opened_source, opened_mapping, chunk_rows):
            seen = forecast.take(chunk)
            assert seen is not None  # no limit: every chunk is taken
            result.add(seen)
            if result.new is not None:
                result.new += seen.to_send
            if writer is not None:
                for failure in seen.failures:
                    writer.write(failure)
            if on_progress is not None:
                on_progress(result.read)
    finally:
        if writer is not None:
            writer.close()
            result.report_path = writer.path
    return result


def delivered_check(
    mapping: Mapping, ledger: str | Path | None, endpoint: str | None, api: str
) -> Callable[[Sequence[str]], np.ndarray] | None:
    """Which ids an earlier run delivered (read-only), where the mapping has an `id:`."""
    if not mapping.id_columns or ledger is None:
        return None
    chosen = get_api(api)
    scope = LedgerScope.of(endpoint or chosen.default_endpoint, chosen.name, mapping.event_name)
    return delivered_reader(ledger, scope)


def _fresh_report(path: str | Path | None) -> ReportWriter | None:
    if path is None:
        return None
    Path(path).unlink(missing_ok=True)
    return ReportWriter(path)


@dataclass
class PreviewRow:
    row: int | None
    event: Event | None = None
    failure: RowFailure | None = None
    source: str = ""  # the file the row is in; `row` is its number there
    record: dict[str, Any] = field(default_factory=dict)  # the row's values in the source


@dataclass
class Preview:
    """The first mapped events beside their source rows, and the failures among them."""

    rows: list[PreviewRow]
    filtered: int = 0
    source: str = ""  # the SOURCE's name: a row of another name is in one of its files
    more_failures: int = 0  # failing rows met beyond the n shown, before the n-th event

    @property
    def events(self) -> list[Event]:
        return [r.event for r in self.rows if r.event is not None]

    @property
    def failures(self) -> list[RowFailure]:
        return [r.failure for r in self.rows if r.failure is not None]

    def frame(self) -> pd.DataFrame:
        """One line per row: the source values, then the event's fields or the error."""
        lines = []
        many_files = any(item.source != self.source for item in self.rows)
        for item in self.rows:
            line: dict[str, Any] = {"source": item.source} if many_files else {}
            line["row"] = item.row
            line.update(item.record)
            if item.event is not None:
                line["→ timestamp"] = pd.Timestamp(item.event.timestamp, unit="ms", tz="UTC")
                line["→ pubKey"] = item.event.pubkey
                line.update({f"→ {k}": v for k, v in item.event.data.items()})
            if item.failure is not None:
                line["→ error"] = item.failure.error
            lines.append(line)
        return pd.DataFrame(lines)

    def _repr_html_(self) -> str:
        return self.frame().to_html(index=False)


def preview(
    source: str | Path | Source,
    mapping: str | Path | Mapping,
    n: int = 5,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
) -> Preview:
    """Map rows from the top until `n` events are found; the first `n` failing rows met on
    the way are kept, the others counted (`more_failures`): a draft whose every row fails
    shows n of them, not the file."""
    opened_source, opened_mapping = open_inputs(
        source, mapping, delimiter, encoding=encoding, sheet=sheet
    )
    mapper = EventMapper(opened_mapping, opened_source.name)
    result = Preview(rows=[], source=opened_source.name)
    for chunk in mapped_chunks_of(opened_source, opened_mapping, max(n * 4, 256)):
        mapped = mapper.map_chunk(chunk)
        result.filtered += mapped.filtered
        found = dict(mapped.events())
        failures = {f.row: f for f in mapped.failures}
        positions = {row: position for position, row in enumerate(chunk.rows.tolist())}
        for row in sorted(set(positions) | {f.row for f in mapped.failures if f.row is not None}):
            if row in failures and row not in found and len(result.failures) >= n:
                result.more_failures += 1
            elif row in found or row in failures:
                record = failures[row].record if row not in positions else None
                record = record or chunk.table.slice(positions[row], 1).to_pylist()[0]
                item = PreviewRow(row, found.get(row), failures.get(row), mapped.source, record)
                result.rows.append(item)
            if len(result.events) >= n:
                return result
    return result
