"""Delivering one event body: rate limit, retries, backoff, and what each answer means.

The sender knows nothing of files or mappings: it takes bytes and says how they fared. It
talks through a `Poster`, the one seam for tests: `wire.WirePoster` in production (the
client layer is the cost at thousands of events a second, so it is a lean one), and
`HttpxPoster` around any `httpx.AsyncBaseTransport`, so unit tests use `httpx.MockTransport`.

Retry decisions look at the exception class (see `errors`), never at message text:
401/403, a 3xx (never followed) and a certificate that does not verify stop the run; other
4xx are final for the row; 408/425/429, 5xx, timeouts and dropped connections are retried
with full-jitter exponential backoff. `Retry-After` (on any status) pauses every sender; a
429 also slows the whole run down through the shared `AdaptiveLimiter`, and is not a failed
attempt: 429s are bounded per row by time (`rate_limit_budget`), not by `max_retries`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from aiolimiter import AsyncLimiter

from backfill.errors import (
    AuthRejected,
    EndpointRefused,
    EventRejected,
    RateLimited,
    RedirectRefused,
    SendError,
    TransientSendError,
)
from backfill.send.gate import ConcurrencyGate

if TYPE_CHECKING:
    import httpx

DEFAULT_RATE = 100.0
DEFAULT_CONCURRENCY = 16
DEFAULT_MAX_RETRIES = 6
DEFAULT_TIMEOUT = 30.0
DEFAULT_RATE_LIMIT_BUDGET = 1800.0  # seconds a row may spend being answered 429
SLOW_DOWN_STATUSES = frozenset({408, 425, 429})
AUTH_STATUSES = frozenset({401, 403})
_DELAY_SECONDS = re.compile(r"^[0-9]+(\.[0-9]+)?$")  # RFC 9110 says digits; some send 1.5
LONG_RETRY_AFTER = 300.0  # a server asking for longer is told to the user (it may be broken)
MAX_RETRY_AFTER = 7 * 86400.0  # beyond a week the value is nonsense: read as a week
CONNECT_FAILED = "connect failed"  # the kind that says the server is not there at all
RATE_LIMITED = "rate limited"  # the kind of a row whose 429s outlasted its budget
BURST_SECONDS = 0.03  # the limiter's bucket holds this much time's worth of requests,
MIN_BURST = 5  # but at least this many, or LOW_RATE_BURST_SECONDS' worth if that is fewer:
LOW_RATE_BURST_SECONDS = 0.05  # a bucket of one loses the time each late wake-up costs
WAKE_UP_SECONDS = 0.002  # tokens handed to waiting senders at once: this long's worth
RECOVERY_INTERVAL = 1.0
RECOVERY_FACTOR = 1.25


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


class Reply(NamedTuple):  # NamedTuples: made for every request, and cheaper than dataclasses
    status: int
    headers: Mapping[str, str]
    text: str


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


# --- answers -------------------------------------------------------------------------------


def server_message(reply: Reply) -> str:
    """The `message` of Torque's error envelope, or the start of whatever came back."""
    try:
        data = json.loads(reply.text)
    except ValueError:
        return reply.text.strip()
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return reply.text.strip()


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds to wait: delay-seconds (digits) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.match(value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def check_reply(reply: Reply) -> int:
    """Raise the `SendError` subclass that says what to do next; the status if accepted."""
    status = reply.status
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        location = reply.headers.get("location") or "(no Location header)"
        raise RedirectRefused(
            f"the endpoint answered HTTP {status}, a redirect to {location}. backfill never "
            "follows redirects: the API key would travel to another address, and a redirected "
            "POST delivers nothing. Check --endpoint.",
            status=status,
        )
    message = server_message(reply)
    described = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    retry_after = retry_after_seconds(reply.headers.get("retry-after"))
    if status in AUTH_STATUSES:
        raise AuthRejected(
            f"the server refused the API key ({described}); check TORQUE_API_KEY "
            "and that the key belongs to this endpoint and --api.",
            status=status,
        )
    if status in SLOW_DOWN_STATUSES:
        raise RateLimited(described, status=status, retry_after=retry_after)
    if status >= 500:
        raise TransientSendError(described, status=status, retry_after=retry_after)
    raise EventRejected(message or described, status=status)


# --- the rate limit ------------------------------------------------------------------------


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
                most = min(len(waiting), int(rate * WAKE_UP_SECONDS), int(limiter.max_rate))
                amount = max(1, most)  # never more than the bucket holds: aiolimiter refuses
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


# --- retries -------------------------------------------------------------------------------


def backoff_delay(attempt: int, policy: SendPolicy, rng: random.Random) -> float:
    """Full jitter: uniform between 0 and the exponential ceiling for this attempt."""
    ceiling = min(policy.backoff_max, policy.backoff_base * 2 ** (attempt - 1))
    return rng.uniform(0, ceiling)


class Sender:
    """Sends bodies until accepted, finally rejected, or out of retries (or 429 budget).

    Every wait between attempts is an `await` a stopping run may cancel: `on_the_wire`
    holds the tasks whose request is out, the only ones a first Ctrl-C waits for."""

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
        self.longest_retry_after = 0.0
        self.on_the_wire: set[asyncio.Task[Any]] = set()
        self._delivering: set[asyncio.Task[Any]] = set()
        self._interrupted: set[asyncio.Task[Any]] = set()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_notice = on_notice

    async def deliver(
        self,
        body: bytes,
        give_up: Callable[[], bool] = lambda: False,
        on_wire: Callable[[], None] | None = None,
    ) -> Delivery:
        """Raises `EndpointRefused` (the whole run must stop); every other outcome is returned.

        `give_up` is asked before each retry: an interrupted run does not start new
        attempts, and the row stays unsent (so `--resume` sends it). `interrupt_waits` ends
        a delivery that is waiting (backoff, Retry-After, rate limit) the same way.
        `on_wire` is called just before the first attempt leaves, past the gate and the
        rate limit: the journal's mark that this event's fate is unknown until answered."""
        task = asyncio.current_task()
        assert task is not None
        self._delivering.add(task)
        try:
            return await self._deliver(body, give_up, on_wire)
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
        """End every delivery that is waiting rather than on the wire (a first Ctrl-C)."""
        for task in self._delivering - self.on_the_wire:
            if task not in self._interrupted:
                self._interrupted.add(task)
                task.cancel()

    async def _deliver(
        self, body: bytes, give_up: Callable[[], bool], on_wire: Callable[[], None] | None
    ) -> Delivery:
        sent = failures = limited = 0
        limited_since: float | None = None
        while True:
            if sent and give_up():
                return Delivery(False, sent, kind="interrupted")
            sent += 1
            try:
                status = check_reply(await self._post(body, on_wire if sent == 1 else None))
            except EndpointRefused:
                raise
            except EventRejected as exc:
                return Delivery(False, sent, exc.status, exc.kind, str(exc))
            except TransientSendError as exc:
                if exc.status == 429:  # slow down, not a failure: bounded by time instead
                    limited += 1
                    now = self._clock()
                    limited_since = now if limited_since is None else limited_since
                    wait = self._wait_before_retry(exc, limited)
                    if now + wait - limited_since > self.policy.rate_limit_budget:
                        return Delivery(False, sent, 429, RATE_LIMITED, self._spent(exc, sent))
                else:
                    failures += 1
                    if failures > self.policy.max_retries:
                        return Delivery(False, sent, exc.status, exc.kind, _gave_up(exc, sent))
                    wait = self._wait_before_retry(exc, failures)
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
            "longest_retry_after": self.longest_retry_after,
            "concurrency_note": note or "",
        }

    def _rate_in_force(self) -> float:
        return self.limiter.rate

    async def _post(self, body: bytes, on_wire: Callable[[], None] | None = None) -> Reply:
        """One request through the concurrency gate, then the rate limit, then the wire."""
        gate = self.gate
        await gate.acquire()
        try:
            gate.rate_waited(await self.limiter.acquire())
            if on_wire is not None:
                on_wire()
            task = asyncio.current_task()
            wire = self.on_the_wire
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

    def _wait_before_retry(self, exc: TransientSendError, attempt: int) -> float:
        if isinstance(exc, RateLimited):
            self.limiter.slow_down(None)
        if exc.retry_after is None:
            return backoff_delay(attempt, self.policy, self._rng)
        self._honour_retry_after(exc)
        return exc.retry_after * (1 + 0.1 * self._rng.random())

    def _honour_retry_after(self, exc: TransientSendError) -> None:
        """Pause every sender for as long as the server asked; say so when that is long."""
        seconds = exc.retry_after or 0.0
        extended = self.limiter.pause(seconds)
        if seconds > self.longest_retry_after:
            self.longest_retry_after = seconds
        if extended and seconds > LONG_RETRY_AFTER and self._on_notice is not None:
            self._on_notice(
                f"The server asked to wait {_duration(seconds)} before sending again "
                f"(HTTP {exc.status}, Retry-After). Waiting as asked; Ctrl-C stops, and "
                "--resume continues later."
            )

    def _spent(self, exc: SendError, attempts: int) -> str:
        budget = self.policy.rate_limit_budget
        return (
            f"{exc} (rate limited for more than {_duration(budget)}, the --rate-limit-budget; "
            f"{attempts} attempts)"
        )


