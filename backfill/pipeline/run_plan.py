"""What a run sends and where its records go: a `RunPlan`, made from a source or a report.

A plan is made before anything is opened or sent, so every mistake in the inputs is found
first; `Run` (pipeline.py) carries it out. `plan_rerun` (rerun.py) makes one from a report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from backfill.books.journal import Fingerprint, JournalKey
from backfill.mapping.envelopes import Api
from backfill.mapping.events import EventMapper, MappedChunk
from backfill.mapping.mapped_read import mapped_chunks_of
from backfill.mapping.order_ids import IdColumns
from backfill.mapping.spec import Mapping
from backfill.read.source import DEFAULT_CHUNK_ROWS, Source


@dataclass(frozen=True)
class RunPlan:
    """What to send and where its record goes; `feed` yields mapped chunks in row order,
    each of one of `files` (their fingerprints now, for the journal)."""

    feed: Callable[[], Iterator[MappedChunk]]
    source_name: str
    report_path: Path
    journal_key: JournalKey | None
    total_rows: int | None = None
    limit: int | None = None
    resume: bool = False
    restart: bool = False
    id_columns: IdColumns = ()  # the mapping's `id:`: the ledger of delivered ids applies
    event_name: str = ""
    ledger_path: Path | None = None  # where the ledger is (":memory:" for a throwaway one)
    files: dict[str, Fingerprint | None] = field(default_factory=dict)  # name -> now


def plan_source_run(
    source: Source,
    mapping: Mapping,
    api: Api,
    report_path: Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    limit: int | None = None,
    resume: bool = False,
    restart: bool = False,
    ledger_path: Path | None = None,
) -> RunPlan:
    mapper = EventMapper(mapping, source.name)
    return RunPlan(
        feed=lambda: (
            mapper.map_chunk(chunk) for chunk in mapped_chunks_of(source, mapping, chunk_rows)
        ),
        source_name=source.name,
        report_path=report_path,
        journal_key=JournalKey(source.identity, mapping=mapping.fingerprint, api=api.name),
        total_rows=source.total_rows,
        limit=limit,
        resume=resume,
        restart=restart,
        id_columns=mapping.id_columns,
        event_name=mapping.event_name,
        ledger_path=ledger_path,
        files=source.fingerprints(),
    )
