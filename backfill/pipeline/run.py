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
import time
from collections.abc import Callable

from backfill.books.id_ledger import IdLedger, LedgerScope
from backfill.errors import RecordWriteError
from backfill.pipeline.reading import read_into
from backfill.pipeline.rerun import plan_rerun, records_table
from backfill.pipeline.run_plan import RunPlan, plan_source_run
from backfill.pipeline.run_records import RunCounts, RunRecords
from backfill.pipeline.senders import Fed, Senders, drop_fed
from backfill.pipeline.summary import Progress, RunSummary, progress_of
from backfill.pipeline.target import Target
from backfill.send.cutoff import UNREACHABLE_AFTER
from backfill.send.feed import EventFeed
from backfill.send.sender import Poster, Sender, SendPolicy
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
PROGRESS_INTERVAL = 0.2
PosterFactory = Callable[[str, dict[str, str], SendPolicy], Poster]


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
            reading = read_into(feed, self.plan, target.api, records, self._stopping)
            reader = asyncio.create_task(reading)
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
        if not plan.id_columns or plan.ledger_path is None:
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
                drop_fed(feed, self.records)
            feed.close()
            await asyncio.gather(*workers, return_exceptions=True)
            drop_fed(feed, self.records)
        if self._senders is not None and self._senders.failure is not None:
            raise self._senders.failure

    async def _tick(self) -> None:
        while self._on_progress is not None:
            self._report_progress()
            await asyncio.sleep(PROGRESS_INTERVAL)

    def _report_progress(self) -> None:
        if self._on_progress is not None:
            gate = self._senders.sender.gate if self._senders is not None else None
            self._on_progress(progress_of(self.counts, self.plan.total_rows, gate))

    def _finish(self, started: float, sender: Sender, records: RunRecords) -> RunSummary:
        self._report_progress()
        assert self._senders is not None
        stopped, message = self._senders.why_stopped(interrupted=self._stopping.is_set())
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
