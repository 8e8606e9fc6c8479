"""How the gate's limit moves: the sizing rule, apart from the gate's slots and waiters.

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

import math
import statistics
from collections import deque
from collections.abc import Callable

INITIAL_LIMIT = 4  # small: the first answers say how far the server is
EARLY_SHARE = 0.5  # before any answer, in flight grows by this share of the rate each second
EARLY_SECONDS = 0.5  # ... for this long at most: a server that never answers is not flooded
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


class Window:
    """What the gate saw since the last decision: the input of the next one."""

    __slots__ = ("full", "overloaded", "rate_waits", "requests", "samples", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.samples: list[float] = []  # answer times; overloaded answers are left out
        self.overloaded = False  # a 429, a 5xx or a failed connection came back
        self.full = 0  # senders that found no slot left
        self.rate_waits = 0  # requests that had to wait for the rate limit ...
        self.requests = 0  # ... out of this many

    def saturated(self) -> bool:
        """Senders found the gate full while the rate limit had tokens to spare."""
        return self.full > 0 and self.rate_waits <= RATE_BOUND_SHARE * max(self.requests, 1)


class Lowest:
    """The lowest value seen in the last BASE_SECONDS: no answer comes faster than the
    network, so the lowest is the closest to the network's own answer time."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: deque[tuple[float, float]] = deque()  # (when, value)

    def add(self, now: float, value: float | None) -> float | None:
        """Note `value` (None: nothing new); the lowest of the last BASE_SECONDS."""
        seen = self._seen
        if value is not None:
            seen.append((now, value))
        while seen and now - seen[0][0] > BASE_SECONDS:
            seen.popleft()
        return min(lowest for _, lowest in seen) if seen else None


class CapNote:
    """Whether the cap, not the network, held senders back: one line for the summary."""

    __slots__ = ("_rtt", "_windows", "cap")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._windows = 0  # windows in which the cap, not the network, held senders back
        self._rtt = 0.0

    def observe(self, saturated: bool, limit: int, rtt: float | None) -> None:
        if saturated and limit >= self.cap and rtt is not None:
            self._windows += 1
            self._rtt = rtt

    def bottleneck(self, rate: float, achieved: float) -> str | None:
        """One line when the cap held the run below the rate asked for, else None."""
        if not self._windows or not rate or achieved >= 0.9 * rate or not self._rtt:
            return None
        most = self.cap / self._rtt
        return (
            f"cap {self.cap} reached at {self._rtt * 1000:.0f} ms per answer, so at most "
            f"{most:,.0f} events/s; raise --concurrency (or use auto)."
        )


class LimitSizing:
    """Where the gate's limit goes next (the gate applies it). With a fixed cap it only
    notes the windows in which the cap held the run back, for `bottleneck()`."""

    def __init__(
        self,
        cap: int,
        *,
        adaptive: bool,
        rate_in_force: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        self.cap = cap
        self.adaptive = adaptive
        self.first_answers = adaptive  # the first answers, on new connections: cold
        self._rate_in_force = rate_in_force
        self._clock = clock
        self._slow_start = True
        self._bases = Lowest()  # of window medians: the no-load answer time
        self._fastest = Lowest()  # of each window's fastest answer
        self._opened_at: float | None = None  # when the first sender came to the gate
        self._cold_window = adaptive  # ... and the first window of them, unless sized at once
        self.cap_note = CapNote(cap)
        self.window = Window(clock())

    def initial_limit(self) -> int:
        return min(self.cap, INITIAL_LIMIT) if self.adaptive else self.cap

    # --- before the first answer ---------------------------------------------------------

    def before_answers(self, limit: int) -> float | None:
        """No answer yet, so the answer time is at least the time since the first request:
        in flight may grow by EARLY_SHARE of the rate per second waited. The first answer then
        finds at most half the rate times its own answer time in flight: within 2 × rate ×
        the warm answer time as long as the cold first answer is no slower than 4 warm ones
        (at 20 ms they were 36-45 ms). Waiting with 4 in flight instead cost a whole answer
        time of sending: 4 % of a 6-s run at 250 ms. None: the limit stays."""
        rate = self._rate_in_force()
        if not rate:
            return None  # unthrottled: slow start, from the first answers
        now = self._clock()
        if self._opened_at is None:
            self._opened_at = now
        waited = min(now - self._opened_at, EARLY_SECONDS)
        if EARLY_SHARE * rate * waited > limit:
            return EARLY_SHARE * rate * waited
        return None

    def still_early(self) -> bool:
        """Whether time alone may still grow the limit (EARLY_SECONDS since the first)."""
        opened = self._opened_at
        return opened is not None and self._clock() - opened < EARLY_SECONDS

    # --- decisions -----------------------------------------------------------------------

    def answered(self, now: float, rtt: float | None, limit: int) -> float | None:
        """One answer came back (`rtt` None: overloaded); the new limit, or None to keep it."""
        window = self.window
        if rtt is None:
            window.overloaded = True
        else:
            window.samples.append(rtt)
        if self.first_answers:
            return self._first_step(now, limit)
        if now - window.start >= self._window_length() and (
            window.overloaded or len(window.samples) >= MIN_WINDOW_SAMPLES
        ):
            return self._decide(now, limit)
        return None

    def _window_length(self) -> float:
        samples = self.window.samples
        typical = samples[len(samples) // 2] if samples else 0.0
        answer_times = 1 if self._slow_start else WINDOW_ANSWER_TIMES  # ramp up quickly
        return max(MIN_WINDOW_SECONDS, answer_times * typical)

    def _first_step(self, now: float, limit: int) -> float | None:
        """Little's law on the first answer, without headroom: a cold answer is no faster
        than a warm one, so this carries the rate and keeps (while the cold cost is below
        the answer time) within 2 × rate × the answer time; the warm windows after it add
        the headroom."""
        self.first_answers = False
        rate = self._rate_in_force()
        samples = self.window.samples
        if not rate or not samples or samples[0] < EARLY_STEP_SECONDS:
            return None  # the window goes on, to the first decision (unthrottled: slow start)
        self._bases.add(now, samples[0])
        self._fastest.add(now, min(samples))
        self._cold_window = False
        self.window = Window(now)
        return max(limit, rate * samples[0])

    def _decide(self, now: float, limit: int) -> float | None:
        window = self.window
        rtt = statistics.median(window.samples) if window.samples else None
        base = self._bases.add(now, rtt)
        fastest = self._fastest.add(now, min(window.samples) if window.samples else None)
        saturated = window.saturated()
        self.cap_note.observe(saturated, limit, rtt)
        decided = None
        if self.adaptive:
            wanted = self._next_limit(float(limit), rtt, base, fastest, saturated)
            decided = self._cold_cap(wanted, fastest, limit)
        self._cold_window = False
        self.window = Window(now)
        return decided

    def _cold_cap(self, wanted: float, fastest: float | None, limit: int) -> float:
        """The first window's answers came while the process was starting (the reader
        filling the queue takes the loop's thread too): at 5000/s its fastest was 31 ms for
        a 20 ms server, and 1.6 × rate × that let 249 in flight for a bound of 200. So the
        first window sizes the limit by Little's law on its fastest answer, without headroom,
        as the first answer does; the warm windows after it add the headroom."""
        rate = self._rate_in_force()
        if not self._cold_window or fastest is None or not rate:
            return wanted
        return min(wanted, max(float(limit), rate * fastest))

    def _next_limit(
        self,
        limit: float,
        rtt: float | None,
        base: float | None,
        fastest: float | None,
        saturated: bool,
    ) -> float:
        if self.window.overloaded:
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
