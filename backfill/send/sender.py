"""Delivering one event body: the retry loop, through the gate and the rate limit.

The sender knows nothing of files or mappings: it takes bytes and says how they fared. It
talks through a `Poster`, the one seam for tests: `wire.WirePoster` in production (the
client layer is the cost at thousands of events a second, so it is a lean one), and
`httpx_poster.HttpxPoster` around any `httpx.AsyncBaseTransport`, so unit tests use
`httpx.MockTransport`.

What each answer means is decided in `answers` (by exception class, never message text);
how long to wait before a retry in `backoff`; the shared rate limit in `limiter`, the
number in flight in `gate`. A 429 is not a failed attempt: 429s are bounded per row by
time (`rate_limit_budget`), not by `max_retries`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from backfill.errors import (
    AnswerLost,
    EndpointRefused,
    EventRejected,
    SendError,
    TransientSendError,
)
from backfill.send.answers import Reply, check_reply
from backfill.send.backoff import RetryWaits, duration
from backfill.send.gate import ConcurrencyGate
from backfill.send.limiter import AdaptiveLimiter

__all__ = ["Delivery", "Poster", "SendPolicy", "Sender"]

DEFAULT_RATE = 100.0
DEFAULT_CONCURRENCY = 16
DEFAULT_MAX_RETRIES = 6
DEFAULT_TIMEOUT = 30.0
DEFAULT_RATE_LIMIT_BUDGET = 1800.0  # seconds a row may spend being answered 429
RATE_LIMITED = "rate limited"  # the kind of a row whose 429s outlasted its budget


@dataclass(frozen=True)
class SendPolicy:
    """How hard to push: the user's knobs, validated once."""

    rate: float = DEFAULT_RATE  # events per second; 0 means no limit (local sinks only)
    concurrency: int = DEFAULT_CONCURRENCY
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout: float = DEFAULT_TIMEOUT
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    rate_limit_budget: float = DEFAULT_RATE_LIMIT_BUDGET  # seconds of 429s per row at most
    adaptive: bool = False  # concurrency follows the network, up to `concurrency`

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError(f"rate must be 0 (no limit) or positive; got {self.rate}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1; got {self.concurrency}")
        if self.max_retries < 0:
            raise ValueError(f"max retries must be 0 or more; got {self.max_retries}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive; got {self.timeout}")
        if self.rate_limit_budget < 0:
            raise ValueError(f"rate limit budget must be 0 or more; got {self.rate_limit_budget}")
        if not 0 <= self.backoff_base <= self.backoff_max:
            raise ValueError(
                f"backoff needs 0 <= base <= max; got {self.backoff_base}, {self.backoff_max}"
            )


class Delivery(NamedTuple):
    """How one event fared after all its attempts."""

    accepted: bool
    attempts: int
    status: int | None = None
    kind: str = ""
    message: str = ""


class Poster(Protocol):
    async def post(self, body: bytes) -> Reply: ...

    async def aclose(self) -> None: ...


