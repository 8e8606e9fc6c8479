"""Delivering one event body: rate limit, retries, backoff, and what each answer means.

The sender knows nothing of files or mappings: it takes bytes and says how they fared. It
talks through a `Poster`, the one seam for tests: `AiohttpPoster` in production (the client
layer is the cost at thousands of events a second, and aiohttp's is the lightest), and
`HttpxPoster` around any `httpx.AsyncBaseTransport`, so unit tests use `httpx.MockTransport`.

Retry decisions look at the exception class (see `errors`), never at message text:
401/403 stop the run; other 4xx are final for the row; 408/425/429, 5xx, timeouts and
dropped connections are retried with full-jitter exponential backoff, and a 429 slows the
whole run down through the shared `AdaptiveLimiter`, not just the one request.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from aiolimiter import AsyncLimiter

from backfill.errors import (
    AuthRejected,
    EventRejected,
    RateLimited,
    SendError,
    TransientSendError,
)

if TYPE_CHECKING:
    import httpx

DEFAULT_RATE = 100.0
DEFAULT_CONCURRENCY = 16
DEFAULT_MAX_RETRIES = 6
DEFAULT_TIMEOUT = 30.0
SLOW_DOWN_STATUSES = frozenset({408, 425, 429})
AUTH_STATUSES = frozenset({401, 403})
_DELAY_SECONDS = re.compile(r"^[0-9]+(\.[0-9]+)?$")  # RFC 9110 says digits; some send 1.5
MAX_RETRY_AFTER = 300.0  # a server asking for longer is more likely broken than busy
CONNECT_FAILED = "connect failed"  # the kind that says the server is not there at all
BURST_SECONDS = 0.05  # the limiter's bucket holds this much time's worth of requests
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

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError(f"rate must be 0 (no limit) or positive; got {self.rate}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1; got {self.concurrency}")
        if self.max_retries < 0:
            raise ValueError(f"max retries must be 0 or more; got {self.max_retries}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive; got {self.timeout}")
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
    message = server_message(reply)
    described = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    if status in AUTH_STATUSES:
        raise AuthRejected(
            f"the server refused the API key ({described}); check TORQUE_API_KEY "
            "and that the key belongs to this endpoint and --api.",
            status=status,
        )
    if status in SLOW_DOWN_STATUSES:
        retry_after = retry_after_seconds(reply.headers.get("retry-after"))
        raise RateLimited(described, status=status, retry_after=retry_after)
    if status >= 500:
        raise TransientSendError(described, status=status)
    raise EventRejected(message or described, status=status)


# --- the rate limit ------------------------------------------------------------------------


class AdaptiveLimiter:
    """A leaky bucket shared by every request, retries included, that backs off on 429.

    The bucket is small (BURST_SECONDS of the rate) so that no one-second window sees much
    more than the rate. On a 429 the rate halves (at most once a second, since a burst of
    429s describes one overload) and `Retry-After` pauses every sender; after that the rate
    climbs back by RECOVERY_FACTOR each second of success, up to the user's `--rate`.
    """

    __slots__ = (
        "_clock",
        "_last_change",
        "_limiter",
        "_recent",
        "_recent_start",
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

    @staticmethod
    def _bucket(rate: float) -> AsyncLimiter | None:
        if not rate:
            return None
        burst = max(1.0, rate * BURST_SECONDS)
        return AsyncLimiter(burst, burst / rate)

    async def acquire(self) -> None:
        while True:
            now = self._clock()
            if now < self.paused_until:
                await asyncio.sleep(self.paused_until - now)
                continue
            limiter = self._limiter
            if limiter is not None:
                await limiter.acquire()
                now = self._clock()
                if now < self.paused_until:  # a 429 paused everyone while this one waited
                    continue
            self._count(now)
            return

    def _count(self, now: float) -> None:
        """Requests in the current one-second window: what "halve" means with no --rate."""
        if self._recent == 0 or now - self._recent_start >= 1.0:
            self._recent, self._recent_start = 0, now
        self._recent += 1

    def slow_down(self, retry_after: float | None) -> None:
        now = self._clock()
        if retry_after:
            self.paused_until = max(self.paused_until, now + retry_after)
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


# --- retries -------------------------------------------------------------------------------


def backoff_delay(attempt: int, policy: SendPolicy, rng: random.Random) -> float:
    """Full jitter: uniform between 0 and the exponential ceiling for this attempt."""
    ceiling = min(policy.backoff_max, policy.backoff_base * 2 ** (attempt - 1))
    return rng.uniform(0, ceiling)


class Sender:
    """Sends bodies until accepted, finally rejected, or out of retries."""

    def __init__(
        self,
        poster: Poster,
        policy: SendPolicy,
        limiter: AdaptiveLimiter | None = None,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.poster = poster
        self.policy = policy
        self.limiter = limiter or AdaptiveLimiter(policy.rate)
        self.retries = 0
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def deliver(self, body: bytes, give_up: Callable[[], bool] = lambda: False) -> Delivery:
        """Raises `AuthRejected` (the whole run must stop); every other outcome is returned.

        `give_up` is asked before each retry: an interrupted run does not start new
        attempts, and the row stays unsent (so `--resume` sends it)."""
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1 and give_up():
                return Delivery(False, attempt - 1, kind="interrupted")
            await self.limiter.acquire()
            try:
                status = check_reply(await self.poster.post(body))
            except (AuthRejected, EventRejected) as exc:
                if isinstance(exc, AuthRejected):
                    raise
                return Delivery(False, attempt, exc.status, exc.kind, str(exc))
            except TransientSendError as exc:
                if attempt > self.policy.max_retries:
                    return Delivery(False, attempt, exc.status, exc.kind, _gave_up(exc, attempt))
                await self._sleep(self._wait_before_retry(exc, attempt))
                self.retries += 1
                continue
            self.limiter.on_success()
            return Delivery(True, attempt, status)

    def _wait_before_retry(self, exc: TransientSendError, attempt: int) -> float:
        if isinstance(exc, RateLimited):
            self.limiter.slow_down(exc.retry_after)
            if exc.retry_after is not None:
                return exc.retry_after * (1 + 0.1 * self._rng.random())
        return backoff_delay(attempt, self.policy, self._rng)


def _gave_up(exc: SendError, attempts: int) -> str:
    return f"{exc} (gave up after {attempts} attempts)"


# --- posters -------------------------------------------------------------------------------


class AiohttpPoster:
    """POSTs through one aiohttp session whose connection pool matches the concurrency."""

    def __init__(self, url: str, headers: Mapping[str, str], policy: SendPolicy) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._url = url
        connector = aiohttp.TCPConnector(limit=policy.concurrency, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=policy.timeout),
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": "backfill", **headers},  # set once, not merged per request
        )

    async def post(self, body: bytes) -> Reply:
        aiohttp = self._aiohttp
        try:
            async with self._session.post(self._url, data=body) as reply:
                raw = await reply.read()
                # An accepted event's body is never looked at: skip decoding it.
                text = raw.decode("utf-8", "replace") if reply.status >= 300 else ""
                return Reply(reply.status, reply.headers, text)
        except asyncio.TimeoutError:
            raise TransientSendError("no answer within the timeout", kind="timeout") from None
        except aiohttp.ServerDisconnectedError:
            raise TransientSendError(
                "the server closed the connection without answering", kind="disconnected"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise TransientSendError(
                f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc})",
                kind=CONNECT_FAILED,
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientSendError(
                f"the connection failed ({type(exc).__name__})", kind="connection error"
            ) from None

    async def aclose(self) -> None:
        await self._session.close()


class HttpxPoster:
    """POSTs through an httpx transport: `httpx.MockTransport` in tests, or any other."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        policy: SendPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        import httpx  # only here: production sends with aiohttp, and httpx costs 0.1 s to import

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
