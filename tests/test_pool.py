"""Kept-alive connections are reused only while the server still keeps them."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from backfill.send.answer_parser import Answer
from backfill.send.pool import (
    IDLE_SECONDS,
    PEEK_AFTER,
    Connection,
    Pool,
    _closed_or_unread,
    idle_limit,
)


class FakeTransport:
    """What the pool asks of a transport: its socket, and to close."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None

    def close(self) -> None:
        self.closed = True

    abort = close


def kept(headers: dict[str, str] | None = None) -> Answer:
    return Answer(202, "Accepted", headers or {}, b"", True)


def pooled(transport: FakeTransport) -> Connection:
    connection = Connection()
    connection.transport = transport  # type: ignore[assignment]
    return connection


@pytest.mark.parametrize(
    ("keep_alive", "limit"),
    [(None, IDLE_SECONDS), ("timeout=5, max=100", IDLE_SECONDS), ("timeout=1", 0.5),
     ("max=3", IDLE_SECONDS), ("Timeout = 0", 0.0)],
)  # fmt: skip
def test_the_idle_limit_stays_below_the_keep_alive_the_server_announces(
    keep_alive: str | None, limit: float
) -> None:
    headers = {} if keep_alive is None else {"keep-alive": keep_alive}
    assert idle_limit(kept(headers)) == limit


def test_a_connection_idle_past_its_limit_is_closed_not_reused() -> None:
    pool = Pool()
    fresh, stale = pooled(FakeTransport()), pooled(FakeTransport())
    for connection in (stale, fresh):
        pool.add(connection)
    pool.put_back(stale, kept(), now=100.0)
    pool.put_back(fresh, kept(), now=100.0 + IDLE_SECONDS - PEEK_AFTER / 2)
    now = 100.0 + IDLE_SECONDS + 0.01
    assert pool.take(now) is fresh  # the last idle, still within its limit
    assert pool.take(now) is None  # the other one idled too long
    assert stale.transport.closed and stale not in pool.open  # type: ignore[union-attr]


def test_an_answer_that_does_not_keep_alive_closes_its_connection() -> None:
    pool = Pool()
    connection = pooled(FakeTransport())
    pool.add(connection)
    pool.put_back(connection, Answer(202, "", {}, b"", False), now=0.0)
    assert pool.take(0.0) is None and connection.closed


def test_a_look_at_the_socket_finds_the_servers_close_before_the_loop_reads_it() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        transport: Any = FakeTransport(ours)
        assert not _closed_or_unread(transport)  # open, nothing waiting
        theirs.send(b"HTTP/1.1 408 Request Timeout\r\n\r\n")  # a server giving up on us
        assert _closed_or_unread(transport)
        assert ours.recv(100)  # the look did not read it
        theirs.close()
        assert _closed_or_unread(transport)  # its FIN


def test_an_idle_connection_found_closed_is_not_reused() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        pool = Pool()
        connection = pooled(FakeTransport(ours))
        pool.add(connection)
        pool.put_back(connection, kept(), now=0.0)
        assert pool.take(PEEK_AFTER * 2) is connection  # still open: reused
        pool.put_back(connection, kept(), now=1.0)
        theirs.close()
        assert pool.take(1.0 + PEEK_AFTER * 2) is None


def test_a_real_connection_the_server_closed_is_dropped_before_a_request_is_written() -> None:
    async def scenario() -> tuple[bool, bool]:
        closed = asyncio.Event()

        async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
            writer.close()
            closed.set()

        server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(Connection, "127.0.0.1", port)
        await asyncio.wait_for(closed.wait(), 10)
        pool = Pool()
        pool.add(connection)
        pool.put_back(connection, kept(), now=loop.time() - PEEK_AFTER * 2)
        taken = pool.take(loop.time())
        server.close()
        return taken is None, connection.closed

    assert asyncio.run(scenario()) == (True, True)