class Sender:
    """Sends bodies until accepted, finally rejected, or out of retries (or 429 budget).

    Every wait between attempts is an `await` a stopping run may cancel (`interruptions`)."""

    def __init__(
        self,
        poster: Poster,
        policy: SendPolicy,
        limiter: AdaptiveLimiter | None = None,
        *,
        gate: ConcurrencyGate | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.poster = poster
        self.policy = policy
        self.limiter = limiter or AdaptiveLimiter(policy.rate)
        self.gate = gate or ConcurrencyGate(
            policy.concurrency, adaptive=policy.adaptive, rate_in_force=self._rate_in_force
        )
        self.retries = 0
        self.waits = RetryWaits(policy, self.limiter, rng or random.Random(), on_notice)
        self.interruptions = Interruptions()
        self._sleep = sleep
        self._clock = clock

    async def deliver(
        self,
        body: bytes,
        give_up: Callable[[], bool] = lambda: False,
        on_wire: Callable[[], None] | None = None,
        on_uncertain: Callable[[], None] | None = None,
    ) -> Delivery:
        """Raises `EndpointRefused` (the whole run must stop); every other outcome is returned.

        `give_up` is asked before each retry: an interrupted run does not start new
        attempts, and the row stays unsent (so `--resume` sends it). `interrupt_waits` ends
        a delivery that is waiting (backoff, Retry-After, rate limit) the same way.
        `on_wire` is called just before the first attempt leaves, past the gate and the
        rate limit: the journal's mark that this event's fate is unknown until answered.
        `on_uncertain` is called, at the same point, before each retry that follows an
        `AnswerLost`: the event may have been applied, so this retry may duplicate it."""
        return await self.interruptions.guard(self._deliver(body, give_up, on_wire, on_uncertain))

    def interrupt_waits(self) -> None:
        """End every delivery that is waiting rather than on the wire (a first Ctrl-C)."""
        self.interruptions.interrupt_waits()

    async def _deliver(
        self,
        body: bytes,
        give_up: Callable[[], bool],
        on_wire: Callable[[], None] | None,
        on_uncertain: Callable[[], None] | None,
    ) -> Delivery:
        sent = failures = limited = 0
        limited_since: float | None = None
        lost = False  # the last attempt's answer was lost: it may have been applied
        while True:
            if sent and give_up():
                return Delivery(False, sent, kind="interrupted")
            sent += 1
            leaving = on_wire if sent == 1 else (on_uncertain if lost else None)
            try:
                status = check_reply(await self._post(body, leaving))
            except EndpointRefused:
                raise
            except EventRejected as exc:
                return Delivery(False, sent, exc.status, exc.kind, str(exc))
            except TransientSendError as exc:
                lost = isinstance(exc, AnswerLost)
                if exc.status == 429:  # slow down, not a failure: bounded by time instead
                    limited += 1
                    now = self._clock()
                    limited_since = now if limited_since is None else limited_since
                    wait = self.waits.before_retry(exc, limited)
                    if now + wait - limited_since > self.policy.rate_limit_budget:
                        spent = _spent(exc, sent, self.policy.rate_limit_budget)
                        return Delivery(False, sent, 429, RATE_LIMITED, spent)
                else:
                    failures += 1
                    if failures > self.policy.max_retries:
                        return Delivery(False, sent, exc.status, exc.kind, _gave_up(exc, sent))
                    wait = self.waits.before_retry(exc, failures)
                if give_up():
                    return Delivery(False, sent, kind="interrupted")
                await self._sleep(wait)
                self.retries += 1
                continue
            self.limiter.on_success()
            return Delivery(True, sent, status)

    def network_report(self, achieved: float) -> dict[str, Any]:
        """What the network did, for the summary: peak in flight, median answer time,
        the longest Retry-After, and one line when the user's cap held the run back."""
        answer = self.gate.median_answer_time()
        note = self.gate.bottleneck(self.policy.rate, achieved)
        return {
            "peak_in_flight": self.gate.peak_in_flight,
            "median_answer_ms": None if answer is None else round(answer * 1000, 1),
            "longest_retry_after": self.waits.longest_retry_after,
            "concurrency_note": note or "",
        }

    def _rate_in_force(self) -> float:
        return self.limiter.rate

    async def _post(self, body: bytes, on_wire: Callable[[], None] | None = None) -> Reply:
        """One request through the concurrency gate, then the rate limit, then the wire;
        `on_wire` is called just before it leaves."""
        gate = self.gate
        await gate.acquire()
        try:
            gate.rate_waited(await self.limiter.acquire())
            if on_wire is not None:
                on_wire()
            task = asyncio.current_task()
            wire = self.interruptions.on_the_wire
            wire.add(task)  # type: ignore[arg-type]
            started = gate.sent()
            try:
                reply = await self.poster.post(body)
            except TransientSendError:
                gate.answered(started, overloaded=True)
                raise
            finally:
                wire.discard(task)  # type: ignore[arg-type]
            gate.answered(started, overloaded=reply.status == 429 or reply.status >= 500)
            return reply
        finally:
            gate.release()


class Interruptions:
    """The deliveries under way, and which of them a first Ctrl-C ends: `on_the_wire` holds
    the tasks whose request is out, the only ones it waits for."""

    def __init__(self) -> None:
        self.on_the_wire: set[asyncio.Task[Any]] = set()
        self._delivering: set[asyncio.Task[Any]] = set()
        self._interrupted: set[asyncio.Task[Any]] = set()

    async def guard(self, delivery: Coroutine[Any, Any, Delivery]) -> Delivery:
        """Await `delivery` in this task; an interrupted wait ends it as "interrupted"."""
        task = asyncio.current_task()
        assert task is not None
        self._delivering.add(task)
        try:
            return await delivery
        except asyncio.CancelledError:
            if task not in self._interrupted:
                raise
            self._interrupted.discard(task)
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+: keep the count right
            if uncancel is not None:
                uncancel()
            return Delivery(False, 0, kind="interrupted")
        finally:
            self._delivering.discard(task)

    def interrupt_waits(self) -> None:
        """End every delivery that is waiting rather than on the wire."""
        for task in self._delivering - self.on_the_wire:
            if task not in self._interrupted:
                self._interrupted.add(task)
                task.cancel()


def _gave_up(exc: SendError, attempts: int) -> str:
    return f"{exc} (gave up after {attempts} attempts)"


def _spent(exc: SendError, attempts: int, budget: float) -> str:
    return (
        f"{exc} (rate limited for more than {duration(budget)}, the --rate-limit-budget; "
        f"{attempts} attempts)"
    )
