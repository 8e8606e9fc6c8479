"""`backfill plan`: everything a run would do, short of sending: the counts `validate` gives,
what was sent already, how many requests and how long at the rate, the span of time and the
events per month, and the timestamp audit's warnings.

It maps with the same `EventMapper` as `run` and `validate`, one chunk at a time (memory
stays flat: see `audit` for the one exception). Months are UTC calendar months of the
events' timestamps, as Torque stores them.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from backfill.books.journal import JOURNAL_VERSION, RowSet, journal_path, read_journal
from backfill.books.report import report_name
from backfill.look.audit import AuditWarning, TimestampAudit
from backfill.look.forecast import RunForecast, Settled
from backfill.look.validate import ValidationResult, delivered_check, open_inputs
from backfill.mapping.convert import as_array
from backfill.mapping.events import EventMapper, MappedChunk, mapped_timestamp
from backfill.mapping.mapped_read import mapped_chunks_of
from backfill.mapping.order_ids import id_values
from backfill.mapping.spec import Mapping
from backfill.mapping.time_columns import timestamp_values
from backfill.read.source import DEFAULT_CHUNK_ROWS, Chunk, Source

DEFAULT_RATE = 100.0
FILE_SHIFT = 40  # an audit label: the file's index above these bits, the row below
ROW_MASK = (1 << FILE_SHIFT) - 1
PLAN_KEYS = (
    "read",
    "would_send",
    "filtered",
    "failing",
    "already_sent",
    "requests",
    "eta_seconds",
    "first_timestamp",
    "last_timestamp",
    "by_month",
    "warnings",
    "lookup_normalised",
)


@dataclass
class PlanResult:
    """What a run of this source with this mapping would do."""

    counts: ValidationResult
    rate: float
    already_sent: int = 0
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    by_month: dict[str, int] = field(default_factory=dict)
    warnings: list[AuditWarning] = field(default_factory=list)
    # mapping key -> rows whose lookup key matched only after its `match` normalisation
    lookup_normalised: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """One POST per event not yet sent (Torque takes one event per request): what the
        run would send, and (if Torque takes them all) its `accepted`."""
        return self.counts.mappable - self.already_sent

    @property
    def eta_seconds(self) -> float | None:
        """At the rate, ignoring retries and latency; None without a rate limit."""
        return self.requests / self.rate if self.rate > 0 else None

    def as_dict(self) -> dict[str, Any]:
        values = {
            "read": self.counts.read,
            "would_send": self.counts.mappable,
            "filtered": self.counts.filtered,
            "failing": self.counts.failing,
            "already_sent": self.already_sent,
            "requests": self.requests,
            "eta_seconds": self.eta_seconds,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
            "by_month": dict(self.by_month),
            "warnings": [w.as_dict() for w in self.warnings],
            "lookup_normalised": dict(self.lookup_normalised),
        }
        return {key: values[key] for key in PLAN_KEYS}

    def months_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"month": list(self.by_month), "events": list(self.by_month.values())},
            columns=["month", "events"],
        )

    def warnings_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [w.as_dict() for w in self.warnings],
            columns=["code", "message", "count", "example_rows", "example_files"],
        )

    def _repr_html_(self) -> str:
        span = f"{format_ms(self.first_timestamp)} to {format_ms(self.last_timestamp)}"
        head = (
            f"<b>{html.escape(self.counts.source)}</b>: read {self.counts.read:,}, would send "
            f"{self.counts.mappable:,}, filtered {self.counts.filtered:,}, failing "
            f"{self.counts.failing:,}, already sent {self.already_sent:,}; {span}"
        )
        return head + self.warnings_frame().to_html(index=False)


def format_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC")


def plan(
    source: str | Path | Source,
    mapping: str | Path | Mapping,
    *,
    rate: float = DEFAULT_RATE,
    report: str | Path | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    ledger: str | Path | None = None,
    endpoint: str | None = None,
    api: str = "torque-v1",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    now_ms: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    limit: int | None = None,
) -> PlanResult:
    """Map every row, send nothing, and say what a run would do.

    `report` is where the run's failure report (and so its journal) would be: by default
    `<source name>.failures.jsonl` in the current directory, as `run` has it. With a
    mapping's `id:` and a `ledger`, rows whose id an earlier run delivered to `endpoint`
    (default: the api's) count as already sent too. The counts are the run's (see
    `forecast`): ids repeated in the source fail as duplicates, and with `limit` reading
    stops where the run's would.
    """
    opened_source, opened_mapping = open_inputs(
        source, mapping, delimiter, encoding=encoding, sheet=sheet
    )
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    report_path = Path(report or report_name(opened_source.name))
    sent = journal_accepted(opened_source, opened_mapping, report_path) or {}
    delivered = delivered_check(opened_mapping, ledger, endpoint, api)
    settled = {name: Settled(rows) for name, rows in sent.items()}
    forecast = RunForecast(opened_mapping, delivered=delivered, settled=settled, limit=limit)
    result = PlanResult(ValidationResult(opened_source.name, opened_mapping.origin), rate)
    mapper = EventMapper(opened_mapping, opened_source.name, now_ms)
    audit = TimestampAudit(opened_mapping, now_ms)
    months: Counter[str] = Counter()
    for chunk in mapped_chunks_of(opened_source, opened_mapping, chunk_rows):
        mapped = mapper.map_chunk(chunk)
        seen = forecast.take(mapped)
        if seen is None:  # --limit reached: the run reads no further
            break
        result.counts.add(seen)
        file_index = len(result.counts.files) - 1
        ms = _look_at(chunk, mapped, opened_mapping, audit, now_ms, file_index)
        _count_normalised(result.lookup_normalised, chunk, mapped, opened_mapping)
        if len(ms):
            _span(result, ms, months)
        result.already_sent += seen.already_sent + seen.already_done
        if on_progress is not None:
            on_progress(result.counts.read)
    result.by_month = dict(sorted(months.items()))
    result.warnings = audit.warnings()
    for warning in result.warnings:
        labels = warning.example_rows
        warning.example_rows = [label & ROW_MASK for label in labels]
        warning.example_files = [result.counts.files[label >> FILE_SHIFT] for label in labels]
    return result


def _count_normalised(
    counts: dict[str, int], chunk: Chunk, mapped: MappedChunk, mapping: Mapping
) -> None:
    """Rows the filter keeps whose lookup key matched only thanks to its `match`."""
    lookups = [(mapping.pubkey_column, mapping.pubkey_lookup)]
    lookups += [(spec.column, spec.lookup) for spec in mapping.fields if spec.column]
    kept = ~np.isin(chunk.rows, mapped.filtered_rows, assume_unique=True)
    for column, lookup in lookups:
        if lookup is None or not lookup.match or column is None or chunk.table is None:
            continue
        keys = as_array(chunk.table.column(column)).filter(pa.array(kept))
        found = lookup.index().matched_by_normalising(keys)
        counts[lookup.mapping_key] = counts.get(lookup.mapping_key, 0) + found


def _look_at(
    chunk: Chunk,
    mapped: MappedChunk,
    mapping: Mapping,
    audit: TimestampAudit,
    now_ms: int,
    file_index: int,
) -> np.ndarray:
    """Feed the audit one chunk; the ms of its events. Only the columns it needs are
    touched: filtering a whole chunk's table would cost more than all the checks. The audit
    knows rows by labels that carry their file (`file_index << FILE_SHIFT | row`): a row
    number means something only within its file."""
    kept = ~np.isin(chunk.rows, mapped.filtered_rows, assume_unique=True)
    everything = bool(kept.all())
    offset = np.int64(file_index) << np.int64(FILE_SHIFT)
    kept_rows = (chunk.rows if everything else chunk.rows[kept]) + offset

    def column(name: str, positions: np.ndarray | None) -> pa.Array:
        values = as_array(chunk.table.column(name))
        return values if positions is None else values.take(pa.array(positions))

    kept_positions = None if everything else np.flatnonzero(kept)
    kept_table = chunk.table if kept_positions is None else chunk.table.take(kept_positions)
    raw = timestamp_values(kept_table, mapping.timestamp_column, mapping.time_column)
    converted = mapped.timestamp  # the mapper's own conversion of the kept rows, or again
    if converted is None or converted.values is None:
        converted = mapped_timestamp(kept_table, mapping, now_ms)
    ms = np.asarray(
        converted.values if converted.values is not None else converted.materialize(), np.int64
    )
    unparsed = converted.missing.copy()
    for problem in converted.problems[:-1]:  # the last is the range check: the audit's job
        unparsed |= problem.mask
    audit.add_times(kept_rows, raw, ms, ~unparsed)
    failures = [f for f in mapped.failures if f.row is not None]
    audit.add_failures(
        [int(offset) + f.row for f in failures],  # type: ignore[operator]
        [f.reason for f in failures],
    )
    in_chunk = _positions(chunk.rows, mapped.event_rows)
    in_kept = in_chunk if everything else (np.cumsum(kept) - 1)[in_chunk]
    every_row = len(in_chunk) == len(chunk.rows)
    wallets = column(mapping.pubkey_column, None if every_row else in_chunk)
    ids = None
    if audit.id_columns:
        parts = {name: column(name, None if every_row else in_chunk) for name in audit.id_columns}
        ids = id_values(pa.table(parts), audit.id_columns)
    audit.add_events(mapped.event_rows + offset, ms[in_kept], wallets, ids)
    return ms[in_kept]


def _positions(rows: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where the `wanted` row numbers are in `rows` (both ascending)."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1:  # consecutive: no search
        return wanted - rows[0]
    return np.searchsorted(rows, wanted)


def _span(result: PlanResult, ms: np.ndarray, months: Counter[str]) -> None:
    low, high = int(ms.min()), int(ms.max())
    if result.first_timestamp is None or low < result.first_timestamp:
        result.first_timestamp = low
    if result.last_timestamp is None or high > result.last_timestamp:
        result.last_timestamp = high
    keys, counts = np.unique(
        ms.astype("datetime64[ms]").astype("datetime64[M]"), return_counts=True
    )
    for key, count in zip(keys.astype(str).tolist(), counts.tolist()):
        months[key] += count


def journal_accepted(
    source: Source, mapping: Mapping, report_path: Path
) -> dict[str, RowSet] | None:
    """Rows an earlier run of this same source and mapping has delivered, by file, from its
    journal beside `report_path`: of the files it declared that have not changed since (a
    changed file's numbers name other rows now; `run --resume` refuses it). None when there
    is no journal, or it belongs to another backfill."""
    state = read_journal(journal_path(report_path))
    if state is None:
        return None
    key = {"version": JOURNAL_VERSION, "source": source.identity, "mapping": mapping.fingerprint}
    if any(state.key.get(name) != value for name, value in key.items()):
        return None
    now = source.fingerprints()
    return {
        name: state.rows(state.accepted, name)
        for name, declared in state.fingerprints.items()
        if name in now and declared == now[name]
    }


# --- the headline of the question before a real run ------------------------------------------


def duration_words(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def rate_words(rate: float, requests: int) -> str:
    if rate <= 0:
        return "no rate limit"
    return f"{rate:g} events/s: about {duration_words(requests / rate)}"


def plan_headline(result: PlanResult, limit: int | None = None) -> list[str]:
    """What `run` is about to do, in a few lines: events, span, time, what fails, warnings."""
    requests = result.requests if limit is None else min(limit, result.requests)
    counts = result.counts
    lines = [
        f"About to send {requests:,} events"
        + (f" (--limit {limit:,} of {result.requests:,})" if limit is not None else ""),
        f"  orders from {format_ms(result.first_timestamp)} to {format_ms(result.last_timestamp)}",
        f"  at {rate_words(result.rate, requests)}",
        f"  {counts.failing:,} rows fail (to the report), {counts.filtered:,} filtered out, "
        f"{result.already_sent:,} sent before",
    ]
    if result.warnings:
        found = ", ".join(f"{w.code} ({w.count:,})" for w in result.warnings)
        lines.append(f"  warnings: {found}; see backfill plan")
    return lines


def feed_headline(chunks: Iterable[MappedChunk], source_name: str, rate: float) -> list[str]:
    """The same for `rerun`, from the chunks it will send (a report's rows: few)."""
    stamps = [event.timestamp for chunk in chunks for _, event in chunk.events()]
    first = format_ms(min(stamps)) if stamps else "-"
    last = format_ms(max(stamps)) if stamps else "-"
    return [
        f"About to send {len(stamps):,} events again (rows of {source_name})",
        f"  orders from {first} to {last}",
        f"  at {rate_words(rate, len(stamps))}",
    ]
