"""POSTs on kept-alive HTTP/1.1 connections, straight on asyncio's transports.

At thousands of events a second the HTTP client is the cost, not the socket: aiohttp's
client spent 175 to 223 µs of CPU per POST here, this client about 50 (docs/benchmarks.md,
"A lean sender" and "The sending client against servers that misbehave"). backfill needs one
thing of HTTP: POST a small JSON body to one URL and read a small answer. That is done here,
with the jobs around it in modules of their own:

- `answer_parser`: answers read by llhttp (httptools), framed as RFC 9112 says;
- `pool`: one connection per request in flight, kept alive and reused (last idle first)
  while idle less than the server's keep-alive, and checked before reuse;
- `connect`: the host's addresses raced as Happy Eyeballs does (RFC 8305);
- `route`: TLS trust and proxies; `endpoint`: the URL validated and percent-encoded.

What an answer means (`post`): a final status line read whole is what the server said,
even if the rest of the answer is broken or never comes (a 2xx there is an accepted event;
the connection is dropped). A request that was written and got no readable status (a
timeout, a dropped connection, garbage) raises `AnswerLost`: the event may have been
applied. One that never left (refused, a failed connect or TLS handshake) raises a plain
`TransientSendError`. A 3xx is returned like any answer and never followed. One timeout
per request covers connecting, sending and the whole answer.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from backfill.errors import (
    AnswerLost,
    CertificateRejected,
    EndpointRefused,
    SendError,
    TransientSendError,
)
from backfill.send.answer_parser import Answer, AnswerMalformed
from backfill.send.answers import CONNECT_FAILED, Reply
from backfill.send.connect import Dialer, Resolve, look_up
from backfill.send.endpoint import ascii_host, bracketed, request_target
from backfill.send.pool import DISCONNECTED, Connection, Pool
from backfill.send.route import PRIVATE_CA_HINT, Route, route_for, ssl_context

if TYPE_CHECKING:
    from backfill.send.sender import SendPolicy


class WirePoster:
    """The production `Poster`: posts prebuilt bodies to one URL (see the module's notes).
    `resolve` looks host names up (tests give a host a dead first address through it)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        policy: SendPolicy,
        resolve: Resolve = look_up,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self._host = ascii_host(parts.hostname)
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = ssl_context() if parts.scheme == "https" else None
        if self._tls is not None:
            self._tls.set_alpn_protocols(["http/1.1"])
        self._route = route_for(url)
        self._timeout = policy.timeout
        self._head = _request_head(url, headers, self._route)
        self._pool = Pool()
        self._dialer = Dialer(resolve)

    async def post(self, body: bytes) -> Reply:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        pool = self._pool
        connection = pool.take(loop.time()) or await self._connect(deadline)
        waiter = connection.exchange(b"%b%d\r\n\r\n%b" % (self._head, len(body), body))
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            answer = await waiter
        except BaseException as exc:
            pool.drop(connection)  # its answer may still come: it cannot carry another request
            answer = _what_was_said(exc, connection)
        finally:
            timer.cancel()
        pool.put_back(connection, answer, loop.time())
        if answer.status == 407 and self._route.proxy is not None:
            raise _proxy_refused(407, answer.reason or "Proxy Authentication Required")
        # An accepted event's body is never looked at: skip decoding it.
        text = answer.body.decode("utf-8", "replace") if answer.status >= 300 else ""
        return Reply(answer.status, answer.headers, text)

    async def aclose(self) -> None:
        self._pool.close()
        await asyncio.sleep(0)  # let the transports say goodbye

    async def _connect(self, deadline: float) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            connection = await asyncio.wait_for(self._open_connection(), deadline - loop.time())
        except BaseException as exc:
            raise _connect_error(exc, self._where()) from None
        self._pool.add(connection)
        return connection

    async def _open_connection(self) -> Connection:
        route = self._route
        if route.proxy is None:
            return await self._dialer.dial(self._host, self._port, self._tls)
        proxy = urlsplit(route.proxy)
        where = f"{proxy.hostname}:{proxy.port or 80}"
        try:
            connection = await self._dialer.dial(proxy.hostname or "", proxy.port or 80, None)
        except OSError as exc:
            raise _ProxyUnreachable(where, exc) from None
        if self._tls is not None:
            try:
                await self._tunnel(connection)
            except BaseException:
                connection.abort()
                raise
        return connection

    async def _tunnel(self, connection: Connection) -> None:
        """CONNECT through the proxy, then TLS with the endpoint inside the tunnel."""
        authority = f"{bracketed(self._host)}:{self._port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        lines += [f"{name}: {value}" for name, value in self._route.proxy_headers().items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            answer = await connection.exchange(request, to_connect=True)
        except AnswerMalformed as exc:
            raise TransientSendError(
                f"the proxy's answer to CONNECT is not HTTP/1.1 ({exc})", kind="bad answer"
            ) from None
        if not 200 <= answer.status < 300:
            raise _proxy_refused(answer.status, answer.reason or f"HTTP {answer.status}")
        assert self._tls is not None and connection.transport is not None
        loop = asyncio.get_running_loop()
        connection.tunnelled()
        connection.transport = await loop.start_tls(  # type: ignore[assignment]
            connection.transport, connection, self._tls, server_hostname=self._host
        )

    def _where(self) -> str:
        return f"{bracketed(self._host)}:{self._port}"


class _ProxyUnreachable(Exception):
    def __init__(self, where: str, error: OSError) -> None:
        super().__init__(where)
        self.where = where
        self.error = error


def _request_head(url: str, headers: Mapping[str, str], route: Route) -> bytes:
    """The request line and headers, up to `Content-Length: `, built once for the run."""
    parts = urlsplit(url)
    host = bracketed(ascii_host(parts.hostname or "")) + (f":{parts.port}" if parts.port else "")
    target = request_target(url)
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


def _what_was_said(exc: BaseException, connection: Connection) -> Answer:
    """After a request was written and its exchange failed: the status the server sent
    if its line came in whole, or `AnswerLost` (the event may have been applied)."""
    if isinstance(exc, AnswerMalformed):
        if exc.answer is not None:
            return exc.answer
        raise AnswerLost(f"the answer is not HTTP/1.1 ({exc})", kind="bad answer") from None
    if isinstance(exc, asyncio.TimeoutError):
        said = connection.partial()
        if said is not None:
            return said
        raise AnswerLost("no answer within the timeout", kind="timeout") from None
    if isinstance(exc, OSError):
        raise AnswerLost(DISCONNECTED, kind="disconnected") from None
    raise exc  # a cancellation, or a bug


def _connect_error(exc: BaseException, where: str) -> BaseException:
    """What a failed connection means to the sender: a `SendError` (nothing was written:
    never `AnswerLost`), or the exception itself when it is not about the network."""
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, asyncio.TimeoutError):
        return TransientSendError(f"cannot connect to {where} within the timeout", kind="timeout")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate_rejected(where, exc)
    if isinstance(exc, _ProxyUnreachable):
        return _unreachable(f"the proxy {exc.where}", exc.error)
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
