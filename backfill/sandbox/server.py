"""A local Torque-compatible server: rehearse a backfill, test the sender, break it on purpose.

It speaks every envelope in `backfill.mapping.envelopes.APIS` at that envelope's path and
answers the way Torque does (202 / 400 / 401 / 403 / 429 with `{status, message}` bodies), so
a run against it exercises the same code paths as a run against Torque. On top of that it can inject
faults (error statuses, dropped connections before or after accepting, slow answers), all
drawn from `random.Random(seed)` so a test sees the same faults every time (`faults`).

Accepted events go to an optional JSON Lines store, flushed per line, so tests can read what
"Torque" received. Counters and arrival times stay in memory for `stats()` (`traffic`): they
are what an end-to-end test asserts on (duplicates after lost answers, the peak rate the
sender reached). What Torque accepts is `schemas`; the set-up, `config`.

Used three ways: `serve()` for a blocking server (the CLI), `async with Sandbox(config)` in
the sender's own loop (`backfill run --sandbox`) and in tests, and `python -m backfill.sandbox`
as a separate process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import signal
import ssl
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Coroutine
from typing import IO, Any

from aiohttp import web

from backfill.errors import UsageError
from backfill.mapping.envelopes import APIS, Api, Event
from backfill.sandbox.config import SandboxConfig
from backfill.sandbox.faults import Faults
from backfill.sandbox.replies import SUCCESS, drop, error, retry_after
from backfill.sandbox.schemas import accepted_event
from backfill.sandbox.traffic import Traffic

STATS_PATH = "/_sandbox/stats"


class Sandbox:
    """The server: `async with Sandbox(config) as sandbox:` then send to `sandbox.url`.

    It listens and stops; its `Responder` answers each request."""

    __slots__ = ("_responder", "_runner", "_url", "config")

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._responder = Responder(self.config)
        self._runner: web.AppRunner | None = None
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
        tls = _tls_context(self.config)  # before listening: a bad certificate is a UsageError
        self._responder.open()
        app = web.Application()
        for api in APIS.values():
            app.router.add_post(api.path, self._responder.handler(api))
        app.router.add_get(STATS_PATH, self._stats_handler)
        # A short shutdown grace: in-flight "slow" answers are woken by `stop()` anyway.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=tls)
        await site.start()
        port = self._runner.addresses[0][1]
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        self._url = f"{'https' if tls else 'http'}://{host}:{port}"
        return self._url

    async def stop(self) -> None:
        """Stop listening, wake slow answers, close the store; stats stay readable."""
        self._responder.wake_slow_answers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._responder.close()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def stats(self) -> dict[str, Any]:
        """Counters for tests and people; status and fault keys are strings, as in JSON."""
        return self._responder.traffic.stats(self._responder.faults.injected)

    async def _stats_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())


def _tls_context(config: SandboxConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--tls-cert/--tls-key cannot be loaded: {exc}") from None
    return context


class Responder:
    """Answers each request as Torque would (key, rate, validation), faults on top, and
    keeps the traffic and the store of accepted events."""

    __slots__ = ("_key", "_schemas", "_slow", "_stopping", "_store", "config", "faults", "traffic")

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.faults = Faults(config)
        self.traffic = Traffic()
        self._key = None if config.key is None else _key_bytes(config.key)
        self._schemas = {schema.event_name: schema for schema in config.schemas}
        self._store: IO[str] | None = None
        self._stopping = asyncio.Event()
        self._slow: set[asyncio.Task[Any]] = set()

    def open(self) -> None:
        """Ready to answer: slow answers take their time again; the store is open."""
        self._stopping.clear()
        if self.config.store is not None:
            self._store = self.config.store.open("a", encoding="utf-8")

    def wake_slow_answers(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """After the server stopped: wait for the slow answers, close the store."""
        if self._slow:  # their clients may be gone, so aiohttp no longer waits for them
            await asyncio.wait(set(self._slow), timeout=2.0)
        if self._store is not None:
            self._store.close()
            self._store = None

    def handler(self, api: Api) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(api, request)

        return handle

    async def _handle(self, api: Api, request: web.Request) -> web.StreamResponse:
        came = self.traffic.came(request.transport)
        try:
            return await self._answer(api, request)
        finally:
            self.traffic.answered(came)

    async def _answer(self, api: Api, request: web.Request) -> web.StreamResponse:
        arrivals = self.traffic.arrivals
        arrivals.append(time.monotonic())
        if self.config.redirect_to is not None:
            location = self.config.redirect_to.rstrip("/") + request.path
            return self._count(
                web.Response(status=self.config.redirect_status, headers={"Location": location})
            )
        fault = self.faults.draw(len(arrivals) - 1)
        if fault == "reset-before":
            return drop(request)
        if fault is not None and fault not in ("slow", "reset-after"):
            return self._count(self.faults.answer(fault))
        try:
            raw = await request.read()
        except ConnectionError:  # the client gave up: there is nobody left to answer
            return drop(request)
        except web.HTTPRequestEntityTooLarge as exc:
            return self._count(error(413, exc.text or "Request body too large"))
        if self.config.latency:
            await asyncio.sleep(self.faults.answer_time(self.traffic.in_flight))  # cheap
        if fault == "slow":  # the body is in: a client that times out may still be accepted
            await self._pause(self.config.slow_seconds)
        answer = _first_answer(
            lambda: self._check_key(api, request), self._check_rate, lambda: self._receive(api, raw)
        )
        self._count(answer)
        return drop(request) if fault == "reset-after" else answer

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

    def _check_key(self, api: Api, request: web.Request) -> web.Response | None:
        # Never echo or log the received key: the messages below are fixed on purpose.
        received = request.headers.get(api.key_header, "")
        if not received:
            return error(401, "Missing API key")
        if self._key is not None and not hmac.compare_digest(_key_bytes(received), self._key):
            return error(403, "Invalid API key")
        return None

    def _check_rate(self) -> web.Response | None:
        """429 when accepting one more would exceed `rate` in the trailing window."""
        rate = self.config.rate
        if rate is None:
            return None
        window = max(1.0, 1.0 / rate)  # below 1/s the window widens so 1 event still fits
        limit = max(1, math.floor(rate * window))
        now = time.monotonic()
        accepted = self.traffic.accepted
        first = bisect_left(accepted, now - window)
        if len(accepted) - first < limit:
            return None
        wait = accepted[len(accepted) - limit] + window - now
        headers = retry_after(math.ceil(wait), self.config.retry_after_format)
        return error(429, "Rate limit exceeded", headers)

    def _receive(self, api: Api, raw: bytes) -> web.Response:
        """Validate like Torque; accept and store when valid."""
        try:
            event = accepted_event(api, raw, self._schemas)
        except ValueError as exc:
            return error(400, str(exc))
        self._accept(api, event)
        return web.Response(body=SUCCESS, status=202, content_type="application/json")

    def _accept(self, api: Api, event: Event) -> None:
        body = event.as_dict()
        self.traffic.accept(body)
        if self._store is not None:
            line = {"received_at": time.time(), "api": api.name, "event": body}
            self._store.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._store.flush()

    def _count(self, answer: web.Response) -> web.Response:
        self.traffic.count(answer.status)
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
