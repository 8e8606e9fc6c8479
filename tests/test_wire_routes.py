"""`WirePoster` over TLS and through proxies, in this process (the end-to-end versions in
`test_network.py` run the CLI in a subprocess): the certificate checked against the name,
ALPN, a CONNECT tunnel, what a proxy's refusals and absence say, and the default ports.

Everything is on 127.0.0.1: a TLS server with a `trustme` CA, and a small CONNECT proxy
that pipes bytes. Names resolve through WirePoster's `resolve` seam to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trustme

from backfill.errors import CertificateRejected, EndpointRefused, TransientSendError
from backfill.send.answers import Reply
from backfill.send.connect import Address
from backfill.send.sender import SendPolicy
from backfill.send.wire import WirePoster
from tests.conftest import DEAD
from tests.test_wire import ACCEPTED, BODY, HEADERS, RawServer, refusal_of

trusted_ca: list[trustme.CA] = []  # the `ca` fixture's, for `through_proxy`
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def to_loopback(host: str, port: int) -> list[Address]:
    return [(socket.AF_INET, "127.0.0.1")]


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "ssl_cert_dir"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[trustme.CA]:
    """A private CA that the client trusts through SSL_CERT_FILE."""
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    trusted_ca[:] = [authority]
    yield authority
    trusted_ca.clear()


def server_tls(authority: trustme.CA, name: str = "localhost") -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


class TlsServer:
    """An https server on 127.0.0.1 that answers 202 and keeps what each connection chose."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.alpn: list[str | None] = []
        self.heads: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TlsServer:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.alpn.append(writer.get_extra_info("ssl_object").selected_alpn_protocol())
            try:
                self.heads.append(await reader.readuntil(b"\r\n\r\n"))
                await reader.readexactly(len(BODY))
                writer.write(ACCEPTED)
                await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=self.context)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])


def refusal(url: str, expected: type[Exception], timeout: float = 5) -> Exception:
    """What one POST to `url` raises; names are looked up for real (IP literals here)."""
    poster = WirePoster(url, HEADERS, SendPolicy(timeout=timeout))
    return asyncio.run(refusal_of(poster, expected))


# --- TLS ---------------------------------------------------------------------------------------


def test_an_https_endpoint_is_posted_over_tls_offering_http_1_1_by_alpn(ca: trustme.CA) -> None:
    async def scenario() -> tuple[Reply, TlsServer]:
        async with TlsServer(server_tls(ca)) as server:
            poster = WirePoster(
                f"https://localhost:{server.port}/events", HEADERS, SendPolicy(), to_loopback
            )
            try:
                return await poster.post(BODY), server
            finally:
                await poster.aclose()

    reply, server = asyncio.run(scenario())
    assert reply.status == 202
    assert server.alpn == ["http/1.1"]  # a server that speaks h2 too does not pick it


def test_a_certificate_for_another_name_stops_the_run_saying_how_to_trust_a_ca(
    ca: trustme.CA,
) -> None:
    async def scenario() -> CertificateRejected:
        async with TlsServer(server_tls(ca, "elsewhere.example")) as server:
            url = f"https://localhost:{server.port}/events"
            poster = WirePoster(url, HEADERS, SendPolicy(timeout=5), resolve=to_loopback)
            return await refusal_of(poster, CertificateRejected)

    message = str(asyncio.run(scenario()))
    assert message.startswith("the TLS certificate of localhost:")
    assert "does not verify (Hostname mismatch" in message
    assert message.endswith(
        "if the endpoint uses a private CA, trust it with "
        "SSL_CERT_FILE=/path/to/ca-bundle.pem (or SSL_CERT_DIR)."
    )


def test_a_server_that_does_not_speak_tls_is_a_failed_handshake_to_retry(ca: trustme.CA) -> None:
    async def scenario() -> TransientSendError:
        async with RawServer(plain_garbage) as server:
            url = server.url.replace("http://127.0.0.1", "https://localhost")
            poster = WirePoster(url, HEADERS, SendPolicy(timeout=5), resolve=to_loopback)
            return await refusal_of(poster, TransientSendError)

    error = asyncio.run(scenario())
    assert error.kind == "connection error"
    assert str(error).startswith("the TLS handshake with localhost:") and "failed (" in str(error)
    assert "[SSL" not in str(error)  # OpenSSL's reason alone, not the whole exception


