"""`HttpxPoster`, the httpx seam: each transport failure is a lost answer or a request that
never left, with the kind and message the failure report shows, and its own timeouts hold.

The failures come from `httpx.MockTransport`; the timeouts need a real transport, so they run
against a server on 127.0.0.1 that never answers and an address whose SYNs are dropped.
"""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from backfill.errors import AnswerLost, TransientSendError
from backfill.send.answers import Reply
from backfill.send.httpx_poster import HttpxPoster
from backfill.send.sender import SendPolicy
from tests.conftest import DEAD

BODY = b'{"timestamp":1731596206795}'
LOST = "a lost answer: the request may have left"
NEVER_SENT = "never sent"

CLOSED = "the server closed the connection without answering"
FAILURES = [
    (httpx.ConnectTimeout("t"), NEVER_SENT, "timeout", "no connection within the timeout"),
    (httpx.PoolTimeout("t"), NEVER_SENT, "timeout", "no connection within the timeout"),
    (httpx.ReadTimeout("t"), LOST, "timeout", "no answer within the timeout"),
    (httpx.WriteTimeout("t"), LOST, "timeout", "no answer within the timeout"),
    (httpx.RemoteProtocolError("gone"), LOST, "disconnected", CLOSED),
    (httpx.ConnectError("refused"), NEVER_SENT, "connect failed", "cannot connect to api.test"),
    (httpx.ReadError("reset"), LOST, "connection error", "the connection failed (ReadError)"),
    (httpx.WriteError("reset"), LOST, "connection error", "the connection failed (WriteError)"),
    (
        httpx.UnsupportedProtocol("x"),
        NEVER_SENT,
        "connection error",
        "the connection failed (UnsupportedProtocol)",
    ),
]


def post_through(transport: httpx.AsyncBaseTransport | None, url: str, timeout: float) -> Reply:
    async def go() -> Reply:
        poster = HttpxPoster(url, {}, SendPolicy(timeout=timeout), transport=transport)
        try:
            return await poster.post(BODY)
        finally:
            await poster.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(("error", "outcome", "kind", "message"), FAILURES)
def test_each_transport_failure_is_lost_or_never_sent_with_the_reports_kind_and_message(
    error: Exception, outcome: str, kind: str, message: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(TransientSendError) as caught:
        post_through(httpx.MockTransport(fail), "https://api.test/events", 5.0)
    assert (LOST if isinstance(caught.value, AnswerLost) else NEVER_SENT) == outcome
    assert caught.value.kind == kind and str(caught.value) == message
    assert caught.value.status is None and caught.value.retry_after is None


def test_an_answer_comes_back_with_its_status_lowercased_headers_and_text() -> None:
    def accept(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, headers={"X-Request-Id": "r1"}, text="ok")

    reply = post_through(httpx.MockTransport(accept), "https://api.test/events", 5.0)
    assert reply.status == 202 and reply.headers["x-request-id"] == "r1" and reply.text == "ok"


def test_a_request_that_waits_for_a_busy_connection_past_the_timeout_never_left() -> None:
    """Concurrency 1: the one connection is held by a request the server never answers, so
    the second waits for the pool and gives up at the timeout as never sent, not lost."""

    async def scenario() -> list[BaseException | Reply]:
        connected = asyncio.Event()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connected.set()
            await reader.read(1)  # reads, never answers; the poster's timeout ends it

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        policy = SendPolicy(timeout=0.5, concurrency=1)
        poster = HttpxPoster(f"http://127.0.0.1:{port}/events", {}, policy)
        try:
            first = asyncio.create_task(poster.post(BODY))
            await asyncio.wait_for(connected.wait(), 5)  # the first holds the one connection
            second = asyncio.create_task(poster.post(BODY))
            return await asyncio.gather(first, second, return_exceptions=True)
        finally:
            await poster.aclose()
            server.close()

    first, second = asyncio.run(scenario())
    assert type(first) is AnswerLost and type(second) is TransientSendError
    assert str(second) == "no connection within the timeout"


def test_an_address_that_drops_syns_is_a_connection_never_made_at_the_timeout(
    dead_address_and_port: tuple[socket.socket, int],
) -> None:
    _, port = dead_address_and_port
    with pytest.raises(TransientSendError) as caught:
        post_through(None, f"http://{DEAD}:{port}/events", 0.3)
    assert type(caught.value) is TransientSendError and caught.value.kind == "timeout"
    assert str(caught.value) == "no connection within the timeout"