def _gave_up(exc: SendError, attempts: int) -> str:
    return f"{exc} (gave up after {attempts} attempts)"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- posters -------------------------------------------------------------------------------


class HttpxPoster:
    """POSTs through an httpx transport: `httpx.MockTransport` in tests, or any other."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        policy: SendPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        import httpx  # only here: production sends with wire.py; httpx costs 0.1 s to import

        self._httpx = httpx
        self._url = httpx.URL(url)
        self._headers = dict(headers)
        self._timeout = policy.timeout
        limits = httpx.Limits(max_connections=policy.concurrency)
        self._transport = transport or httpx.AsyncHTTPTransport(limits=limits)

    async def post(self, body: bytes) -> Reply:
        httpx = self._httpx
        request = httpx.Request("POST", self._url, headers=self._headers, content=body)
        timeout = {"connect": self._timeout, "read": self._timeout, "write": self._timeout}
        request.extensions["timeout"] = {**timeout, "pool": self._timeout}
        try:
            response = await asyncio.wait_for(
                self._transport.handle_async_request(request), self._timeout
            )
            await response.aread()
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise TransientSendError("no answer within the timeout", kind="timeout") from None
        except httpx.RemoteProtocolError:
            raise TransientSendError(
                "the server closed the connection without answering", kind="disconnected"
            ) from None
        except httpx.ConnectError:
            raise TransientSendError(
                f"cannot connect to {self._url.host}", kind=CONNECT_FAILED
            ) from None
        except httpx.TransportError as exc:
            raise TransientSendError(
                f"the connection failed ({type(exc).__name__})", kind="connection error"
            ) from None
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Reply(response.status_code, headers, response.text)

    async def aclose(self) -> None:
        await self._transport.aclose()
