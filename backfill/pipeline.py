"""`run` and `rerun`: rows in, events out to the endpoint, every row's fate written down.

    reader thread ──chunks──▶ mapper ──events──▶ bounded queue ──▶ N senders ──▶ endpoint
                                  │                                     │
                                  └── mapping failures ──▶ report ◀─────┴── send failures
                                                          journal ◀── accepted rows

The queue is bounded, so the reader never runs far ahead and memory stays flat however
large the file. Every row ends in exactly one place: accepted (journal), filtered (counted),
failed (report), or, only when the run is interrupted, unsent (neither, so `--resume`
sends it). The library never prints: progress is a callback, problems are exceptions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from backfill.api import Api, Event
from backfill.errors import AuthRejected, JournalError, MappingError, UsageError
from backfill.events import EventMapper, MappedChunk, RowFailure
from backfill.journal import (
    JournalKey,
    JournalWriter,
    RowSet,
    journal_path,
    read_journal,
)
from backfill.mapping import Mapping
from backfill.report import MIN_SECRET_LENGTH, ReportWriter, read_report
from backfill.sender import (
    CONNECT_FAILED,
    AiohttpPoster,
    Delivery,
    Poster,
    Sender,
    SendPolicy,
)
from backfill.source import DEFAULT_CHUNK_ROWS, Chunk, Source

QUEUE_EVENTS_PER_SENDER = 64
BATCH_EVENTS = 8  # events handed to a sender at once: the queue's cost is per item
NEEDS_MAPPING = "rerun it with --mapping"
UNREACHABLE_AFTER = 20  # events in a row that could not even connect: the server is gone
MAX_REASONS = 50  # distinct reasons kept in the summary; servers may put values in messages
OTHER_REASONS = "other reasons (see the report)"
MAX_MESSAGE_CHARS = 500  # a server's message, cut after the key is scrubbed from all of it
PROGRESS_INTERVAL = 0.2
PosterFactory = Callable[[str, dict[str, str], SendPolicy], Poster]


@dataclass
class RunCounts:
    """Where every row went; `accepted + filtered + failed + unsent + already_done == read`."""

    read: int = 0
    accepted: int = 0
    filtered: int = 0
    failed: int = 0
    unsent: int = 0
    already_done: int = 0
    failed_before: int = 0  # of already_done: rows an earlier run put in the report
    retries: int = 0
    failed_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def settled(self) -> int:
        return self.accepted + self.filtered + self.failed + self.already_done


@dataclass
class RunSummary:
    counts: RunCounts
    elapsed: float
    report_path: Path
    journal_path: Path | None
    stopped: str | None = None  # "interrupted", "auth" or "unreachable"; None: it finished
    message: str = ""
    slowdowns: int = 0
    total: int | None = None

    @property
    def events_per_second(self) -> float:
        return self.counts.accepted / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "read": counts.read,
            "accepted": counts.accepted,
            "filtered": counts.filtered,
            "failed": counts.failed,
            "unsent": counts.unsent,
            "already_done": counts.already_done,
            "failed_before": counts.failed_before,
            "retries": counts.retries,
            "slowdowns": self.slowdowns,
            "failed_by_reason": dict(counts.failed_by_reason.most_common()),
            "elapsed_seconds": round(self.elapsed, 3),
            "events_per_second": round(self.events_per_second, 1),
            "report": str(self.report_path),
            "journal": str(self.journal_path) if self.journal_path else None,
            "stopped": self.stopped,
            "message": self.message,
        }


@dataclass(frozen=True)
class Target:
    """Where and how events go."""

    api: Api
    endpoint: str
    api_key: str
    policy: SendPolicy = field(default_factory=SendPolicy)

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", self.api.key_header: self.api_key}


@dataclass(frozen=True)
class RunPlan:
    """What to send and where its record goes; `feed` yields mapped chunks in row order."""

    feed: Callable[[], Iterator[MappedChunk]]
    source_name: str
    report_path: Path
    journal_key: JournalKey | None
    total_rows: int | None = None
    limit: int | None = None
    resume: bool = False
    restart: bool = False


class Batch(NamedTuple):
    """Events for one sender to post in turn, with the chunk that holds their records."""

    items: list[tuple[int, bytes]]
    chunk: MappedChunk


@dataclass
class Progress:
    done: int
    total: int | None
    accepted: int
    failed: int
    filtered: int


class Run:
    """One run. `request_stop` is the first Ctrl-C, `abort` the second."""

    def __init__(
        self,
        plan: RunPlan,
        target: Target,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        poster_factory: PosterFactory | None = None,
    ) -> None:
        self.plan = plan
        self.target = target
        self.counts = RunCounts()
        self._on_progress = on_progress
        self._poster_factory = poster_factory or AiohttpPoster
        self._stopping = asyncio.Event()
        self._auth_error: AuthRejected | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._reader: list[asyncio.Task[None]] = []
        self._aborted = False
        self._unreachable_streak = 0
        self._unreachable = False
        self._unreachable_limit = max(UNREACHABLE_AFTER, target.policy.concurrency)
        self._done_rows = RowSet()
        self._report: ReportWriter | None = None
        self._journal: JournalWriter | None = None
        self._skip_bad_lines = 0

    # --- control ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop reading; senders finish the requests in flight, then the run ends."""
        self._stopping.set()

    def abort(self) -> None:
        """Stop now: cancel even the requests in flight. The journal stays consistent."""
        self._aborted = True
        self._stopping.set()
        for task in [*self._workers, *self._reader]:
            task.cancel()

    # --- the run ---------------------------------------------------------------------------

    async def execute(self) -> RunSummary:
        started = time.monotonic()
        self._open_records()
        poster = self._poster_factory(
            self.target.endpoint, self.target.headers(), self.target.policy
        )
        sender = Sender(poster, self.target.policy)
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(
            self.target.policy.concurrency * QUEUE_EVENTS_PER_SENDER // BATCH_EVENTS
        )
        ticker = asyncio.create_task(self._tick())
        try:
            self._workers = [
                asyncio.create_task(self._send_loop(queue, sender))
                for _ in range(self.target.policy.concurrency)
            ]
            reader = asyncio.create_task(self._read_loop(queue))
            self._reader = [reader]
            await self._wait(reader, queue)
        finally:
            ticker.cancel()
            self.counts.retries = sender.retries
            await poster.aclose()
        return self._finish(started, sender)

    async def _wait(self, reader: asyncio.Task[None], queue: asyncio.Queue[Any]) -> None:
        try:
            await reader
        except asyncio.CancelledError:
            if not self._aborted:
                raise
        finally:
            if self._stopping.is_set():
                self._drop_queued(queue)
            for _ in self._workers:
                await queue.put(None)
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._drop_queued(queue)
        if self._auth_error is None and not self._aborted:
            for task in self._workers:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]

    def _drop_queued(self, queue: asyncio.Queue[Batch | None]) -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            if batch is not None:
                self.counts.unsent += len(batch.items)

    async def _read_loop(self, queue: asyncio.Queue[Any]) -> None:
        chunks = self.plan.feed()
        remaining = self.plan.limit
        while not self._stopping.is_set():
            prepared = await asyncio.to_thread(_next_prepared, chunks, self.target.api)
            if prepared is None:
                return
            chunk, items, remaining = self._apply_limit(*prepared, remaining)
            self._settle_offline(chunk)
            for start in range(0, len(items), BATCH_EVENTS):
                if self._stopping.is_set():
                    self.counts.unsent += len(self._fresh(items[start:]))
                    break
                batch = self._fresh(items[start : start + BATCH_EVENTS])
                if batch:
                    await queue.put(Batch(batch, chunk))
            if remaining == 0:
                return

    def _fresh(self, items: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """The items not accepted by an earlier run; those are counted as already done."""
        fresh = self._not_done(items)
        self.counts.already_done += len(items) - len(fresh)
        return fresh

    def _not_done(self, items: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        done = self._done_rows
        return [item for item in items if item[0] not in done] if done else items

    def _apply_limit(
        self,
        chunk: MappedChunk,
        items: list[tuple[int, bytes]],
        remaining: int | None,
    ) -> tuple[MappedChunk, list[tuple[int, bytes]], int | None]:
        """With --limit, cut the chunk just after the last event that may still go."""
        if remaining is None:
            return chunk, items, None
        fresh = self._not_done(items)
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
        )
        return trimmed, [item for item in items if item[0] in kept_rows], 0

    def _settle_offline(self, chunk: MappedChunk) -> None:
        """Count the chunk's rows; filtered and unmappable rows are settled right here."""
        self.counts.read += chunk.read
        self.counts.filtered += chunk.filtered
        for failure in chunk.failures:
            if failure.row is None and self._skip_bad_lines:
                self._skip_bad_lines -= 1
                self.counts.already_done += 1
            elif failure.row is not None and failure.row in self._done_rows:
                self.counts.already_done += 1
            else:
                self._record_failure(failure)

    async def _send_loop(self, queue: asyncio.Queue[Batch | None], sender: Sender) -> None:
        while (batch := await queue.get()) is not None:
            unsettled = len(batch.items)
            try:
                for row, body in batch.items:
                    if self._stopping.is_set():
                        break
                    try:
                        delivery = await sender.deliver(body, give_up=self._stopping.is_set)
                    except AuthRejected as exc:
                        self._auth_error = self._auth_error or exc
                        self.request_stop()
                        break
                    unsettled -= 1
                    self._settle(row, body, batch.chunk, delivery)
            finally:  # stopped, or cancelled by a second Ctrl-C: the rest of the batch is unsent
                self.counts.unsent += unsettled

    def _settle(self, row: int, body: bytes, chunk: MappedChunk, delivery: Delivery) -> None:
        self._watch_reachability(delivery.kind)
        if delivery.accepted:
            self.counts.accepted += 1
            if self._journal is not None:
                self._journal.accepted(row)
        elif delivery.kind == "interrupted":
            self.counts.unsent += 1
        else:
            message = self._scrub(delivery.message)
            self._record_failure(
                RowFailure(
                    row=row,
                    source=self.plan.source_name,
                    stage="send",
                    reason=_send_reason(delivery.status, delivery.kind, message),
                    error=message,
                    record=chunk.record(row),
                    event=self.target.api.parse(json.loads(body)).as_dict(),
                    status=delivery.status,
                    attempts=delivery.attempts,
                )
            )

    def _watch_reachability(self, kind: str) -> None:
        """A server gone for good would make every remaining row spend all its retries,
        for days on a large file: stop instead, and let --resume send the rest later."""
        self._unreachable_streak = self._unreachable_streak + 1 if kind == CONNECT_FAILED else 0
        if self._unreachable_streak >= self._unreachable_limit and not self._unreachable:
            self._unreachable = True
            self.request_stop()

    def _scrub(self, text: str) -> str:
        """A server may echo the API key in its message: keep it out of summary and journal."""
        key = self.target.api_key
        if len(key) >= MIN_SECRET_LENGTH:
            text = text.replace(key, "[redacted]")
        return text[:MAX_MESSAGE_CHARS]

    def _record_failure(self, failure: RowFailure) -> None:
        self.counts.failed += 1
        by_reason = self.counts.failed_by_reason
        known = failure.reason in by_reason or len(by_reason) < MAX_REASONS
        by_reason[failure.reason if known else OTHER_REASONS] += 1
        if self._report is not None:
            self._report.write(failure)

    async def _tick(self) -> None:
        while self._on_progress is not None:
            self._report_progress()
            await asyncio.sleep(PROGRESS_INTERVAL)

    def _report_progress(self) -> None:
        if self._on_progress is not None:
            counts = self.counts
            self._on_progress(
                Progress(
                    counts.settled,
                    self.plan.total_rows,
                    counts.accepted,
                    counts.failed,
                    counts.filtered,
                )
            )

    # --- records ---------------------------------------------------------------------------

    def _open_records(self) -> None:
        plan = self.plan
        secrets = [self.target.api_key]
        if plan.journal_key is None:
            plan.report_path.unlink(missing_ok=True)
            self._report = ReportWriter(plan.report_path, secrets)
            return
        path = journal_path(plan.report_path)
        state = None if plan.restart else read_journal(path)  # --restart discards it unread
        resuming = check_journal(path, state, plan)
        if resuming and state is not None:
            self._done_rows = state.accepted
            self._load_reported_rows()
        else:
            plan.report_path.unlink(missing_ok=True)
        self._report = ReportWriter(plan.report_path, secrets)
        self._journal = JournalWriter(path, plan.journal_key, append=resuming)

    def _load_reported_rows(self) -> None:
        """Rows already in the report are settled: a resumed run must not report them twice."""
        if not self.plan.report_path.exists():
            return
        _drop_torn_tail(self.plan.report_path)
        for failure in read_report(self.plan.report_path):
            self.counts.failed_before += 1
            if failure.row is None:
                self._skip_bad_lines += 1
            else:
                self._done_rows.add(failure.row)

    def _finish(self, started: float, sender: Sender) -> RunSummary:
        self._report_progress()
        stopped, message = None, ""
        if self._auth_error is not None:
            stopped, message = "auth", self._scrub(str(self._auth_error))
        elif self._unreachable:
            stopped = "unreachable"
            message = (
                f"{self._unreachable_limit} events in a row could not connect to the endpoint. "
                "When it is back, --resume sends the rest; `backfill rerun` the report for "
                "those that gave up."
            )
        elif self._stopping.is_set():
            stopped = "interrupted"
        summary = RunSummary(
            counts=self.counts,
            elapsed=time.monotonic() - started,
            report_path=self.plan.report_path,
            journal_path=self._journal.path if self._journal else None,
            stopped=stopped,
            message=message,
            slowdowns=sender.limiter.slowdowns,
            total=self.plan.total_rows,
        )
        if self._report is not None:
            self._report.close()
        if self._journal is not None:
            if stopped is None and self.plan.limit is None:
                self._journal.finish(summary.as_dict())
            self._journal.close()
        return summary


def check_journal(path: Path, state: Any, plan: RunPlan) -> bool:
    """Decide from an earlier journal whether this run resumes; refuse what would resend."""
    if plan.restart:
        return False
    if state is None:
        if plan.resume:
            raise JournalError(
                f"--resume: there is no journal at {path} to resume; "
                "check --report, or run without --resume to start."
            )
        return False
    key = asdict(plan.journal_key) if plan.journal_key else {}
    differs = [
        k
        for k in ("source", "size", "mtime_ns", "mapping", "api")
        if state.key.get(k) != key.get(k)
    ]
    if differs:
        raise JournalError(
            f"{path} belongs to another backfill (its {', '.join(differs)} differ from this "
            "run's). Use --report to write elsewhere, or --restart to discard that journal."
        )
    if plan.resume:
        return True
    accepted = len(state.accepted)
    if state.finished:
        raise JournalError(
            f"this source was already sent with this mapping ({accepted:,} rows accepted; "
            f"journal {path}). Nothing was sent. Use --restart to send everything again."
        )
    raise JournalError(
        f"an unfinished run of this source exists ({accepted:,} rows accepted so far; "
        f"journal {path}). Nothing was sent. Continue it with --resume, or start over "
        "with --restart (rows already accepted would be sent again)."
    )


def _drop_torn_tail(path: Path) -> None:
    """A crash mid-write leaves a last line without its newline: cut it off."""
    with path.open("rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def _next_prepared(
    chunks: Iterator[MappedChunk], api: Api
) -> tuple[MappedChunk, list[tuple[int, bytes]]] | None:
    """The next chunk with its events serialised: runs in a thread, off the event loop."""
    chunk = next(chunks, None)
    if chunk is None:
        return None
    return chunk, list(chunk.bodies(api))


def _send_reason(status: int | None, kind: str, message: str) -> str:
    if status is not None and 400 <= status < 500 and status not in (408, 425, 429):
        return f"rejected: HTTP {status}: {message[:120]}"
    return f"gave up: {kind}"


# --- plans -----------------------------------------------------------------------------------


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
) -> RunPlan:
    mapper = EventMapper(mapping, source.name)
    return RunPlan(
        feed=lambda: (mapper.map_chunk(chunk) for chunk in source.chunks(chunk_rows)),
        source_name=source.name,
        report_path=report_path,
        journal_key=JournalKey.for_source(source.path, mapping.fingerprint, api.name),
        total_rows=source.total_rows,
        limit=limit,
        resume=resume,
        restart=restart,
    )


