"""Kept-alive connections: one request at a time each, reused while the server keeps them.

A server closes a connection it has kept idle for its keep-alive time (gunicorn 2 s,
uvicorn and hypercorn 5 s, some proxies 1 s). A request written just as it does is lost,
and may have been applied: a possible duplicate. So a connection is reused only

- while it has been idle less than IDLE_SECONDS (below every common keep-alive, and below
  the 1 s of the tests' keep-alive race), or less than the `Keep-Alive: timeout=` the
  server announced, minus KEEP_ALIVE_MARGIN;
- and, after more than PEEK_AFTER of idleness, when a look at its socket finds neither
  the server's FIN nor bytes nobody asked for, even those the event loop has not read yet.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket

from backfill.send.answer_parser import Answer, AnswerMalformed, AnswerReader

IDLE_SECONDS = 0.75  # reuse a connection idle for less than this; close it after
KEEP_ALIVE_MARGIN = 0.5  # seconds below the server's announced keep-alive timeout
PEEK_AFTER = 0.05  # idle longer than this: look at the socket before reuse
DISCONNECTED = "the server closed the connection without answering"
_TIMEOUT = re.compile(r"timeout\s*=\s*([0-9]+)", re.IGNORECASE)
_PEEK = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: a request out, its answer back, then the next."""

    __slots__ = ("_reader", "_waiter", "closed", "idle_limit", "idle_since", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.idle_limit = IDLE_SECONDS
        self._reader = AnswerReader()
        self._waiter: asyncio.Future[Answer] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def exchange(self, request: bytes, to_connect: bool = False) -> asyncio.Future[Answer]:
        """Write one request; the future is its answer (or the reason there is none)."""
        assert self.transport is not None and self._waiter is None
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self._reader.expect(to_connect)
        self.transport.write(request)
        return waiter

    def tunnelled(self) -> None:
        """TLS now runs inside a CONNECT tunnel: its answers are read afresh."""
        self._reader = AnswerReader()

    def partial(self) -> Answer | None:
        """What the server said so far (see `AnswerReader.partial`)."""
        return self._reader.partial()

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.abort()
            return
        try:
            answer = self._reader.feed(data)
        except AnswerMalformed as exc:
            self._settle(exc)
            self.abort()
            return
        if answer is not None:
            if self._reader.extra:
                answer.keep_alive = False  # more than was asked for
            self._settle(answer)

    def eof_received(self) -> bool:
        self._ended()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._ended()

    def _ended(self) -> None:
        if self._waiter is None:
            return
        try:
            answer = self._reader.feed_eof()
        except AnswerMalformed as exc:
            self._settle(exc)
            return
        self._settle(answer if answer is not None else ConnectionResetError(DISCONNECTED))

    def _settle(self, outcome: Answer | BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(outcome, Answer):
            waiter.set_result(outcome)
        else:
            waiter.set_exception(outcome)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def stale(self, now: float) -> bool:
        """Closed, idle too long, or (after PEEK_AFTER) found closed or unread."""
        if self.closed:
            return True
        idle = now - self.idle_since
        if idle >= self.idle_limit:
            return True
        return idle > PEEK_AFTER and _closed_or_unread(self.transport)


def _closed_or_unread(transport: asyncio.Transport | None) -> bool:
    """The server's FIN, or bytes nobody asked for, waiting in the socket: a look without
    reading (MSG_PEEK on a duplicate of its descriptor; uvloop's sockets cannot recv)."""
    raw = transport.get_extra_info("socket") if transport is not None else None
    if raw is None:
        return False
    try:
        with socket.socket(fileno=os.dup(raw.fileno())) as probe:
            probe.recv(1, _PEEK)
    except BlockingIOError:
        return False  # nothing waiting: still open
    except OSError:
        return True  # reset, or gone
    return True


def idle_limit(answer: Answer) -> float:
    """How long a connection may wait for its next request after `answer`."""
    announced = answer.headers.get("keep-alive")
    if announced is None:
        return IDLE_SECONDS
    found = _TIMEOUT.search(announced)
    if found is None:
        return IDLE_SECONDS
    return max(0.0, min(IDLE_SECONDS, int(found.group(1)) - KEEP_ALIVE_MARGIN))


class Pool:
    """The open connections, and the idle ones ready for a request (last idle first)."""

    __slots__ = ("_idle", "open")

    def __init__(self) -> None:
        self._idle: list[Connection] = []
        self.open: set[Connection] = set()

    def take(self, now: float) -> Connection | None:
        """An idle connection still fit to write to, or None: a new one is needed."""
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.stale(now):
                return connection
            connection.close()
            self.open.discard(connection)
        return None

    def add(self, connection: Connection) -> None:
        self.open.add(connection)

    def put_back(self, connection: Connection, answer: Answer, now: float) -> None:
        """After its answer: idle for the next request, or closed."""
        if answer.keep_alive and not connection.closed:
            connection.idle_since = now
            connection.idle_limit = idle_limit(answer)
            self._idle.append(connection)
        else:
            self.drop(connection)

    def drop(self, connection: Connection) -> None:
        connection.abort()
        self.open.discard(connection)

    def close(self) -> None:
        for connection in self.open:
            connection.close()
        self.open.clear()
        self._idle.clear()
