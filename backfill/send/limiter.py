"""The rate limit: one token dispenser, over aiolimiter, shared by every request and retry.

It backs off on 429 (the rate halves, `Retry-After` pauses every sender) and climbs back to
the user's `--rate` after that; see `AdaptiveLimiter` for why it queues senders itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from aiolimiter import AsyncLimiter

BURST_SECONDS = 0.03  # the limiter's bucket holds this much time's worth of requests,
MIN_BURST = 5  # but at least this many, or LOW_RATE_BURST_SECONDS' worth if that is fewer:
LOW_RATE_BURST_SECONDS = 0.05  # a bucket of one loses the time each late wake-up costs
WAKE_UP_SECONDS = 0.002  # tokens handed to waiting senders at once: this long's worth
RECOVERY_INTERVAL = 1.0
RECOVERY_FACTOR = 1.25


class AdaptiveLimiter:
    """A leaky bucket shared by every request, retries included, that backs off on 429.

    The bucket holds BURST_SECONDS of the rate (150 at 5000/s): small enough that no
    one-second window sees much more than the rate, large enough that a stall of the sending
    thread (a garbage collection, the reader's turn at the interpreter lock) does not lose
    the tokens that came due meanwhile. At 10 ms, 5000/s lost 15 % that way.

    Senders that find the bucket empty queue here, not in aiolimiter: one dispenser task
    takes WAKE_UP_SECONDS' worth of tokens at a time and hands them out in order. aiolimiter
    wakes each of its waiters with a timer of its own, and at 5000/s with 300 waiting that
    took a fifth of the sending thread.

    On a 429 the rate halves (at most once a second, since a burst of 429s describes one
    overload) and `Retry-After` pauses every sender; after that the rate climbs back by
    RECOVERY_FACTOR each second of success, up to the user's `--rate`.
    """

    __slots__ = (
        "_clock",
        "_dispenser",
        "_last_change",
        "_limiter",
        "_recent",
        "_recent_start",
        "_waiting",
        "max_rate",
        "min_rate",
        "paused_until",
        "rate",
        "slowdowns",
    )

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_rate = rate  # 0: unlimited until the server says otherwise
        self.rate = rate
        self.min_rate = min(rate, 1.0) if rate else 1.0
        self.paused_until = 0.0
        self.slowdowns = 0
        self._clock = clock
        self._last_change = -1e9
        self._recent = 0
        self._recent_start = clock()
        self._limiter = self._bucket(rate)
        self._waiting: deque[asyncio.Future[bool]] = deque()
        self._dispenser: asyncio.Task[None] | None = None

    @staticmethod
    def _bucket(rate: float) -> AsyncLimiter | None:
        if not rate:
            return None
        burst = max(1.0, rate * BURST_SECONDS, min(MIN_BURST, rate * LOW_RATE_BURST_SECONDS))
        return AsyncLimiter(burst, burst / rate)

    async def acquire(self) -> bool:
        """Wait for a token; True when it had to wait (the rate is what holds us back)."""
        waited = False
        while True:
            now = self._clock()
            if now < self.paused_until:
                await asyncio.sleep(self.paused_until - now)
                waited = True
                continue
            limiter = self._limiter
            if limiter is not None:
                if self._waiting or not limiter.has_capacity():
                    waited = True
                    if not await self._queue_for_token():
                        continue  # a 429 paused everyone while this one waited
                else:
                    await limiter.acquire()  # there is room: returns at once
            self._count(self._clock())
            return waited

    def _queue_for_token(self) -> asyncio.Future[bool]:
        token = asyncio.get_running_loop().create_future()
        self._waiting.append(token)
        if self._dispenser is None:
            self._dispenser = asyncio.ensure_future(self._dispense())
        return token

    async def _dispense(self) -> None:
        """Take tokens for the queued senders, a few per wake-up, until none waits.

        A token taken from a bucket the rate has since replaced is not handed out: two
        buckets must never drain side by side. A pause wakes every waiter with False, and
        each one sleeps it out on its own, so this task never outlives its senders."""
        waiting = self._waiting
        try:
            while True:
                while waiting and waiting[0].done():  # cancelled: a stopping run
                    waiting.popleft()
                if not waiting:
                    return
                limiter = self._limiter
                if limiter is None:  # the rate was lifted: everyone goes
                    _hand_out(waiting, len(waiting), True)
                    continue
                rate = limiter.max_rate / limiter.time_period
                # Never more than the bucket holds (aiolimiter refuses): it holds at least
                # BURST_SECONDS' worth, far more than WAKE_UP_SECONDS', and at least one.
                amount = max(1, min(len(waiting), int(rate * WAKE_UP_SECONDS)))
                await limiter.acquire(amount)
                if self._clock() < self.paused_until:
                    _hand_out(waiting, len(waiting), False)
                elif limiter is self._limiter:
                    _hand_out(waiting, amount, True)
        finally:
            self._dispenser = None

    def _count(self, now: float) -> None:
        """Requests in the current one-second window: what "halve" means with no --rate."""
        if self._recent == 0 or now - self._recent_start >= 1.0:
            self._recent, self._recent_start = 0, now
        self._recent += 1

    def pause(self, seconds: float) -> bool:
        """Every sender waits `seconds` from now; True when that extends the pause."""
        until = self._clock() + seconds
        if until <= self.paused_until:
            return False
        self.paused_until = until
        return True

    def slow_down(self, retry_after: float | None) -> None:
        now = self._clock()
        if retry_after:
            self.pause(retry_after)
        if now - self._last_change < RECOVERY_INTERVAL and self.rate:
            return
        measured = self._recent / max(now - self._recent_start, 0.05)
        current = self.rate or max(measured, 2.0)
        self._set_rate(max(self.min_rate, current / 2), now)
        self.slowdowns += 1

    def on_success(self) -> None:
        if self.rate == self.max_rate:
            return
        now = self._clock()
        if now - self._last_change >= RECOVERY_INTERVAL:
            raised = self.rate * RECOVERY_FACTOR + 1
            self._set_rate(0.0 if not self.max_rate and raised > 1e6 else raised, now)
            if self.max_rate and self.rate > self.max_rate:
                self._set_rate(self.max_rate, now)

    def _set_rate(self, rate: float, now: float) -> None:
        self.rate = rate
        self._limiter = self._bucket(rate)
        self._last_change = now


def _hand_out(waiting: deque[asyncio.Future[bool]], tokens: int, go: bool) -> None:
    """Wake up to `tokens` waiters (in the order they came) with `go`."""
    while tokens and waiting:
        token = waiting.popleft()
        if not token.done():
            token.set_result(go)
            tokens -= 1
