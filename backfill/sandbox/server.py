"""A local Torque-compatible server: rehearse a backfill, test the sender, break it on purpose.

It speaks every envelope in `backfill.mapping.envelopes.APIS` at that envelope's path and
answers the way Torque does (202 / 400 / 401 / 403 / 429 with `{status, message}` bodies), so
a run against it exercises the same code paths as a run against Torque. On top of that it can inject
faults (error statuses, dropped connections before or after accepting, slow answers), all
drawn from `random.Random(seed)` so a test sees the same faults every time.

Accepted events go to an optional JSON Lines store, flushed per line, so tests can read what
"Torque" received. Counters and arrival times stay in memory for `stats()`: they are what an
end-to-end test asserts on (duplicates after lost answers, the peak rate the sender reached).

Used three ways: `serve()` for a blocking server (the CLI), `async with Sandbox(config)` in
the sender's own loop (`backfill run --sandbox`) and in tests, and `python -m backfill.sandbox`
as a separate process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import random
import signal
import ssl
import time
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiohttp import web

from backfill.errors import UsageError
from backfill.mapping.convert import type_of_column
from backfill.mapping.envelopes import APIS, Api, Event, json_type
from backfill.mapping.pubkey import pubkey_problem

if TYPE_CHECKING:
    from backfill.mapping.spec import Mapping as Mapping_
    from backfill.read.source import Source

FIELD_TYPES = ("string", "number", "boolean")
NAMED_FAULTS = ("reset-before", "reset-after", "slow", "429-no-retry-after")
RETRY_AFTER_FORMATS = ("seconds", "http-date")
MIN_MS_TIMESTAMP = 10**11  # 1973-03-03 in milliseconds, 5138 AD in seconds: smaller means seconds
STATS_PATH = "/_sandbox/stats"
LATENCY_JITTER = 0.2  # each answer takes latency × (1 ± this), uniformly
_SUCCESS = b'{"status":"SUCCESS","data":{"accepted":true}}'


@dataclass(frozen=True)
class EventSchema:
    """A custom event as created in Torque: its name and typed parameters."""

    event_name: str
    fields: dict[str, str]
    required: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "required", frozenset(self.required))
        bad = {name: kind for name, kind in self.fields.items() if kind not in FIELD_TYPES}
        if bad:
            raise UsageError(
                f"Schema {self.event_name!r}: field types {bad} are not one of {FIELD_TYPES}."
            )
        undeclared = sorted(self.required - self.fields.keys())
        if undeclared:
            raise UsageError(
                f"Schema {self.event_name!r}: required fields {undeclared} are not declared "
                f"in its fields; add them to fields or drop them from required."
            )


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox listens, what it accepts and which faults it injects."""

    host: str = "127.0.0.1"
    port: int = 8787  # 0 picks a free port; read it back from `Sandbox.url`
    key: str | None = None  # None accepts any non-empty key
    schemas: tuple[EventSchema, ...] = ()
    rate: float | None = None  # accepted events per second before answering 429
    retry_after_format: str = "seconds"
    fail_rate: float = 0.0  # shorthand for faults={"503": fail_rate}
    faults: Mapping[str, float] = field(default_factory=dict)
    slow_seconds: float = 2.0
    fault_first_n: int = 0  # faults only hit the first N requests; 0 means all of them
    seed: int = 0
    store: Path | None = None
    tls_cert: Path | None = None  # serve HTTPS with this certificate chain (PEM)...
    tls_key: Path | None = None  # ...and its private key (PEM)
    redirect_to: str | None = None  # answer every event with a redirect to this base URL
    redirect_status: int = 307
    fault_retry_after: int | None = None  # Retry-After of injected 429s (default 1) and 5xx
    latency: float = 0.0  # seconds each answer takes, ± LATENCY_JITTER
    capacity: int | None = None  # in flight beyond this, answers slow down in proportion

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("tls_cert and tls_key go together: give both, or neither.")
        if not 300 <= self.redirect_status < 400:
            raise UsageError(f"redirect_status must be a 3xx, not {self.redirect_status}.")
        if self.retry_after_format not in RETRY_AFTER_FORMATS:
            raise UsageError(
                f"retry_after_format {self.retry_after_format!r} is not one of "
                f"{RETRY_AFTER_FORMATS}."
            )
        if self.rate is not None and not self.rate > 0:
            raise UsageError(f"rate must be a positive number of events/second, not {self.rate}.")
        if self.fault_first_n < 0 or self.slow_seconds < 0 or self.latency < 0:
            raise UsageError("fault_first_n, slow_seconds and latency cannot be negative.")
        if self.capacity is not None and self.capacity < 1:
            raise UsageError(f"capacity must be at least 1 request in flight, not {self.capacity}.")
        table = self.fault_table()
        for kind, probability in table.items():
            if not _is_fault_kind(kind):
                raise UsageError(
                    f"Fault {kind!r} is not known; use an HTTP status from 400 to 599 "
                    f"or one of {', '.join(NAMED_FAULTS)}."
                )
            if not 0.0 <= probability <= 1.0:
                raise UsageError(f"Fault {kind!r} has probability {probability}; use 0 to 1.")
        if sum(table.values()) > 1.0 + 1e-9:
            raise UsageError(f"Fault probabilities add up to more than 1: {table}.")

    def fault_table(self) -> dict[str, float]:
        """`faults` with `fail_rate` folded in, in a fixed order so draws are reproducible."""
        table = {str(kind): float(p) for kind, p in self.faults.items()}
        if self.fail_rate:
            table["503"] = table.get("503", 0.0) + self.fail_rate
        return dict(sorted(table.items()))


