"""`run` and `rerun`: rows in, events out to the endpoint, every row's fate written down.

    reader thread ──chunks──▶ mapper ──events──▶ bounded feed ──▶ N senders ──▶ endpoint
                                  │                                     │
                                  └── mapping failures ──▶ report ◀─────┴── send failures
                                                          journal ◀── accepted rows

The feed is bounded, so the reader never runs far ahead and memory stays flat however
large the file. Every row ends in exactly one place: accepted (journal), filtered (counted),
failed (report), or, only when the run is interrupted, unsent (neither, so `--resume`
sends it). The library never prints: progress is a callback, problems are exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from backfill.books.id_ledger import IdLedger, LedgerScope
from backfill.books.id_screen import screen
from backfill.errors import AuthRejected, EndpointRefused, RecordWriteError
from backfill.mapping.envelopes import Api
from backfill.mapping.events import MappedChunk, RowFailure
from backfill.mapping.limit import limit_chunk
from backfill.pipeline.rerun import plan_rerun, records_table
from backfill.pipeline.run_plan import RunPlan, plan_source_run
from backfill.pipeline.run_records import FileBooks, Item, RunCounts, RunRecords
from backfill.pipeline.target import Target
from backfill.send.cutoff import UNREACHABLE_AFTER, UnreachableCutoff
from backfill.send.feed import EventFeed
from backfill.send.sender import Delivery, Poster, Sender, SendPolicy
from backfill.send.wire import WirePoster

__all__ = [
    "UNREACHABLE_AFTER",
    "Progress",
    "Run",
    "RunCounts",
    "RunPlan",
    "RunSummary",
    "Target",
    "plan_rerun",
    "plan_source_run",
    "records_table",
]

FEED_EVENTS_PER_SENDER = 64
FEED_SENDERS = 128  # the feed is sized for this many senders at most (memory stays flat)
FEED_PIECE = 256  # events the reader adds at once, checking for a stop in between
PROGRESS_INTERVAL = 0.2
PosterFactory = Callable[[str, dict[str, str], SendPolicy], Poster]


@dataclass
class RunSummary:
    counts: RunCounts
    elapsed: float
    report_path: Path
    journal_path: Path | None
    stopped: str | None = None  # "interrupted", "auth", "endpoint", "unreachable"; None: done
    message: str = ""
    slowdowns: int = 0
    total: int | None = None
    uncertain_path: Path | None = None  # rows sent again whose fate was unknown
    network: dict[str, Any] = field(default_factory=dict)  # see Sender.network_report

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
            "already_sent": counts.already_sent,
            "failed_before": counts.failed_before,
            "retries": counts.retries,
            "uncertain": counts.uncertain,
            "uncertain_report": str(self.uncertain_path) if self.uncertain_path else None,
            "slowdowns": self.slowdowns,
            **self.network,
            "failed_by_reason": dict(counts.failed_by_reason.most_common()),
            "elapsed_seconds": round(self.elapsed, 3),
            "events_per_second": round(self.events_per_second, 1),
            "report": str(self.report_path),
            "journal": str(self.journal_path) if self.journal_path else None,
            "stopped": self.stopped,
            "message": self.message,
        }


class Origin(NamedTuple):
    """Where a fed event comes from: the chunk that holds its record and its file's books."""

    chunk: MappedChunk
    books: FileBooks


Fed = tuple[Item, Origin]  # one event for a sender: (row, body) and where it comes from


@dataclass
class Progress:
    done: int
    total: int | None
    accepted: int
    failed: int
    filtered: int
    in_flight: int = 0  # requests on the wire now
    answer_ms: float | None = None  # median answer time of the latest requests


