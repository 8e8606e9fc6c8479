"""How many requests may be in flight: a gate every sender passes before the rate limit.

With a fixed `--concurrency N` the gate is a plain limit of N that also measures answer
times. With `--concurrency auto` the limit follows the network, after Netflix's
concurrency-limits (Vegas, Gradient2) and Envoy's adaptive concurrency filter:

- Little's law: carrying `rate` events/s at `rtt` seconds per answer takes `rate × rtt`
  requests in flight. While the rate limit is what holds the run back, the gate only keeps
  enough room for that, with headroom.
- Before any answer, nothing is known but that the answer time is at least the time waited
  since the first request: in flight grows by half the rate for each second waited (for at
  most EARLY_SECONDS). That stays within 2 × rate × the warm answer time unless the cold
  first answer is slower than 4 warm ones, and sends half the rate through the first answer
  time instead of INITIAL_LIMIT requests (which cost 4 % of a 6-s run at 250 ms).
- The first answers came on new connections, in a process starting up: cold, slower than
  the network by a cost of their own (36-39 ms for a 20 ms server on a quiet machine, where
  warm answers take 17-25 ms; far more on a loaded one). When they are slow anyway (at
  least EARLY_STEP_SECONDS), that cost is a small share of them and waiting for a second
  answer time costs most (7 % of a 6-s run at 250 ms): the first step comes with the first
  answer, Little's law on it without headroom. Faster first answers wait, as every
  decision does, for a window of MIN_WINDOW_SAMPLES answers, some of them warm. Either way
  the warm windows that follow add the headroom, and their faster answers replace the cold
  ones in the lowest-of-windows figures below; the first answers stay among them, as the
  only ones taken at (almost) no load.
- Whatever the answer time, the limit stays below 2 × rate × the network's answer time,
  less a margin. For that ceiling the network's answer time is the fastest answer (of the
  last BASE_SECONDS), as TCP Vegas's base RTT: no answer comes faster than the network, and
  our own and the server's work and the server's jitter only add to it. The lowest window
  median it replaces was 27 ms for a 20 ms server, which let 48 requests be in flight for a
  bound of 40. The margin is wide (1.6, not 2) because the fastest answer of the first
  windows still carries the start-up: 21-23 ms for a 20 ms server ± 20 %, 17-18 ms later.
- When senders queue at the gate while the rate limit has tokens to spare, the gate is the
  bottleneck: the limit grows (doubling at first, like TCP's slow start, then by √limit),
  as long as answers do not slow down.
- When answers take longer than the no-load answer time by more than TOLERANCE, the server
  is queueing our requests: the limit shrinks in proportion (Gradient2), so the run settles
  near what the server can carry instead of piling requests on it.
- A 429, a 5xx or a failed connection shrinks it by a quarter (at most once per window).

Decisions are made once per window (a few answer times), from the window's median answer
time; for telling queueing apart, the no-load answer time is the lowest window median of the
last BASE_SECONDS.
`cap` stays a hard limit, and the library never prints: `bottleneck()` says when the cap
is what held the run back, for the CLI to print.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import deque
from collections.abc import Callable

INITIAL_LIMIT = 4  # small: the first answers say how far the server is
EARLY_SHARE = 0.5  # before any answer, in flight grows by this share of the rate each second
EARLY_SECONDS = 0.5  # ... for this long at most: a server that never answers is not flooded
EARLY_TICK = 0.005  # how often the limit grows while senders wait for the first answer
AUTO_CAP = 2048  # `--concurrency auto`: far above what any sensible rate × answer time needs
MAX_CONCURRENCY = 4096  # the highest `--concurrency N`
TOLERANCE = 1.5  # answers this much slower than at no load: queueing (Gradient2 default)
BACKOFF_FACTOR = 0.75
HEADROOM = 1.5  # in flight kept available per unit of rate × answer time
MOST_IN_FLIGHT = 1.6  # ceiling per unit of rate × the fastest answer: 2, less a margin
EARLY_STEP_SECONDS = 0.1  # first answers this slow size the first step at once (see above)
SMOOTHING = 0.5  # how far one window moves the limit toward a lower target
MIN_WINDOW_SECONDS = 0.1
WINDOW_ANSWER_TIMES = 3
MIN_WINDOW_SAMPLES = 8
BASE_SECONDS = 30.0  # how far back the no-load answer time is remembered
RATE_BOUND_SHARE = 0.5  # share of requests that waited for the rate limit: the rate binds
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
        self.adaptive = adaptive
        self.limit = min(cap, INITIAL_LIMIT) if adaptive else cap
        self.holders = 0  # senders past the gate: on the wire, or waiting for the rate limit
        self.in_flight = 0  # requests on the wire
        self.peak_in_flight = 0
        self.recent: deque[float] = deque(maxlen=RECENT_SAMPLES)
        self._rate_in_force = rate_in_force
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._slow_start = True
        self._bases: deque[tuple[float, float]] = deque()  # (when, window median)
        self._fastest: deque[tuple[float, float]] = deque()  # (when, window's fastest answer)
        self._first_answers = adaptive  # the first answers, on new connections: cold
        self._opened_at: float | None = None  # when the first sender came to the gate
        self._early_timer: asyncio.TimerHandle | None = None
        self._cold_window = adaptive  # ... and the first window of them, unless sized at once
        self._cap_windows = 0  # windows in which the cap, not the network, held senders back
        self._cap_rtt = 0.0
        self._new_window(clock())

    # --- the gate ------------------------------------------------------------------------

    async def acquire(self) -> None:
        if self._first_answers:
            self._grow_before_answers()
        if self.holders < self.limit and not self._waiters:
            self.holders += 1
            if self.holders == self.limit:  # no slot left for the next sender
                self._full += 1
            return
        self._full += 1
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._first_answers and self._early_timer is None:
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
        """No answer yet, so the answer time is at least the time since the first request:
        in flight may grow by EARLY_SHARE of the rate per second waited. The first answer then
        finds at most half the rate times its own answer time in flight: within 2 × rate ×
        the warm answer time as long as the cold first answer is no slower than 4 warm ones
        (at 20 ms they were 36-45 ms). Waiting with 4 in flight instead cost a whole answer
        time of sending: 4 % of a 6-s run at 250 ms."""
        rate = self._rate_in_force()
        if not rate:
            return  # unthrottled: slow start, from the first answers
        now = self._clock()
        if self._opened_at is None:
            self._opened_at = now
        waited = min(now - self._opened_at, EARLY_SECONDS)
        if EARLY_SHARE * rate * waited > self.limit:
            self._set_limit(EARLY_SHARE * rate * waited)

    def _early_tick(self) -> None:
        """While senders wait for the first answer, grow the limit as time passes."""
        self._early_timer = None
        if not self._first_answers or not self._waiters:
            return
        self._grow_before_answers()
        opened = self._opened_at
        if opened is not None and self._clock() - opened < EARLY_SECONDS:
            loop = asyncio.get_running_loop()
            self._early_timer = loop.call_later(EARLY_TICK, self._early_tick)

    # --- measurements --------------------------------------------------------------------

    def rate_waited(self, waited: bool) -> None:
        """Whether this request had to wait for the rate limit: then the rate binds."""
        self._requests += 1
        self._rate_waits += waited

    def sent(self) -> float:
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        return self._clock()

    def answered(self, started: float, *, overloaded: bool) -> None:
        self.in_flight -= 1
        now = self._clock()
        if overloaded:
            self._overloaded = True
        else:
            rtt = now - started
            self._samples.append(rtt)
            self.recent.append(rtt)
        if self._first_answers:
            self._first_step(now)
        elif now - self._window_start >= self._window_length() and (
            self._overloaded or len(self._samples) >= MIN_WINDOW_SAMPLES
        ):
            self._decide(now)

    def median_answer_time(self) -> float | None:
        return statistics.median(self.recent) if self.recent else None

    # --- decisions -----------------------------------------------------------------------

    def _window_length(self) -> float:
        typical = self._samples[len(self._samples) // 2] if self._samples else 0.0
        answer_times = 1 if self._slow_start else WINDOW_ANSWER_TIMES  # ramp up quickly
        return max(MIN_WINDOW_SECONDS, answer_times * typical)

    def _new_window(self, now: float) -> None:
        self._window_start = now
        self._samples: list[float] = []
        self._overloaded = False
        self._full = 0
        self._rate_waits = 0
        self._requests = 0

    def _first_step(self, now: float) -> None:
        """Little's law on the first answer, without headroom: a cold answer is no faster
        than a warm one, so this carries the rate and keeps (while the cold cost is below
        the answer time) within 2 × rate × the answer time; the warm windows after it add
        the headroom."""
        self._first_answers = False
        rate = self._rate_in_force()
        if not rate or not self._samples or self._samples[0] < EARLY_STEP_SECONDS:
            return  # the window goes on, to the first decision (unthrottled: slow start)
        self._remember_base(now, self._samples[0])
        self._remember_fastest(now)
        self._set_limit(max(self.limit, rate * self._samples[0]))
        self._cold_window = False
        self._new_window(now)

    def _decide(self, now: float) -> None:
        rtt = statistics.median(self._samples) if self._samples else None
        base = self._remember_base(now, rtt)
        fastest = self._remember_fastest(now)
        saturated = self._full > 0 and self._rate_waits <= RATE_BOUND_SHARE * max(self._requests, 1)
        if saturated and self.limit >= self.cap and rtt is not None:
            self._cap_windows += 1
            self._cap_rtt = rtt
        if self.adaptive:
            limit = self._next_limit(rtt, base, fastest, saturated)
            self._set_limit(self._cold_cap(limit, fastest))
        self._cold_window = False
        self._new_window(now)

    def _cold_cap(self, limit: float, fastest: float | None) -> float:
        """The first window's answers came while the process was starting (the reader
        filling the queue takes the loop's thread too): at 5000/s its fastest was 31 ms for
        a 20 ms server, and 1.6 × rate × that let 249 in flight for a bound of 200. So the
        first window sizes the limit by Little's law on its fastest answer, without headroom,
        as the first answer does; the warm windows after it add the headroom."""
        rate = self._rate_in_force()
        if not self._cold_window or fastest is None or not rate:
            return limit
        return min(limit, max(float(self.limit), rate * fastest))

    def _remember_base(self, now: float, rtt: float | None) -> float | None:
        if rtt is not None:
            self._bases.append((now, rtt))
        while self._bases and now - self._bases[0][0] > BASE_SECONDS:
            self._bases.popleft()
        return min(value for _, value in self._bases) if self._bases else None

    def _remember_fastest(self, now: float) -> float | None:
        if self._samples:
            self._fastest.append((now, min(self._samples)))
        while self._fastest and now - self._fastest[0][0] > BASE_SECONDS:
            self._fastest.popleft()
        return min(value for _, value in self._fastest) if self._fastest else None

    def _next_limit(
        self, rtt: float | None, base: float | None, fastest: float | None, saturated: bool
    ) -> float:
        limit = float(self.limit)
        if self._overloaded:
            self._slow_start = False
            return limit * BACKOFF_FACTOR
        if rtt is None or base is None or fastest is None:
            return limit
        rate = self._rate_in_force()
        # Little's law: what carries the rate in force at the answer time seen now, with
        # room; and never more than (about) twice what it takes at the fastest answer.
        most = max(1.0, math.ceil(MOST_IN_FLIGHT * rate * fastest)) if rate else math.inf
        need = min(max(1.0, HEADROOM * rate * rtt), most) if rate else 1.0
        if saturated and rtt > base * TOLERANCE:  # slower answers as load grows: it queues
            self._slow_start = False
            target = limit * TOLERANCE * base / rtt
            return min(max(1.0, limit - SMOOTHING * (limit - target)), most)
        if saturated:  # every sender busy, tokens to spare, answers as fast as at no load
            grown = limit * 2 if self._slow_start else limit + math.sqrt(limit)
            return min(max(grown, need), most)
        return min(max(limit, need), most)  # the rate binds: keep room to carry it

    def _set_limit(self, value: float) -> None:
        self.limit = max(1, min(self.cap, math.ceil(value)))
        self._wake()

    def bottleneck(self, rate: float, achieved: float) -> str | None:
        """One line when the cap held the run below the rate asked for, else None."""
        if not self._cap_windows or not rate or achieved >= 0.9 * rate or not self._cap_rtt:
            return None
        most = self.cap / self._cap_rtt
        return (
            f"cap {self.cap} reached at {self._cap_rtt * 1000:.0f} ms per answer, so at most "
            f"{most:,.0f} events/s; raise --concurrency (or use auto)."
        )