def _is_fault_kind(kind: str) -> bool:
    return kind in NAMED_FAULTS or (kind.isdigit() and 400 <= int(kind) <= 599)


def _describe(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, (dict, list)) else ""
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{json_type(value)} {text}".rstrip()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; numbers must be finite")


def schema_from_mapping(mapping: Mapping_, source: Source | None = None) -> EventSchema:
    """The custom event a mapping describes, as Torque would hold it after its creation.

    A short-form field takes its type from the source's column (text in a CSV); without a
    source it is taken to be text. Fields that may be left out (`optional`) are not required.
    """
    fields: dict[str, str] = {}
    for spec in mapping.fields:
        fields[spec.name] = spec.type or _column_type(spec.column, source)
    required = frozenset(spec.name for spec in mapping.fields if not spec.optional)
    return EventSchema(mapping.event_name, fields, required)


def _column_type(column: str | None, source: Source | None) -> str:
    if column is None or source is None or column not in source.columns:
        return "string"
    return type_of_column(source.schema.field(column).type)


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise ValueError(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"body must be a JSON object, found {json_type(body)}")
    return body


def _event_problems(api: Api, event: Event) -> list[str]:
    """What Torque would reject in any event, whatever its schema."""
    problems = []
    stamp = event.timestamp
    if type(stamp) is not int:
        problems.append(
            f"body/timestamp must be an integer of milliseconds since the Unix epoch, "
            f"found {_describe(stamp)}"
        )
    elif stamp < MIN_MS_TIMESTAMP:
        problems.append(
            f"body/timestamp {stamp} looks like seconds, not milliseconds since the Unix epoch "
            f"(it would be before 1973-03-03); multiply seconds by 1000"
        )
    user_path = f"body/{api.user_key}/pubKey" if api.nested_user else f"body/{api.user_key}"
    problem = pubkey_problem(event.pubkey)
    if problem:
        problems.append(f"{user_path} is not a Solana public key: {problem}")
    if not isinstance(event.event_name, str) or not event.event_name:
        problems.append(
            f"body/{api.name_key} must be a non-empty string, found {_describe(event.event_name)}"
        )
    if not isinstance(event.data, dict):
        problems.append(f"body/{api.data_key} must be an object, found {_describe(event.data)}")
        return problems
    for name, value in event.data.items():
        if not isinstance(value, (str, int, float)):  # bool is an int: accepted here
            problems.append(
                f"body/{api.data_key}/{name} must be a string, number or boolean, "
                f"found {_describe(value)}"
            )
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"body/{api.data_key}/{name} must be a finite number, found {value}")
    return problems


