"""The sending half of a run: N tasks take events off the feed, post them, settle their rows.

Every row a sender takes ends in the records: accepted, failed (with the reason the report
gives), or unsent when the run stops first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from backfill.errors import AuthRejected, EndpointRefused
from backfill.mapping.events import MappedChunk, RowFailure
from backfill.pipeline.run_plan import RunPlan
from backfill.pipeline.run_records import FileBooks, Item, RunRecords, stored_event
from backfill.pipeline.target import Target
from backfill.send.answers import is_final_rejection
from backfill.send.cutoff import UnreachableCutoff
from backfill.send.feed import EventFeed
from backfill.send.sender import Delivery, Sender


class Origin(NamedTuple):
    """Where a fed event comes from: the chunk that holds its record and its file's books."""

    chunk: MappedChunk
    books: FileBooks


Fed = tuple[Item, Origin]  # one event for a sender: (row, body) and where it comes from


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

    def why_stopped(self, *, interrupted: bool) -> tuple[str | None, str]:
        """How the run ended, for the summary: "auth", "endpoint", "unreachable",
        "interrupted" or None (done), and the message to show."""
        if self.auth_error is not None:
            kind = "auth" if isinstance(self.auth_error, AuthRejected) else "endpoint"
            return kind, self.target.scrub(str(self.auth_error))
        if self.cutoff.tripped:
            return "unreachable", self.cutoff.message()
        return ("interrupted" if interrupted else None), ""

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
            drop_fed(feed, self.records)

    async def _post(self, row: int, body: bytes, origin: Origin, stopping: asyncio.Event) -> None:
        """Post one event; its row is marked on the wire just before its first request
        leaves (past the gate and the rate limit), and listed as uncertain before each
        retry that follows a lost answer."""
        records, books = self.records, origin.books
        if stopping.is_set():
            records.unsent(1)
            return
        try:
            delivery = await self.sender.deliver(
                body,
                give_up=stopping.is_set,
                on_wire=partial(records.on_wire, books, row),
                on_uncertain=partial(records.uncertain, books, row, body),
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
            event=stored_event(self.target.api, body),
            status=delivery.status,
            attempts=delivery.attempts,
        )


def drop_fed(feed: EventFeed[Fed], records: RunRecords | None) -> None:
    """Events still in the feed when the run stops: never sent, so unsent."""
    left = feed.take_all()
    if records is not None:
        records.unsent(len(left))


def _send_reason(status: int | None, kind: str, message: str) -> str:
    if is_final_rejection(status):
        return f"rejected: HTTP {status}: {message[:120]}"
    return f"gave up: {kind}"