class Run:
    """One run: a reader fills a bounded feed, senders post. `request_stop` is the first
    Ctrl-C, `abort` the second."""

    def __init__(
        self,
        plan: RunPlan,
        target: Target,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        poster_factory: PosterFactory | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.target = target
        self.records: RunRecords | None = None
        self._on_progress = on_progress
        self._on_notice = on_notice  # what the user should hear now (a long Retry-After)
        self._poster_factory = poster_factory or WirePoster
        self._stopping = asyncio.Event()
        self._senders: Senders | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._aborted = False

    @property
    def counts(self) -> RunCounts:
        return self.records.counts if self.records else RunCounts()

    def request_stop(self) -> None:
        """Stop reading; senders finish the requests on the wire, then the run ends.
        Those waiting (backoff, Retry-After, the rate limit) stop waiting now."""
        self._stopping.set()
        if self._senders is not None:
            self._senders.sender.interrupt_waits()

    def abort(self) -> None:
        """Stop now: cancel even the requests in flight. The journal stays consistent."""
        self._aborted = True
        self._stopping.set()
        for task in self._tasks:
            task.cancel()

    async def execute(self) -> RunSummary:
        started = time.monotonic()
        records = self.records = RunRecords(self.plan, self.target, self._ledger())
        target = self.target
        poster = self._poster_factory(target.endpoint, target.headers(), target.policy)
        sender = Sender(poster, target.policy, on_notice=self._on_notice)
        senders = self._senders = Senders(sender, records, target, self.plan, self.request_stop)
        concurrency = target.policy.concurrency  # with auto, the gate decides how many post
        feed: EventFeed[Fed] = EventFeed(min(concurrency, FEED_SENDERS) * FEED_EVENTS_PER_SENDER)
        ticker = asyncio.create_task(self._tick())
        syncer = asyncio.create_task(records.keep_synced(on_error=senders.fail))
        finished = False
        try:
            workers = [
                asyncio.create_task(senders.loop(feed, self._stopping)) for _ in range(concurrency)
            ]
            reader = asyncio.create_task(self._read_loop(feed, records))
            self._tasks = [*workers, reader]
            await self._wait(reader, workers, feed)
            finished = True
        finally:
            ticker.cancel()
            syncer.cancel()
            records.counts.retries = sender.retries
            await poster.aclose()
            if not finished:  # a failed write, or a bug: close the files, keep the error
                with contextlib.suppress(RecordWriteError):
                    records.close(None)
        return self._finish(started, sender, records)

    def _ledger(self) -> IdLedger | None:
        """The ledger of delivered ids, when the mapping names an `id:`."""
        plan = self.plan
        if plan.id_column is None or plan.ledger_path is None:
            return None
        scope = LedgerScope.of(self.target.endpoint, self.target.api.name, plan.event_name)
        return IdLedger(plan.ledger_path, scope, source=plan.source_name)

    async def _wait(
        self,
        reader: asyncio.Task[None],
        workers: list[asyncio.Task[None]],
        feed: EventFeed[Fed],
    ) -> None:
        try:
            await reader
        except asyncio.CancelledError:
            if not self._aborted:
                raise
        except RecordWriteError:
            self._stopping.set()  # nothing more may be sent that could not be recorded
            raise
        finally:
            if self._stopping.is_set():
                _drop_fed(feed, self.records)
            feed.close()
            await asyncio.gather(*workers, return_exceptions=True)
            _drop_fed(feed, self.records)
        if self._senders is not None and self._senders.failure is not None:
            raise self._senders.failure

    async def _read_loop(self, feed: EventFeed[Fed], records: RunRecords) -> None:
        chunks = self.plan.feed()
        remaining = self.plan.limit
        while not self._stopping.is_set():
            prepared = await asyncio.to_thread(_next_prepared, chunks, self.target.api)
            if prepared is None:
                return
            books = records.books(prepared[0].source)
            chunk, items, remaining = limit_chunk(*prepared, remaining, books.not_done)
            records.settle_offline(chunk)
            if records.ledger is not None and self.plan.id_column is not None:
                screened = await asyncio.to_thread(
                    screen, chunk, items, records.ledger, self.plan.id_column,
                    books.is_done, books.accepted_before,
                )  # fmt: skip
                items = records.apply_screen(books, screened)
            origin = Origin(chunk, books)
            for start in range(0, len(items), FEED_PIECE):
                if self._stopping.is_set():
                    records.unsent(len(records.fresh(books, items[start:])))
                    break
                piece = records.fresh(books, items[start : start + FEED_PIECE])
                if piece:
                    records.resending(books, piece)
                    await feed.put([(item, origin) for item in piece])
            if remaining == 0:
                return

    async def _tick(self) -> None:
        while self._on_progress is not None:
            self._report_progress()
            await asyncio.sleep(PROGRESS_INTERVAL)

    def _report_progress(self) -> None:
        if self._on_progress is not None:
            c = self.counts
            total = self.plan.total_rows
            gate = self._senders.sender.gate if self._senders is not None else None
            answer = gate.median_answer_time() if gate is not None else None
            self._on_progress(
                Progress(
                    c.settled,
                    total,
                    c.accepted,
                    c.failed,
                    c.filtered,
                    in_flight=gate.in_flight if gate is not None else 0,
                    answer_ms=None if answer is None else answer * 1000,
                )
            )

    def _finish(self, started: float, sender: Sender, records: RunRecords) -> RunSummary:
        self._report_progress()
        stopped, message = None, ""
        assert self._senders is not None
        auth_error, cutoff = self._senders.auth_error, self._senders.cutoff
        if auth_error is not None:
            stopped = "auth" if isinstance(auth_error, AuthRejected) else "endpoint"
            message = self.target.scrub(str(auth_error))
        elif cutoff.tripped:
            stopped, message = "unreachable", cutoff.message()
        elif self._stopping.is_set():
            stopped = "interrupted"
        summary = RunSummary(
            counts=records.counts,
            elapsed=time.monotonic() - started,
            report_path=self.plan.report_path,
            journal_path=records.journal_path,
            stopped=stopped,
            message=message,
            slowdowns=sender.limiter.slowdowns,
            total=self.plan.total_rows,
            uncertain_path=records.uncertain_path if records.counts.uncertain else None,
        )
        summary.network = sender.network_report(summary.events_per_second)
        finished = stopped is None and self.plan.limit is None
        records.close(summary.as_dict() if finished else None)
        return summary


class Senders:
    """What the N sender tasks share: each takes one event at a time off the feed, posts it
    and settles its row in the records."""

    def __init__(
        self,
        sender: Sender,
        records: RunRecords,
        target: Target,
        plan: RunPlan,
        request_stop: Callable[[], None],
    ) -> None:
        self.sender = sender
        self.records = records
        self.target = target
        self.plan = plan
        self.request_stop = request_stop
        self.auth_error: EndpointRefused | None = None  # 401/403, a redirect, a certificate
        self.failure: Exception | None = None  # the first error that ended a sender task
        policy = target.policy
        self.cutoff = UnreachableCutoff(0 if policy.adaptive else policy.concurrency)

    def fail(self, exc: Exception) -> None:
        """Stop the run for an error (a write that failed); the first one is raised."""
        self.failure = self.failure or exc
        self.request_stop()

    async def loop(self, feed: EventFeed[Fed], stopping: asyncio.Event) -> None:
        try:
            while (fed := await feed.get()) is not None:
                (row, body), origin = fed
                await self._post(row, body, origin, stopping)
        except Exception as exc:
            self.fail(exc)
            # A reader waiting on a full feed must never wait for senders that are gone.
            _drop_fed(feed, self.records)

    async def _post(self, row: int, body: bytes, origin: Origin, stopping: asyncio.Event) -> None:
        """Post one event; its row is marked on the wire just before its first request
        leaves (past the gate and the rate limit)."""
        records, books = self.records, origin.books
        if stopping.is_set():
            records.unsent(1)
            return
        try:
            delivery = await self.sender.deliver(
                body, give_up=stopping.is_set, on_wire=partial(records.on_wire, books, row)
            )
        except EndpointRefused as exc:
            self.auth_error = self.auth_error or exc
            self.request_stop()
            records.not_kept(books, row)
            return
        except BaseException:  # failed, or cancelled by a second Ctrl-C: the row is unsent
            records.unsent(1)
            raise
        self._settle(row, body, origin, delivery)

    def _settle(self, row: int, body: bytes, origin: Origin, delivery: Delivery) -> None:
        if self.cutoff.observe(delivery.kind):
            self.request_stop()
        if delivery.accepted:
            self.records.accepted(origin.books, row)
        elif delivery.kind == "interrupted":
            self.records.unsent(1)
        else:
            self.records.failed(self._send_failure(row, body, origin.chunk, delivery))

    def _send_failure(
        self, row: int, body: bytes, chunk: MappedChunk, delivery: Delivery
    ) -> RowFailure:
        message = self.target.scrub(delivery.message)
        return RowFailure(
            row=row,
            source=chunk.source,
            stage="send",
            reason=_send_reason(delivery.status, delivery.kind, message),
            error=message,
            record=chunk.record(row),
            event=self.target.api.parse(json.loads(body)).as_dict(),
            status=delivery.status,
            attempts=delivery.attempts,
        )


def _drop_fed(feed: EventFeed[Fed], records: RunRecords | None) -> None:
    """Events still in the feed when the run stops: never sent, so unsent."""
    left = feed.take_all()
    if records is not None:
        records.unsent(len(left))


def _next_prepared(
    chunks: Iterator[MappedChunk], api: Api
) -> tuple[MappedChunk, list[Item]] | None:
    """The next chunk with its events serialised: runs in a thread, off the event loop."""
    chunk = next(chunks, None)
    if chunk is None:
        return None
    return chunk, list(chunk.bodies(api))


def _send_reason(status: int | None, kind: str, message: str) -> str:
    if status is not None and 400 <= status < 500 and status not in (408, 425, 429):
        return f"rejected: HTTP {status}: {message[:120]}"
    return f"gave up: {kind}"