def _schema_problems(api: Api, schema: EventSchema, data: dict[str, Any]) -> list[str]:
    """What Torque would reject for this event's declared structure."""
    problems = []
    for name, value in data.items():
        expected = schema.fields.get(name)
        found = json_type(value)
        if expected is None:
            problems.append(
                f"body/{api.data_key}/{name} is not a field of event {schema.event_name!r} "
                f"(fields: {', '.join(schema.fields) or 'none'})"
            )
        elif found != expected:
            problems.append(f"body/{api.data_key}/{name} must be a {expected}, found {found}")
    problems.extend(
        f"body/{api.data_key}/{name} Required" for name in sorted(schema.required - data.keys())
    )
    return problems


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a code Python does not name, e.g. a fault of "499"
        return "Error"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    code = _phrase(status).upper().replace(" ", "_").replace("-", "_")
    body = json.dumps({"status": code, "message": message})
    return web.Response(text=body, status=status, content_type="application/json", headers=headers)


def _timeline(
    arrivals: Sequence[float],
    loads: Sequence[int],
    answers: Sequence[float] = (),
    answer_seconds: Sequence[float] = (),
) -> list[dict[str, float]]:
    """Per second since the first request: requests, the most and mean in flight, and the
    mean time the requests that came in that second took to be answered."""
    seconds: dict[int, list[int]] = {}
    for moment, load in zip(arrivals, loads):
        seconds.setdefault(int(moment - arrivals[0]), []).append(load)
    took: dict[int, list[float]] = {}
    for moment, spent in zip(answers, answer_seconds):
        took.setdefault(max(0, int(moment - arrivals[0])), []).append(spent)
    return [
        {
            "second": second,
            "requests": len(v),
            "max_in_flight": max(v),
            "mean_in_flight": round(sum(v) / len(v), 1),
            "mean_answer_ms": round(1000 * _mean(took.get(second) or [0.0]), 1),
        }
        for second, v in sorted(seconds.items())
    ]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """Most timestamps in any half-open window [t, t + width); `times` must be sorted."""
    best = start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


