"""How many requests may be in flight: a gate every sender passes before the rate limit.

This module keeps the books: the slots, the senders waiting for one (in order, and safe to
cancel), what is on the wire and how long answers take. How the limit moves (a fixed
`--concurrency N`, or `--concurrency auto` after Little's law, slow start and Gradient2) is
`gate_sizing`'s rule; the gate asks it after every answer and applies what it says.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import deque
from collections.abc import Callable

from backfill.send.gate_sizing import LimitSizing

EARLY_TICK = 0.005  # how often the limit grows while senders wait for the first answer
AUTO_CAP = 2048  # `--concurrency auto`: far above what any sensible rate × answer time needs
MAX_CONCURRENCY = 4096  # the highest `--concurrency N`
RECENT_SAMPLES = 256  # answer times behind the progress bar's median


class ConcurrencyGate:
    """`await gate.acquire()` before the rate limit; `gate.release()` after the answer."""

    def __init__(
        self,
        cap: int,
        *,
        adaptive: bool,
        rate_in_force: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cap < 1:
            raise ValueError(f"the concurrency cap must be at least 1; got {cap}")
        self.cap = cap
        self.holders = 0  # senders past the gate: on the wire, or waiting for the rate limit
        self.in_flight = 0  # requests on the wire
        self.peak_in_flight = 0
        self.recent: deque[float] = deque(maxlen=RECENT_SAMPLES)
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._early_timer: asyncio.TimerHandle | None = None
        self._sizing = LimitSizing(cap, adaptive=adaptive, rate_in_force=rate_in_force, clock=clock)
        self.limit = self._sizing.initial_limit()

    # --- the gate ------------------------------------------------------------------------

    async def acquire(self) -> None:
        sizing = self._sizing
        if sizing.first_answers:
            self._grow_before_answers()
        if self.holders < self.limit and not self._waiters:
            self.holders += 1
            if self.holders == self.limit:  # no slot left for the next sender
                sizing.window.full += 1
            return
        sizing.window.full += 1
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if sizing.first_answers and self._early_timer is None:
            self._early_tick()
        try:
            await waiter  # the slot is handed over: `holders` already counts this sender
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            elif waiter in self._waiters:  # `_wake` may have dropped it already
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.holders -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.holders < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.holders += 1
                waiter.set_result(None)

    def _grow_before_answers(self) -> None:
        grown = self._sizing.before_answers(self.limit)
        if grown is not None:
            self._set_limit(grown)

    def _early_tick(self) -> None:
        """While senders wait for the first answer, grow the limit as time passes."""
        self._early_timer = None
        if not self._sizing.first_answers or not self._waiters:
            return
        self._grow_before_answers()
        if self._sizing.still_early():
            loop = asyncio.get_running_loop()
            self._early_timer = loop.call_later(EARLY_TICK, self._early_tick)

    def _set_limit(self, value: float) -> None:
        self.limit = max(1, min(self.cap, math.ceil(value)))
        self._wake()

    # --- measurements --------------------------------------------------------------------

    def rate_waited(self, waited: bool) -> None:
        """Whether this request had to wait for the rate limit: then the rate binds."""
        window = self._sizing.window
        window.requests += 1
        window.rate_waits += waited

    def sent(self) -> float:
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        return self._clock()

    def answered(self, started: float, *, overloaded: bool) -> None:
        self.in_flight -= 1
        now = self._clock()
        rtt = None if overloaded else now - started
        if rtt is not None:
            self.recent.append(rtt)
        decided = self._sizing.answered(now, rtt, self.limit)
        if decided is not None:
            self._set_limit(decided)

    def median_answer_time(self) -> float | None:
        return statistics.median(self.recent) if self.recent else None

    def bottleneck(self, rate: float, achieved: float) -> str | None:
        """One line when the cap held the run below the rate asked for, else None."""
        return self._sizing.cap_note.bottleneck(rate, achieved)