async def plain_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 10)
    await writer.drain()
    await reader.read(1)


# --- a CONNECT tunnel and what a proxy says -----------------------------------------------------


def proxy_answering(answer: bytes, heads: list[bytes]) -> Handler:
    """A proxy that answers every request with `answer`; with a 200 to a CONNECT it pipes
    the tunnel to the port the CONNECT names, on 127.0.0.1."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        writer.write(answer)
        await writer.drain()
        if not (head.startswith(b"CONNECT ") and answer.startswith(b"HTTP/1.1 200")):
            await reader.read(1)
            return
        port = int(head.split(b" ")[1].rsplit(b":", 1)[1])
        target_reader, target_writer = await asyncio.open_connection("127.0.0.1", port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, target_writer), pipe(target_reader, writer))

    return handler


def through_proxy(
    monkeypatch: pytest.MonkeyPatch,
    answer: bytes,
    endpoint: Callable[[int], str],
    certified: str = "localhost",
) -> tuple[Reply | Exception, list[bytes]]:
    """One POST to `endpoint(tls_port)` through a proxy that answers `answer` first (the TLS
    server's CA is trusted: the `ca` fixture)."""
    heads: list[bytes] = []
    authority = trusted_ca.pop()

    async def scenario() -> Reply | Exception:
        async with (
            RawServer(proxy_answering(answer, heads)) as proxy,
            TlsServer(server_tls(authority, certified)) as server,
        ):
            proxy_url = proxy.url.removesuffix("/events")
            monkeypatch.setenv("HTTPS_PROXY", proxy_url)
            monkeypatch.setenv("HTTP_PROXY", proxy_url)
            url = endpoint(server.port)
            poster = WirePoster(url, HEADERS, SendPolicy(timeout=5), resolve=to_loopback)
            try:
                return await poster.post(BODY)
            except (TransientSendError, EndpointRefused) as exc:  # CertificateRejected too
                return exc
            finally:
                await poster.aclose()

    return asyncio.run(scenario()), heads


ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def test_an_https_endpoint_through_a_proxy_goes_in_a_connect_tunnel_with_tls_inside(
    monkeypatch: pytest.MonkeyPatch, ca: trustme.CA
) -> None:
    outcome, heads = through_proxy(monkeypatch, ESTABLISHED, lambda p: f"https://localhost:{p}/")
    assert isinstance(outcome, Reply) and outcome.status == 202
    [head] = heads
    assert head.startswith(b"CONNECT localhost:") and head.endswith(b"\r\n\r\n")


def test_inside_a_tunnel_a_certificate_for_another_name_is_refused_too(
    monkeypatch: pytest.MonkeyPatch, ca: trustme.CA
) -> None:
    outcome, _ = through_proxy(
        monkeypatch, ESTABLISHED, lambda p: f"https://localhost:{p}/", "elsewhere.example"
    )
    assert type(outcome) is CertificateRejected
    assert "does not verify (Hostname mismatch" in str(outcome)


@pytest.mark.parametrize(
    ("answer", "kind", "message"),
    [
        (
            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
            "proxy http 503",
            "the proxy answered HTTP 503 (Busy)",
        ),
        (
            b"HTTP/1.1 300 \r\nContent-Length: 0\r\n\r\n",
            "proxy http 300",
            "the proxy answered HTTP 300 (HTTP 300)",
        ),
        (
            b"SSH-2.0-OpenSSH\r\n\r\n",
            "bad answer",
            "the proxy's answer to CONNECT is not HTTP/1.1 (Expected HTTP/",
        ),
    ],
)
def test_a_proxy_that_does_not_open_the_tunnel_is_a_failure_to_retry_saying_what_it_said(
    monkeypatch: pytest.MonkeyPatch, ca: trustme.CA, answer: bytes, kind: str, message: str
) -> None:
    outcome, _ = through_proxy(monkeypatch, answer, lambda p: f"https://localhost:{p}/")
    assert type(outcome) is TransientSendError and outcome.kind == kind
    assert str(outcome).startswith(message)
    assert outcome.status == (None if kind == "bad answer" else int(answer[9:12]))


def test_a_proxy_that_forbids_stops_the_run_naming_what_to_check(
    monkeypatch: pytest.MonkeyPatch, ca: trustme.CA
) -> None:
    forbidden = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    outcome, _ = through_proxy(monkeypatch, forbidden, lambda p: f"https://localhost:{p}/")
    assert type(outcome) is EndpointRefused and outcome.status == 403
    assert str(outcome) == (
        "the proxy answered HTTP 403 (Forbidden); check the credentials and the proxy in "
        "HTTPS_PROXY / HTTP_PROXY, or NO_PROXY."
    )


def test_plain_http_through_a_proxy_gets_the_answer_it_relays(
    monkeypatch: pytest.MonkeyPatch, ca: trustme.CA
) -> None:
    outcome, heads = through_proxy(monkeypatch, ACCEPTED, lambda p: "http://torque.example/ev")
    assert isinstance(outcome, Reply) and outcome.status == 202
    assert heads[0].startswith(b"POST http://torque.example/ev HTTP/1.1\r\nHost: torque.example\r")


def test_a_407_without_a_reason_names_proxy_authentication(
    monkeypatch: pytest.MonkeyPatch, ca: trustme.CA
) -> None:
    refused = b"HTTP/1.1 407 \r\nContent-Length: 0\r\n\r\n"
    outcome, _ = through_proxy(monkeypatch, refused, lambda p: "http://torque.example/ev")
    assert type(outcome) is EndpointRefused
    assert str(outcome).startswith("the proxy answered HTTP 407 (Proxy Authentication Required)")


def test_a_proxy_that_is_not_there_is_a_connect_failure_naming_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    error = refusal("https://127.0.0.1:9/events", TransientSendError)
    assert error.kind == "connect failed"  # type: ignore[attr-defined]
    said = str(error)  # the reason as the system gave it, e.g. "Connect call failed (...)"
    assert said.startswith(f"cannot connect to the proxy 127.0.0.1:{port} (Connect call failed")
    assert said.endswith(f"{port}))")


# --- plain connections: ports, timeouts, headers -------------------------------------------------


@pytest.mark.parametrize(("url", "port"), [("http://h.example/e", 80), ("https://h.example/", 443)])
def test_an_endpoint_without_a_port_is_dialled_on_its_schemes_port(url: str, port: int) -> None:
    asked: list[tuple[str, int]] = []

    async def nowhere(host: str, at: int) -> list[Address]:
        asked.append((host, at))
        return []

    async def go() -> TransientSendError:
        poster = WirePoster(url, HEADERS, SendPolicy(timeout=5), resolve=nowhere)
        return await refusal_of(poster, TransientSendError)

    error = asyncio.run(go())
    assert asked == [("h.example", port)]
    assert str(error) == f"cannot connect to h.example:{port} (no address for h.example)"


def test_a_proxy_without_a_port_is_dialled_on_80_and_named_so_when_it_has_no_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, int]] = []

    async def nowhere(host: str, at: int) -> list[Address]:
        asked.append((host, at))
        return []

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example")
    poster = WirePoster("https://h.example/", HEADERS, SendPolicy(timeout=5), resolve=nowhere)
    error = asyncio.run(refusal_of(poster, TransientSendError))
    assert asked == [("proxy.example", 80)]
    assert (
        str(error) == "cannot connect to the proxy proxy.example:80 (no address for proxy.example)"
    )


def test_a_host_that_drops_syns_is_a_connect_timeout_naming_host_and_port(
    dead_address_and_port: tuple[socket.socket, int],
) -> None:
    _, port = dead_address_and_port
    error = refusal(f"http://{DEAD}:{port}/events", TransientSendError, timeout=0.3)
    assert type(error) is TransientSendError and error.kind == "timeout"
    assert str(error) == f"cannot connect to {DEAD}:{port} within the timeout"


@pytest.mark.parametrize("url", ["ftp://h.example/e", "http:///events"])
def test_what_is_not_an_http_url_is_refused_by_the_poster(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        WirePoster(url, HEADERS, SendPolicy())
    assert str(caught.value) == f"not an http(s) URL: {url}"


def test_a_header_value_with_a_line_break_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError) as caught:
        WirePoster("http://h.example/e", {"X-Api-Key": "se\r\ncret"}, SendPolicy())
    assert str(caught.value) == "header 'X-Api-Key' holds a line break"