class Sandbox:
    """The server: `async with Sandbox(config) as sandbox:` then send to `sandbox.url`."""

    __slots__ = (
        "_accepted",
        "_answer_seconds",
        "_answers",
        "_arrivals",
        "_connections",
        "_fault_table",
        "_faults",
        "_hashes",
        "_in_flight",
        "_jitter",
        "_key",
        "_loads",
        "_peak_in_flight",
        "_rejected",
        "_rng",
        "_runner",
        "_schemas",
        "_slow",
        "_stopping",
        "_store",
        "_url",
        "config",
    )

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._key = None if self.config.key is None else _key_bytes(self.config.key)
        self._schemas = {schema.event_name: schema for schema in self.config.schemas}
        self._fault_table = self.config.fault_table()
        self._rng = random.Random(self.config.seed)
        self._jitter = random.Random(self.config.seed + 1)  # apart, so faults stay the same
        self._in_flight = self._peak_in_flight = 0
        # Monotonic times, appended in order so they are already sorted for window scans.
        self._arrivals = array("d")
        self._loads = array("i")  # requests in flight at each arrival, this one included
        self._answers = array("d")  # when each answered request came in, in answer order
        self._answer_seconds = array("d")  # ... and how long it took to answer
        self._connections: set[Any] = set()  # client (host, port): one TLS handshake each
        self._accepted = array("d")
        self._hashes: set[bytes] = set()  # digests of accepted bodies, to count duplicates
        self._rejected: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._store: IO[str] | None = None
        self._stopping = asyncio.Event()
        self._slow: set[asyncio.Task[Any]] = set()
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("The sandbox is not listening; call start() first.")
        return self._url

    async def start(self) -> str:
        """Listen on the configured host and port; return the base URL."""
        if self._runner is not None:
            raise RuntimeError("The sandbox is already listening.")
        tls = self._tls_context()  # before listening: a bad certificate is a UsageError
        self._stopping.clear()
        app = web.Application()
        for api in APIS.values():
            app.router.add_post(api.path, self._handler(api))
        app.router.add_get(STATS_PATH, self._stats_handler)
        if self.config.store is not None:
            self._store = self.config.store.open("a", encoding="utf-8")
        # A short shutdown grace: in-flight "slow" answers are woken by `_stopping` anyway.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=tls)
        await site.start()
        port = self._runner.addresses[0][1]
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        self._url = f"{'https' if tls else 'http'}://{host}:{port}"
        return self._url

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None or self.config.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--tls-cert/--tls-key cannot be loaded: {exc}") from None
        return context

    async def stop(self) -> None:
        """Stop listening, wake slow answers, close the store; stats stay readable."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._slow:  # their clients may be gone, so aiohttp no longer waits for them
            await asyncio.wait(set(self._slow), timeout=2.0)
        if self._store is not None:
            self._store.close()
            self._store = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def stats(self) -> dict[str, Any]:
        """Counters for tests and people; status and fault keys are strings, as in JSON."""
        return {
            "requests": len(self._arrivals),
            "accepted": len(self._accepted),
            "duplicates": len(self._accepted) - len(self._hashes),
            "rejected_by_status": dict(sorted(self._rejected.items())),
            "faults_injected": dict(sorted(self._faults.items())),
            "max_requests_in_any_1s_window": _max_in_window(self._arrivals),
            "max_accepted_in_any_1s_window": _max_in_window(self._accepted),
            "max_in_flight": self._peak_in_flight,
            "connections": len(self._connections),
            "accepted_span_seconds": (
                self._accepted[-1] - self._accepted[0] if len(self._accepted) > 1 else 0.0
            ),
            "timeline": _timeline(self._arrivals, self._loads, self._answers, self._answer_seconds),
        }

    async def _stats_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def _handler(self, api: Api) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(api, request)

        return handle

    async def _handle(self, api: Api, request: web.Request) -> web.StreamResponse:
        self._in_flight += 1
        self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        self._loads.append(self._in_flight)
        if request.transport is not None:
            self._connections.add(request.transport.get_extra_info("peername"))
        came = time.monotonic()
        try:
            return await self._answer(api, request)
        finally:
            self._in_flight -= 1
            self._answers.append(came)
            self._answer_seconds.append(time.monotonic() - came)

    async def _answer(self, api: Api, request: web.Request) -> web.StreamResponse:
        self._arrivals.append(time.monotonic())
        if self.config.redirect_to is not None:
            location = self.config.redirect_to.rstrip("/") + request.path
            return self._count(
                web.Response(status=self.config.redirect_status, headers={"Location": location})
            )
        fault = self._draw_fault(len(self._arrivals) - 1)
        if fault is not None:
            self._faults[fault] += 1
            if fault == "reset-before":
                return _drop(request)
            if fault not in ("slow", "reset-after"):
                return self._count(self._fault_answer(fault))
        try:
            raw = await request.read()
        except ConnectionError:  # the client gave up: there is nobody left to answer
            return _drop(request)
        except web.HTTPRequestEntityTooLarge as exc:
            return self._count(_error(413, exc.text or "Request body too large"))
        if self.config.latency:
            await asyncio.sleep(self._answer_time())  # cheap: thousands a second
        if fault == "slow":  # the body is in: a client that times out may still be accepted
            await self._pause(self.config.slow_seconds)
        answer = _first_answer(
            lambda: self._check_key(api, request), self._check_rate, lambda: self._receive(api, raw)
        )
        self._count(answer)
        return _drop(request) if fault == "reset-after" else answer

    def _answer_time(self) -> float:
        """The latency with jitter, stretched when more requests are in flight than the
        capacity: a server that queues, so more load means slower answers, not more."""
        seconds = self.config.latency * (1 + LATENCY_JITTER * (2 * self._jitter.random() - 1))
        capacity = self.config.capacity
        if capacity is not None and self._in_flight > capacity:
            seconds *= self._in_flight / capacity
        return seconds

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short by `stop()`, which waits for these answers."""
        task = asyncio.current_task()
        assert task is not None
        self._slow.add(task)
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)
        finally:
            self._slow.discard(task)

    def _draw_fault(self, index: int) -> str | None:
        """One draw per request while faults apply, so a seed fixes the whole sequence."""
        if not self._fault_table or (
            self.config.fault_first_n and index >= self.config.fault_first_n
        ):
            return None
        draw, total = self._rng.random(), 0.0
        for kind, probability in self._fault_table.items():
            total += probability
            if draw < total:
                return kind
        return None

    def _fault_answer(self, kind: str) -> web.Response:
        if kind == "429-no-retry-after":
            return _error(429, "Rate limit exceeded")
        status = int(kind)
        wait = self.config.fault_retry_after
        if status == 429:
            return _error(429, "Rate limit exceeded", self._retry_after(wait or 1))
        headers = self._retry_after(wait) if wait is not None and status >= 500 else None
        return _error(status, f"Injected fault: {status} {_phrase(status)}", headers)

    def _check_key(self, api: Api, request: web.Request) -> web.Response | None:
        # Never echo or log the received key: the messages below are fixed on purpose.
        received = request.headers.get(api.key_header, "")
        if not received:
            return _error(401, "Missing API key")
        if self._key is not None and not hmac.compare_digest(_key_bytes(received), self._key):
            return _error(403, "Invalid API key")
        return None

    def _check_rate(self) -> web.Response | None:
        """429 when accepting one more would exceed `rate` in the trailing window."""
        rate = self.config.rate
        if rate is None:
            return None
        window = max(1.0, 1.0 / rate)  # below 1/s the window widens so 1 event still fits
        limit = max(1, math.floor(rate * window))
        now = time.monotonic()
        first = bisect_left(self._accepted, now - window)
        if len(self._accepted) - first < limit:
            return None
        wait = self._accepted[len(self._accepted) - limit] + window - now
        return _error(429, "Rate limit exceeded", self._retry_after(math.ceil(wait)))

    def _retry_after(self, seconds: int) -> dict[str, str]:
        seconds = max(1, seconds)
        if self.config.retry_after_format == "http-date":
            return {"Retry-After": formatdate(math.ceil(time.time()) + seconds, usegmt=True)}
        return {"Retry-After": str(seconds)}

    def _receive(self, api: Api, raw: bytes) -> web.Response:
        """Validate like Torque; accept and store when valid."""
        try:
            event = api.parse(_decode(raw))
        except ValueError as exc:
            return _error(400, str(exc))
        problems = _event_problems(api, event)
        if not problems and self._schemas:
            schema = self._schemas.get(event.event_name)
            if schema is None:
                return _error(400, "Event not found for this API key")
            problems = _schema_problems(api, schema, event.data)
        if problems:
            return _error(400, ", ".join(problems))
        self._accept(api, event)
        return web.Response(body=_SUCCESS, status=202, content_type="application/json")

    def _accept(self, api: Api, event: Event) -> None:
        self._accepted.append(time.monotonic())
        body = event.as_dict()
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        self._hashes.add(hashlib.blake2b(canonical.encode(), digest_size=16).digest())
        if self._store is not None:
            line = {"received_at": time.time(), "api": api.name, "event": body}
            self._store.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._store.flush()

    def _count(self, answer: web.Response) -> web.Response:
        if answer.status >= 300:
            self._rejected[str(answer.status)] += 1
        return answer


