"""A lean stand-in for a far Torque server, for the `rate` cells of benchmarks/network.py.

    python benchmarks/far_server.py --port 0 --latency 0.08   # listening on http://127.0.0.1:PORT

Why: the sandbox (`python -m backfill.sandbox`, on aiohttp.web) spends about 250-290 µs of
CPU per request. On a 2-core machine at 5000 requests/s that alone is 1.4 cores, so a
5000/s cell measured the machine rather than backfill. A real Torque server runs on other
machines: its CPU is not the sender's. This server is a raw `asyncio.Protocol` HTTP/1.1
server (on uvloop when it imports) that does as little as it can per request, so the
sender has most of the machine. Measured here (30,000 requests from reference_sender.py, 64
in flight, 20 ms): 65-100 µs of CPU a request against the sandbox's 265-315; a uvloop
protocol that parses and records nothing costs 35-40, and parsing the JSON body 10-20 more.

What it does: keep-alive connections, pipelined or partial requests (a head up to
`\\r\\n\\r\\n`, then Content-Length bytes of body; answers go out in request order). Every
POST, to any path, is answered after `latency × (1 ± 0.2)` seconds (uniform jitter from
`random.Random(1)`, one `loop.call_later` per request, no task): 401 without an
`x-torque-api-key` header, 400 when the body is not a JSON object, else 202 with
`{"status":"SUCCESS","data":{"accepted":true}}`. A POST without Content-Length is answered
411 and the connection closed; any other method 405.

What it does not do: no schema or event checks (timestamps, public keys, field types), no
key value check, no rate limit, no faults, no TLS, no store. Use the sandbox for those.

On SIGTERM or SIGINT it prints one line of JSON with the sandbox's stats keys that
network.py reads (`requests`, `accepted`, `duplicates`, `rejected_by_status`, the busiest
1-second windows, `max_in_flight`, `connections`, `accepted_span_seconds`, `timeline`,
computed by the sandbox's own functions) and
its own CPU time (`cpu_seconds`, of which `start_up_cpu_seconds` before listening), then
exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import signal
import sys
import time
from collections import deque
from typing import Any, cast

from backfill.sandbox.faults import LATENCY_JITTER
from backfill.sandbox.traffic import Traffic

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
_DECODE = json.JSONDecoder().decode
KEY_HEADER = b"\r\nx-torque-api-key:"
LENGTH_HEADER = b"\r\ncontent-length:"
CLOSE_HEADER = b"\r\nconnection: close"


def _response(status: int, reason: str, body: bytes, close: bool = False) -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "")
    return head.encode() + b"\r\n" + body


def _error(status: int, reason: str, message: str, close: bool = False) -> bytes:
    code = reason.upper().replace(" ", "_")
    body = json.dumps({"status": code, "message": message}, separators=(",", ":"))
    return _response(status, reason, body.encode(), close)


ACCEPTED = _response(202, "Accepted", b'{"status":"SUCCESS","data":{"accepted":true}}')
UNAUTHORIZED = _error(401, "Unauthorized", "Missing API key")
NOT_AN_OBJECT = _error(400, "Bad Request", "body must be a JSON object")
LENGTH_REQUIRED = _error(411, "Length Required", "Content-Length required", close=True)
NOT_ALLOWED = _error(405, "Method Not Allowed", "only POST is served")
TOO_LARGE = _error(413, "Payload Too Large", "request too large", close=True)


class Answer:
    """One request's answer, waiting for its latency and for the answers before it."""

    __slots__ = ("arrival", "digest", "ready", "response", "status")

    def __init__(self, arrival: float, status: int, response: bytes, digest: bytes | None) -> None:
        self.arrival = arrival
        self.status = status
        self.response = response
        self.digest = digest  # of the raw body, for a 202 only
        self.ready = False


class Stats(Traffic):
    """What the server saw, kept and counted as the sandbox does, plus this process's CPU."""

    __slots__ = ("start_up_cpu_seconds",)

    def __init__(self) -> None:
        super().__init__()
        self.start_up_cpu_seconds = time.process_time()  # imports: before any request

    def arrive(self, now: float) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.arrivals.append(now)
        self.loads.append(self.in_flight)

    def answer(self, answer: Answer, now: float) -> None:
        self.in_flight -= 1
        self.answers.append(answer.arrival)
        self.answer_seconds.append(now - answer.arrival)
        if answer.digest is not None:
            self.accepted.append(now)
            self.hashes.add(answer.digest)
        else:
            self.rejected[str(answer.status)] += 1

    def summary(self) -> dict[str, Any]:
        """The sandbox's stats keys that network.py reads, plus this process's CPU time."""
        return {
            **self.stats(faults={}),
            "cpu_seconds": round(time.process_time(), 4),
            "start_up_cpu_seconds": round(self.start_up_cpu_seconds, 4),
        }