def plan_rerun(
    report: Path,
    mapping: Mapping | None,
    api: Api,
    new_report: Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    resume: bool = False,
    restart: bool = False,
) -> RunPlan:
    """Failed rows again: re-mapped from their records, or their stored events resent."""
    if new_report.resolve() == report.resolve():
        raise UsageError(f"--report {new_report} is the input report; choose another file.")
    failures = list(read_report(report))
    source_name = failures[0].source if failures else str(report)
    if mapping is not None:
        columns = list(dict.fromkeys(k for f in failures for k in f.record))
        if failures:
            mapping.check_columns(columns, f"the records of {report}")
        feed = lambda: _remapped_chunks(failures, mapping, source_name, chunk_rows)  # noqa: E731
        fingerprint = mapping.fingerprint
    else:
        feed = lambda: _stored_event_chunks(failures, chunk_rows)  # noqa: E731
        fingerprint = "stored-events"
    return RunPlan(
        feed=feed,
        source_name=source_name,
        report_path=new_report,
        journal_key=JournalKey.for_source(report, fingerprint, api.name),
        total_rows=len(failures),
        resume=resume,
        restart=restart,
    )


def _batches(items: list[RowFailure], size: int) -> Iterator[list[RowFailure]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _remapped_chunks(
    failures: list[RowFailure], mapping: Mapping, source_name: str, chunk_rows: int
) -> Iterator[MappedChunk]:
    mapper = EventMapper(mapping, source_name)
    for batch in _batches([f for f in failures if _remappable(f)], chunk_rows):
        rows = np.array([f.row for f in batch], dtype=np.int64)
        yield mapper.map_chunk(Chunk(rows, records_table(batch)))
    unnumbered = [f for f in failures if not _remappable(f)]
    if unnumbered:
        yield _unchanged(unnumbered)


def _stored_event_chunks(failures: list[RowFailure], chunk_rows: int) -> Iterator[MappedChunk]:
    for batch in _batches(failures, chunk_rows):
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


def _unchanged(failures: list[RowFailure]) -> MappedChunk:
    empty = np.array([], dtype=np.int64)
    return MappedChunk(rows=empty, filtered_rows=empty, failures=failures, event_rows=empty)
