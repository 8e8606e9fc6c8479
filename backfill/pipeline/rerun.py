"""`rerun`: the rows of a failure report sent again, as a `RunPlan` like any other run.

With a mapping, each row is mapped again from its original values (the report keeps them
exactly); without one, the stored events are sent as they were, and rows that never had an
event stay in the new report, saying that they need `--mapping`.

A report of a many-file source names each row's file: the rows are sent again file by file,
each under its file's name and its own number there, so the new report and the rerun's
journal (bound to the input report) know them as the first run did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from backfill.books.journal import JournalKey, file_fingerprint
from backfill.books.report import read_report
from backfill.errors import MappingError, UsageError
from backfill.mapping.envelopes import Api, Event
from backfill.mapping.events import EventMapper, MappedChunk, RowFailure
from backfill.mapping.spec import Mapping
from backfill.pipeline.run_plan import RunPlan
from backfill.read.source import DEFAULT_CHUNK_ROWS, Chunk

NEEDS_MAPPING = "rerun it with --mapping"
RAW_LINE = "_line"  # the record of a line that could not be read: its raw text


def plan_rerun(
    report: Path,
    mapping: Mapping | None,
    api: Api,
    new_report: Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    resume: bool = False,
    restart: bool = False,
    ledger_path: Path | None = None,
) -> RunPlan:
    """Failed rows again: re-mapped from their records, or their stored events resent."""
    if new_report.resolve() == report.resolve():
        raise UsageError(f"--report {new_report} is the input report; choose another file.")
    failures = list(read_report(report))
    source_name = failures[0].source if failures else str(report)
    if mapping is not None:
        columns = list(dict.fromkeys(k for f in failures for k in f.record))
        if failures:
            _check_record_columns(mapping, columns, report)
        feed = lambda: _remapped_chunks(failures, mapping, source_name, chunk_rows)  # noqa: E731
        fingerprint = mapping.fingerprint
    else:
        feed = lambda: _stored_event_chunks(failures, chunk_rows)  # noqa: E731
        fingerprint = "stored-events"
    read_from = {"report": str(report.resolve()), **file_fingerprint(report)}
    return RunPlan(
        feed=feed,
        source_name=source_name,
        report_path=new_report,
        journal_key=JournalKey(str(report.resolve()), fingerprint, api.name),
        files={failure.source: read_from for failure in failures},
        total_rows=len(failures),
        resume=resume,
        restart=restart,
        id_columns=mapping.id_columns if mapping is not None else (),
        event_name=mapping.event_name if mapping is not None else "",
        ledger_path=ledger_path,
    )


def _check_record_columns(mapping: Mapping, columns: list[str], report: Path) -> None:
    """A report's records hold the columns its run's mapping read, no others: a mapping that
    needs another column must read the rows from the source again."""
    kept = [column for column in columns if column != RAW_LINE]
    for key, column in mapping.column_keys():
        if column not in kept:
            raise MappingError(
                f"{mapping.origin}: {key}: the column {column!r} is not in the records of "
                f"{report}, which keep only the columns the failed run read "
                f"({', '.join(kept) or 'none'}). Send these rows again from the source: "
                f"backfill run SOURCE --mapping {mapping.origin} (rows accepted before are "
                "sent again, unless both mappings name an `id:`: the ledger skips those)."
            )
    mapping.check_columns(columns, f"the records of {report}")


def _batches(items: list[RowFailure], size: int) -> Iterator[tuple[str, list[RowFailure]]]:
    """(file, its failures in row order), at most `size` at a time: a chunk is of one file."""
    by_file: dict[str, list[RowFailure]] = {}
    for failure in items:
        by_file.setdefault(failure.source, []).append(failure)
    for source, failures in by_file.items():
        failures.sort(key=lambda f: -1 if f.row is None else f.row)
        for start in range(0, len(failures), size):
            yield source, failures[start : start + size]


def _remapped_chunks(
    failures: list[RowFailure], mapping: Mapping, source_name: str, chunk_rows: int
) -> Iterator[MappedChunk]:
    mapper = EventMapper(mapping, source_name)
    for source, batch in _batches([f for f in failures if _remappable(f)], chunk_rows):
        rows = np.array([f.row for f in batch], dtype=np.int64)
        yield mapper.map_chunk(Chunk(rows, records_table(batch), source=source))
    unnumbered = [f for f in failures if not _remappable(f)]
    for source, batch in _batches(unnumbered, chunk_rows):
        yield _unchanged(batch, source)


def _stored_event_chunks(failures: list[RowFailure], chunk_rows: int) -> Iterator[MappedChunk]:
    for source, batch in _batches(failures, chunk_rows):
        numbered = [f for f in batch if _remappable(f)]
        sendable = [f for f in numbered if f.event is not None]
        stuck = [f for f in batch if f.event is None or not _remappable(f)]
        for failure in stuck:
            if NEEDS_MAPPING not in failure.error:
                failure.error = f"{failure.error} (a {failure.stage} failure: {NEEDS_MAPPING})"
        events = [Event.from_dict(f.event) for f in sendable if f.event is not None]
        yield MappedChunk(
            rows=np.array([f.row for f in numbered], dtype=np.int64),
            filtered_rows=np.array([], dtype=np.int64),
            failures=stuck,
            event_rows=np.array([f.row for f in sendable], dtype=np.int64),
            table=records_table(numbered),
            source=source,
            _build=lambda events=events: events,
        )


def _remappable(failure: RowFailure) -> bool:
    """A row with columns; a record that could not be read has only its raw text."""
    return failure.row is not None and failure.stage != "read"


def records_table(failures: list[RowFailure]) -> pa.Table:
    """The records as a table, each column's type inferred from all of its values."""
    columns = list(dict.fromkeys(key for f in failures for key in f.record))
    try:
        return pa.table({c: pa.array([f.record.get(c) for f in failures]) for c in columns})
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise MappingError(f"the report's records cannot form a table: {exc}") from None


def _unchanged(failures: list[RowFailure], source: str) -> MappedChunk:
    empty = np.array([], dtype=np.int64)
    return MappedChunk(empty, empty, failures, empty, source=source)