class Server:
    """The shared state: the stats and the latency draws."""

    def __init__(self, latency: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.latency = latency
        self.jitter = random.Random(1)
        self.stats = Stats()

    def delay(self) -> float:
        return self.latency * (1 + LATENCY_JITTER * (2 * self.jitter.random() - 1))


class Connection(asyncio.Protocol):
    """One client connection: parse requests, answer each in order once its delay is over."""

    __slots__ = ("closing", "pending", "rest", "server", "transport")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.rest = b""  # an incomplete request, waiting for more bytes
        self.pending: deque[Answer] = deque()  # answers not written yet, in request order
        self.closing = False  # no more requests are read: the connection ends after answers
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.stats.connections.add(transport.get_extra_info("peername"))

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.rest:
            data = self.rest + data
        start = 0
        while not self.closing:
            consumed = self.request(data, start)
            if consumed == start:
                break
            start = consumed
        self.rest = data[start:] if not self.closing else b""

    def request(self, data: bytes, start: int) -> int:
        """Handle the request at `start` if it is all there; return where the next begins."""
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            if len(data) - start > MAX_HEAD_BYTES:
                self.reply(time.monotonic(), 413, TOO_LARGE, None, close=True)
            return start
        head = data[start:end].lower()
        length = _header(head, LENGTH_HEADER)
        is_post = head.startswith(b"post ")
        now = time.monotonic()
        if length is None and is_post:
            self.reply(now, 411, LENGTH_REQUIRED, None, close=True)
            return start
        size = 0 if length is None else int(length) if length.isdigit() else -1
        if not 0 <= size <= MAX_BODY_BYTES:
            self.reply(now, 413, TOO_LARGE, None, close=True)
            return start
        body_end = end + 4 + size
        if body_end > len(data):
            return start
        line_end = head.find(b"\r\n")  # -1 when there are no headers: the line ends the head
        http_10 = head.endswith(b" http/1.0", 0, line_end if line_end >= 0 else len(head))
        close = http_10 or CLOSE_HEADER in head
        if not is_post:
            self.reply(now, 405, NOT_ALLOWED, None, close)
        elif not _header(head, KEY_HEADER):
            self.reply(now, 401, UNAUTHORIZED, None, close)
        else:
            body = data[end + 4 : body_end]
            if _is_json_object(body):
                digest = hashlib.blake2b(body, digest_size=16).digest()
                self.reply(now, 202, ACCEPTED, digest, close)
            else:
                self.reply(now, 400, NOT_AN_OBJECT, None, close)
        return body_end

    def reply(
        self, now: float, status: int, response: bytes, digest: bytes | None, close: bool
    ) -> None:
        """Queue the answer and write it after the latency (right away for a broken request)."""
        self.server.stats.arrive(now)
        answer = Answer(now, status, response, digest)
        self.pending.append(answer)
        if close:
            self.closing = True
        if status == 411 or status == 413 or not self.server.latency:
            self.ready(answer)
        else:
            self.server.loop.call_later(self.server.delay(), self.ready, answer)

    def ready(self, answer: Answer) -> None:
        """The answer's time has come: write it and any ready ones queued behind it."""
        answer.ready = True
        pending, stats, transport = self.pending, self.server.stats, self.transport
        assert transport is not None
        now = time.monotonic()
        while pending and pending[0].ready:
            done = pending.popleft()
            stats.answer(done, now)  # counted even if the client has gone: it was answered
            if not transport.is_closing():
                transport.write(done.response)
        if self.closing and not pending:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True


def _header(head: bytes, name: bytes) -> bytes | None:
    """The stripped value of a header in a lower-cased head, or None if it is absent."""
    at = head.find(name)
    if at < 0:
        return None
    value_start = at + len(name)
    value_end = head.find(b"\r\n", value_start)
    return head[value_start : value_end if value_end >= 0 else len(head)].strip()


def _is_json_object(body: bytes) -> bool:
    try:  # str first: json.loads(bytes) spends as long guessing the encoding as parsing
        return isinstance(_DECODE(body.decode()), dict)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        return False


async def serve(host: str, port: int, latency: float) -> dict[str, Any]:
    """Listen until SIGTERM or SIGINT; return the stats."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before listening: no signal is lost
        loop.add_signal_handler(sig, stopped.set)
    server = Server(latency)
    listener = await loop.create_server(lambda: Connection(server), host, port, backlog=1024)
    bound = listener.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown}:{bound}", flush=True)
    await stopped.wait()
    listener.close()
    return server.stats.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer, ±20%%")
    args = parser.parse_args(argv)
    if args.latency < 0:
        parser.error("--latency cannot be negative")
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    stats = run(serve(args.host, args.port, args.latency))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