def _first_answer(*checks: Callable[[], web.Response | None]) -> web.Response:
    """The first check that answers. Not `a or b`: before aiohttp 3.10 a Response is an
    empty mapping, hence falsy."""
    for check in checks:
        answer = check()
        if answer is not None:
            return answer
    raise AssertionError("the last check always answers")


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _drop(request: web.Request) -> web.Response:
    """Close the connection with no answer; aiohttp ignores the response it cannot write."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


def serve(
    config: SandboxConfig,
    on_ready: Callable[[str], None] | None = None,
    run: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]] = asyncio.run,
) -> dict[str, Any]:
    """Run the sandbox until SIGINT or SIGTERM; return the final stats. `run` is the event
    loop's runner (the command passes uvloop's, as the sender uses)."""
    return run(_serve(config, on_ready))


async def _serve(config: SandboxConfig, on_ready: Callable[[str], None] | None) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:  # before listening, so a signal right after on_ready is not lost
        loop.add_signal_handler(sig, stopped.set)
    try:
        async with Sandbox(config) as sandbox:
            if on_ready is not None:
                on_ready(sandbox.url)
            await stopped.wait()
        return sandbox.stats()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _schemas_from_json(text: str) -> tuple[EventSchema, ...]:
    """`[{"event_name": ..., "fields": {name: type}, "required": [...]}, ...]`."""
    return tuple(
        EventSchema(item["event_name"], dict(item["fields"]), frozenset(item.get("required", ())))
        for item in json.loads(text)
    )
