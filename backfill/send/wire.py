"""POSTs on kept-alive HTTP/1.1 connections, straight on asyncio's transports.

At thousands of events a second the HTTP client is the cost, not the socket: aiohttp's
client spent 205 to 224 µs of CPU per POST here, this module 29 to 36, and a whole run 137 µs
per event instead of 313 (docs/benchmarks.md, "A lean sender"). backfill needs one thing of
HTTP: POST a small JSON body to one URL and read a small answer. That, and only that, is done
here:

- one connection per request in flight, kept alive and reused (last idle first); one the
  server closed while idle is dropped, never written to;
- TLS through the `ssl` module with the verifying context of `http_client.ssl_context`
  (SNI and host name checked); the ALPN offer is HTTP/1.1 only;
- a forward proxy from `http_client.route_for`: an `http://` endpoint is asked for in
  absolute form with the proxy's credentials, an `https://` one through a CONNECT tunnel with
  TLS inside it, so the proxy sees neither the key nor the events;
- answers framed by Content-Length, chunked, or by the end of the connection; interim 1xx
  answers skipped; `Connection: close` honoured;
- a 3xx is returned like any answer and never followed (`sender.check_reply` refuses it);
- one timeout per request covers connecting, sending and the whole answer.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from backfill.errors import CertificateRejected, EndpointRefused, SendError, TransientSendError
from backfill.send.route import PRIVATE_CA_HINT, Route, route_for, ssl_context
from backfill.send.sender import CONNECT_FAILED, Reply

if TYPE_CHECKING:
    from backfill.send.sender import SendPolicy

MAX_HEAD_BYTES = 64 * 1024  # an answer's status line and headers; more is not an HTTP server
ADDRESS_SECONDS = 60.0  # how long a host's looked-up addresses are used
MAX_BODY_BYTES = 16 * 1024 * 1024  # an events API's answer is small; a runaway one is cut off
DISCONNECTED = "the server closed the connection without answering"


class AnswerMalformed(Exception):
    """What came back is not an HTTP/1.x answer."""


class Answer:
    """One whole answer, and whether its connection may carry another request."""

    __slots__ = ("body", "headers", "keep_alive", "reason", "status")

    def __init__(
        self, status: int, reason: str, headers: dict[str, str], body: bytes, keep_alive: bool
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


def parse_answer(
    data: bytes | bytearray, at_eof: bool, to_connect: bool = False
) -> tuple[Answer, int] | None:
    """The first whole answer in `data` and the bytes it took; None while more is needed.

    `at_eof`: the connection has ended, so an answer without a length ends here.
    `to_connect`: the answer to CONNECT, whose 2xx has no body (the tunnel follows)."""
    start = 0
    while True:
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            if len(data) - start > MAX_HEAD_BYTES:
                raise AnswerMalformed(f"no end of headers in {MAX_HEAD_BYTES} bytes")
            return None
        status, reason, version, headers = _head(bytes(data[start:end]))
        start = end + 4
        if 100 <= status < 200 and status != 101:
            continue  # interim (100 Continue, 103 Early Hints): the real answer follows
        head = Answer(status, reason, headers, b"", True)
        return _with_body(data, start, head, version, at_eof, to_connect)


def _head(raw: bytes) -> tuple[int, str, str, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not _is_number(code):
        raise AnswerMalformed(f"the status line is {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise AnswerMalformed(f"a header line is {line[:60]!r}")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(code), rest[4:].strip(), version, headers


def _with_body(
    data: bytes | bytearray,
    start: int,
    answer: Answer,
    version: str,
    at_eof: bool,
    to_connect: bool,
) -> tuple[Answer, int] | None:
    """`answer` (its head parsed) with its body, framed as its headers say."""
    headers, status = answer.headers, answer.status
    connection = headers.get("connection", "").lower()
    answer.keep_alive = "close" not in connection and (
        version != "HTTP/1.0" or "keep-alive" in connection
    )
    if status in (204, 304) or (to_connect and 200 <= status < 300):
        return answer, start
    if "chunked" in headers.get("transfer-encoding", "").lower():
        whole = _dechunk(data, start)
        if whole is None:
            return None
        answer.body, end = whole
        return answer, end
    length = headers.get("content-length")
    if length is not None:
        size = _length(length)
        if len(data) - start < size:
            return None
        answer.body = bytes(data[start : start + size])
        return answer, start + size
    if not at_eof:  # framed by the end of the connection
        if len(data) - start > MAX_BODY_BYTES:
            raise AnswerMalformed(f"an answer of more than {MAX_BODY_BYTES} bytes")
        return None
    answer.body, answer.keep_alive = bytes(data[start:]), False
    return answer, len(data)


def _length(value: str) -> int:
    first = value.split(",")[0].strip()  # repeated identical lengths are allowed
    if not _is_number(first) or int(first) > MAX_BODY_BYTES:
        raise AnswerMalformed(f"Content-Length is {value[:40]!r}")
    return int(first)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()  # "²".isdigit() is True, int("²") fails


def _dechunk(data: bytes | bytearray, at: int) -> tuple[bytes, int] | None:
    """A chunked body from `at`: (the body, where it ends), or None until it is all in."""
    parts: list[bytes] = []
    size_total = 0
    while True:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            return None
        size_text = bytes(data[at:line_end]).split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise AnswerMalformed(f"a chunk size is {size_text[:20]!r}") from None
        at = line_end + 2
        if size == 0:  # the last chunk; then trailers, then an empty line
            end = data.find(b"\r\n\r\n", at - 2)
            return (b"".join(parts), end + 4) if end >= 0 else None
        size_total += size
        if size_total > MAX_BODY_BYTES:
            raise AnswerMalformed(f"an answer of more than {MAX_BODY_BYTES} bytes")
        if len(data) < at + size + 2:
            return None
        parts.append(bytes(data[at : at + size]))
        at += size + 2


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: a request out, its answer back, then the next."""

    __slots__ = ("_buffer", "_to_connect", "_waiter", "closed", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._to_connect = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def exchange(self, request: bytes, to_connect: bool = False) -> asyncio.Future[Answer]:
        """Write one request; the future is its answer (or the reason there is none)."""
        assert self.transport is not None and self._waiter is None
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self._to_connect = to_connect
        self.transport.write(request)
        return waiter

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.abort()
            return
        self._try_answer(at_eof=False)

    def eof_received(self) -> bool:
        self._try_answer(at_eof=True)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._try_answer(at_eof=True)

    def _try_answer(self, at_eof: bool) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        try:
            parsed = parse_answer(self._buffer, at_eof, self._to_connect)
        except AnswerMalformed as exc:
            self._settle(exc)
            self.abort()
            return
        if parsed is None:
            if at_eof:
                self._settle(ConnectionResetError(DISCONNECTED))
            return
        answer, used = parsed
        del self._buffer[:used]
        if self._buffer and not self._to_connect:
            answer.keep_alive = False  # more than was asked for
        self._settle(answer)

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


class WirePoster:
    """The production `Poster`: posts prebuilt bodies to one URL (see the module's notes)."""

    def __init__(self, url: str, headers: Mapping[str, str], policy: SendPolicy) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = ssl_context() if parts.scheme == "https" else None
        if self._tls is not None:
            self._tls.set_alpn_protocols(["http/1.1"])
        self._route = route_for(url)
        self._timeout = policy.timeout
        self._head = _request_head(url, headers, self._route)
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
        self._resolved: dict[tuple[str, int], tuple[float, asyncio.Future[Any]]] = {}

    async def post(self, body: bytes) -> Reply:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        connection = self._idle_connection() or await self._connect(deadline)
        waiter = connection.exchange(b"%b%d\r\n\r\n%b" % (self._head, len(body), body))
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            answer = await waiter
        except BaseException as exc:
            self._drop(connection)  # its answer may still come: it cannot carry another request
            raise _send_error(exc) from None
        finally:
            timer.cancel()
        self._after(connection, answer)
        if answer.status == 407 and self._route.proxy is not None:
            raise _proxy_refused(407, answer.reason or "Proxy Authentication Required")
        # An accepted event's body is never looked at: skip decoding it.
        text = answer.body.decode("utf-8", "replace") if answer.status >= 300 else ""
        return Reply(answer.status, answer.headers, text)

    async def aclose(self) -> None:
        for connection in self._open:
            if connection.transport is not None:
                connection.transport.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports say goodbye

    def _idle_connection(self) -> Connection | None:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
            self._open.discard(connection)
        return None

    def _after(self, connection: Connection, answer: Answer) -> None:
        if answer.keep_alive and not connection.closed:
            self._idle.append(connection)
        else:
            self._drop(connection)

    def _drop(self, connection: Connection) -> None:
        connection.abort()
        self._open.discard(connection)

    async def _connect(self, deadline: float) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            connection = await asyncio.wait_for(self._open_connection(), deadline - loop.time())
        except BaseException as exc:
            raise _send_error(exc, self._where()) from None
        self._open.add(connection)
        return connection

    async def _open_connection(self) -> Connection:
        route = self._route
        if route.proxy is None:
            return await self._dial(self._host, self._port, self._tls)
        proxy = urlsplit(route.proxy)
        where = f"{proxy.hostname}:{proxy.port or 80}"
        try:
            connection = await self._dial(proxy.hostname or "", proxy.port or 80, None)
        except OSError as exc:
            raise _ProxyUnreachable(where, exc) from None
        if self._tls is not None:
            try:
                await self._tunnel(connection)
            except BaseException:
                connection.abort()
                raise
        return connection

    async def _dial(self, host: str, port: int, tls: ssl.SSLContext | None) -> Connection:
        """A connection to the first of the host's addresses that answers. Addresses are
        looked up once a minute, not once a connection: a ramp opens hundreds at once, and
        each look-up is a trip through a thread."""
        loop = asyncio.get_running_loop()
        sni = host if tls is not None else None  # the name the certificate must carry
        failure: OSError | None = None
        for family, address in await self._addresses(host, port):
            try:
                _, connection = await loop.create_connection(
                    Connection, address, port, family=family, ssl=tls, server_hostname=sni
                )
                return connection
            except ssl.SSLError:
                raise
            except OSError as exc:
                failure = exc
        raise failure or OSError(f"no address for {host}")

    async def _addresses(self, host: str, port: int) -> list[tuple[int, str]]:
        loop = asyncio.get_running_loop()
        known = self._resolved.get((host, port))
        if known is None or loop.time() - known[0] > ADDRESS_SECONDS or _failed(known[1]):
            lookup = asyncio.ensure_future(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            known = self._resolved[(host, port)] = (loop.time(), lookup)
        infos = await asyncio.shield(known[1])
        return [(family, sockaddr[0]) for family, _, _, _, sockaddr in infos]

    async def _tunnel(self, connection: Connection) -> None:
        """CONNECT through the proxy, then TLS with the endpoint inside the tunnel."""
        authority = f"{_bracketed(self._host)}:{self._port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        lines += [f"{name}: {value}" for name, value in self._route.proxy_headers().items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        answer = await connection.exchange(request, to_connect=True)
        if not 200 <= answer.status < 300:
            raise _proxy_refused(answer.status, answer.reason or f"HTTP {answer.status}")
        assert self._tls is not None and connection.transport is not None
        loop = asyncio.get_running_loop()
        connection.transport = await loop.start_tls(  # type: ignore[assignment]
            connection.transport, connection, self._tls, server_hostname=self._host
        )

    def _where(self) -> str:
        return f"{_bracketed(self._host)}:{self._port}"


def _failed(lookup: asyncio.Future[Any]) -> bool:
    return lookup.done() and (lookup.cancelled() or lookup.exception() is not None)


class _ProxyUnreachable(Exception):
    def __init__(self, where: str, error: OSError) -> None:
        super().__init__(where)
        self.where = where
        self.error = error


def _request_head(url: str, headers: Mapping[str, str], route: Route) -> bytes:
    """The request line and headers, up to `Content-Length: `, built once for the run."""
    parts = urlsplit(url)
    host = _bracketed(parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if route.proxy is not None and parts.scheme == "http":
        target = f"http://{host}{target}"  # a proxy is asked in absolute form
        headers = {**headers, **route.proxy_headers()}
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", "User-Agent: backfill"]
    for name, value in headers.items():
        if any(char in f"{name}{value}" for char in "\r\n\0"):
            raise ValueError(f"header {name!r} holds a line break")  # the value is not shown
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")


def _expire(waiter: asyncio.Future[Answer]) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


def _send_error(exc: BaseException, where: str = "") -> BaseException:
    """What a failed exchange means to the sender: a `SendError`, or the exception itself
    when it is not about the network (a cancellation, a bug)."""
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, asyncio.TimeoutError):
        return TransientSendError("no answer within the timeout", kind="timeout")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate_rejected(where, exc)
    if isinstance(exc, _ProxyUnreachable):
        return _unreachable(f"the proxy {exc.where}", exc.error)
    if isinstance(exc, AnswerMalformed):
        return TransientSendError(f"the answer is not HTTP/1.1 ({exc})", kind="bad answer")
    if isinstance(exc, ConnectionResetError) or (isinstance(exc, OSError) and not where):
        return TransientSendError(DISCONNECTED, kind="disconnected")
    if isinstance(exc, ssl.SSLError):
        return TransientSendError(
            f"the TLS handshake with {where} failed ({exc.reason or exc})", kind="connection error"
        )
    if isinstance(exc, OSError):
        return _unreachable(where, exc)
    return exc


def _unreachable(where: str, exc: OSError) -> TransientSendError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return TransientSendError(f"cannot connect to {where} ({reason})", kind=CONNECT_FAILED)


def _certificate_rejected(where: str, exc: ssl.SSLCertVerificationError) -> SendError:
    reason = exc.verify_message or exc.reason or exc
    return CertificateRejected(
        f"the TLS certificate of {where} does not verify ({reason}); {PRIVATE_CA_HINT}."
    )


def _proxy_refused(status: int, reason: str) -> SendError:
    """The proxy answered the tunnel or request itself: 407/403 will not change by retrying."""
    described = f"the proxy answered HTTP {status} ({reason})"
    if status in (403, 407):
        return EndpointRefused(
            f"{described}; check the credentials and the proxy in HTTPS_PROXY / HTTP_PROXY, "
            "or NO_PROXY.",
            status=status,
        )
    return TransientSendError(described, status=status, kind=f"proxy http {status}")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
