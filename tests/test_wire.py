"""The lean HTTP/1.1 poster: framing of answers, connection reuse, and what each network
failure becomes, against real servers on 127.0.0.1 (aiohttp's, and raw sockets that answer
exactly the bytes a test needs)."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from backfill.errors import AnswerLost, EndpointRefused, TransientSendError
from backfill.mapping.envelopes import TORQUE_V1
from backfill.send.answer_parser import Answer, AnswerMalformed, AnswerReader
from backfill.send.answers import CONNECT_FAILED, Reply
from backfill.send.sender import SendPolicy
from backfill.send.wire import WirePoster
from tests.conftest import TEST_KEY

BODY = b'{"timestamp":1700000000000,"event_name":"purchase"}'
HEADERS = {"Content-Type": "application/json", TORQUE_V1.key_header: TEST_KEY}
ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 20\r\n\r\n" + b'{"status":"SUCCESS"}'

# --- framing (llhttp, and what the client adds around it) ----------------------------------


def read(raw: bytes, at_eof: bool = False) -> Answer | None:
    """The answer in `raw`, fed to one reader; at_eof: then the connection ends."""
    reader = AnswerReader()
    answer = reader.feed(raw)
    if answer is None and at_eof:
        answer = reader.feed_eof()
    if answer is not None and reader.extra:
        answer.keep_alive = False
    return answer


def test_an_answer_split_across_reads_is_whole_only_once_its_length_is_in() -> None:
    reader = AnswerReader()
    assert reader.feed(ACCEPTED[:30]) is None
    assert reader.feed(ACCEPTED[30:-1]) is None
    answer = reader.feed(ACCEPTED[-1:])
    assert answer is not None
    assert (answer.status, answer.body, answer.keep_alive) == (202, b'{"status":"SUCCESS"}', True)


def test_a_chunked_answer_is_joined_and_its_trailers_consumed() -> None:
    raw = (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    assert read(raw[:-20]) is None
    answer = read(raw)
    assert answer is not None and answer.body == b"hello, world" and answer.keep_alive


def test_interim_answers_are_skipped_for_the_real_one() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n" + ACCEPTED
    answer = read(raw)
    assert answer is not None and answer.status == 202 and "link" not in answer.headers


def test_an_answer_without_a_length_ends_with_the_connection() -> None:
    raw = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n\r\ntry later"
    assert read(raw) is None
    answer = read(raw, at_eof=True)
    assert answer is not None
    assert answer.body == b"try later" and not answer.keep_alive
    assert answer.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("raw", "keep_alive"),
    [
        (b"HTTP/1.1 202 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 202 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 202 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 202 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 202 OK\r\n", False),
        (b"HTTP/1.1 202 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", False),
    ],
)
def test_whether_a_connection_may_carry_another_request(raw: bytes, keep_alive: bool) -> None:
    answer = read(raw)
    assert answer is not None and answer.keep_alive is keep_alive


def test_header_names_are_lower_case_and_repeats_are_joined() -> None:
    raw = b"HTTP/1.1 429 Slow\r\nX-A: 1\r\nx-a: 2\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n"
    answer = read(raw)
    assert answer is not None and answer.headers == {
        "x-a": "1, 2",
        "retry-after": "3",
        "content-length": "0",
    }


def test_a_folded_header_and_bare_line_feeds_are_read_as_rfc_9112_lets_a_client() -> None:
    folded = b"HTTP/1.1 429 Slow\r\nRetry-After:\r\n 3\r\nContent-Length: 0\r\n\r\n"
    answer = read(folded)
    assert answer is not None and answer.headers["retry-after"] == "3"
    bare = read(b"HTTP/1.1 202 Accepted\nContent-Length: 2\n\nok")
    assert bare is not None and (bare.status, bare.body) == (202, b"ok")


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 2x2 OK\r\n\r\n",
        "HTTP/1.1 2\u00b20 OK\r\n\r\n".encode("latin-1"),
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" * 20,
    ],
)
def test_what_is_not_an_http_answer_is_malformed_and_says_no_status(raw: bytes) -> None:
    with pytest.raises(AnswerMalformed) as caught:
        read(raw)
    assert caught.value.answer is None


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 202 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 202 OK\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"),
        b"HTTP/1.1 202 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\nok",
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\n\r\n-6\r\nabc",
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nab\r\n0\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\nab\r\n0\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab0\r\n\r\n",
        b"HTTP/1.1 202\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    ],
)
def test_a_whole_2xx_status_line_is_kept_when_the_rest_of_the_answer_is_malformed(
    raw: bytes,
) -> None:
    with pytest.raises(AnswerMalformed) as caught:
        read(raw)
    said = caught.value.answer
    assert said is not None and said.status == 202 and not said.keep_alive


def test_an_answer_cut_short_keeps_its_status_line() -> None:
    reader = AnswerReader()
    assert reader.feed(b"HTTP/1.1 503 Busy\r\nContent-Length: 50\r\n\r\nshort") is None
    with pytest.raises(AnswerMalformed) as caught:
        reader.feed_eof()
    assert caught.value.answer is not None and caught.value.answer.status == 503
    assert AnswerReader().feed_eof() is None  # nothing at all: the server said nothing


# --- real sockets ----------------------------------------------------------------------------

Refusal = TypeVar("Refusal", bound=Exception)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A server on 127.0.0.1 whose connections each run `handler`; it counts them, and the
    connections whose handler has ended (`wait_ended` waits for a number of them)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.ended = 0
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                self.ended += 1
                self._changed.set()

        self._server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/events"

    async def wait_ended(self, count: int, deadline: float = 10.0) -> None:
        """Until `count` connections' handlers have ended (a generous deadline, not a pause)."""

        async def ended() -> None:
            while self.ended < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(ended(), deadline)


def post_to(
    handler: Handler, count: int = 1, timeout: float = 5.0, *, one_ends_each: bool = False
) -> tuple[list[Any], RawServer]:
    """`count` POSTs one after another on one poster; each a Reply or the exception raised.
    `one_ends_each`: after the n-th POST, wait until n connections' handlers have ended."""

    async def scenario() -> tuple[list[Any], RawServer]:
        async with RawServer(handler) as server:
            poster = WirePoster(server.url, HEADERS, SendPolicy(timeout=timeout))
            outcomes: list[Any] = []
            try:
                for sent in range(1, count + 1):
                    try:
                        outcomes.append(await poster.post(BODY))
                    except TransientSendError as exc:
                        outcomes.append(exc)
                    if one_ends_each:
                        await server.wait_ended(sent)
            finally:
                await poster.aclose()
            return outcomes, server

    return asyncio.run(scenario())


async def answer_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A handler that hangs up at once."""


async def refusal_of(poster: WirePoster, expected: type[Refusal]) -> Refusal:
    """The `expected` error one POST raises (the test fails if it raises nothing)."""
    try:
        await poster.post(BODY)
    except expected as exc:
        return exc
    finally:
        await poster.aclose()
    raise AssertionError(f"the POST did not raise {expected.__name__}")


def test_the_poster_sends_json_with_the_key_over_a_real_socket() -> None:
    from aiohttp import web

    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.path_qs, dict(request.headers), await request.read()))
        return web.Response(status=202, text='{"status":"SUCCESS"}')

    async def scenario() -> Reply:
        app = web.Application()
        app.router.add_post("/events", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        poster = WirePoster(f"http://127.0.0.1:{port}/events?x=1", HEADERS, SendPolicy())
        try:
            return await poster.post(BODY)
        finally:
            await poster.aclose()
            await runner.cleanup()

    reply = asyncio.run(scenario())
    assert reply.status == 202 and reply.text == ""  # an accepted body is not decoded
    [(path, headers, body)] = seen
    assert path == "/events?x=1" and body == BODY
    assert headers["Content-Type"] == "application/json"
    assert headers[TORQUE_V1.key_header] == TEST_KEY
    assert headers["User-Agent"] == "backfill"
    assert headers["Host"] == f"127.0.0.1:{headers['Host'].split(':')[1]}"


async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(len(BODY))
        writer.write(ACCEPTED)


def test_requests_one_after_another_share_one_kept_alive_connection() -> None:
    outcomes, server = post_to(keep_answering, count=5)
    assert [reply.status for reply in outcomes] == [202] * 5
    assert server.connections == 1


SAYS_CLOSE = b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def test_an_answer_that_says_close_is_followed_by_a_new_connection() -> None:
    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(SAYS_CLOSE)
        await writer.drain()

    outcomes, server = post_to(answer_then_close, count=3)
    assert [reply.status for reply in outcomes] == [202, 202, 202]
    assert server.connections == 3


def test_connection_close_is_obeyed_even_when_the_server_keeps_the_socket_open() -> None:
    """The header alone decides: this server says `Connection: close` but never closes, and
    would answer a second request on the same socket. No FIN to wait for, nothing timed."""

    async def says_close_keeps_answering(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(len(BODY))
            writer.write(SAYS_CLOSE)

    outcomes, server = post_to(says_close_keeps_answering, count=3)
    assert [reply.status for reply in outcomes] == [202, 202, 202]
    assert server.connections == 3


def test_a_connection_the_server_closed_while_idle_is_not_written_to() -> None:
    async def one_answer_then_hang_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ACCEPTED)  # says keep-alive, then closes anyway (an idle timeout)
        writer.write_eof()
        await reader.read()  # ends when the client has seen the FIN and closed its side

    # Each next POST starts once the client has seen the FIN: the event, not a pause.
    outcomes, server = post_to(one_answer_then_hang_up, count=3, one_ends_each=True)
    assert [reply.status for reply in outcomes] == [202, 202, 202]
    assert server.connections == 3


def test_a_server_that_closes_without_answering_is_a_disconnection_to_retry() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    [outcome], _ = post_to(hang_up)
    assert isinstance(outcome, TransientSendError) and outcome.kind == "disconnected"
    assert "closed the connection without answering" in str(outcome)


def test_a_server_that_never_answers_is_a_timeout_after_the_policys_seconds() -> None:
    """The timeout is a promise about wall time, so wall time is what is measured: no sooner
    than the policy's 0.3 s, and (a wide bound for a loaded machine) well before 5 s."""

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.Event().wait()  # never answers; ends when the poster hangs up

    async def timed() -> tuple[Any, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcomes, _ = await asyncio.to_thread(post_to, never, 1, 0.3)
        return outcomes[0], loop.time() - started

    outcome, took = asyncio.run(timed())
    assert isinstance(outcome, TransientSendError) and outcome.kind == "timeout"
    assert str(outcome) == "no answer within the timeout"
    assert 0.3 <= took < 5


def test_garbage_instead_of_an_answer_is_a_bad_answer_and_the_connection_is_dropped() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    outcomes, server = post_to(garbage, count=2)
    assert all(isinstance(o, TransientSendError) and o.kind == "bad answer" for o in outcomes)
    assert str(outcomes[0]).startswith("the answer is not HTTP/1.1 (Expected HTTP/")
    assert server.connections == 2


@pytest.mark.parametrize("status", [300, 400, 503])
def test_an_answer_that_is_not_a_2xx_keeps_its_text_with_bad_utf8_replaced_and_its_headers(
    status: int,
) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 %d No\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nb\xffd!" % status
        )
        await writer.drain()
        await reader.read(1)

    [reply], _ = post_to(refuse)
    assert isinstance(reply, Reply) and reply.status == status
    assert reply.text == "b\ufffdd!" and reply.headers["retry-after"] == "7"


def test_a_port_nobody_listens_on_is_a_connect_failure_naming_host_and_port() -> None:
    async def scenario() -> TransientSendError:
        async with RawServer(answer_nothing) as server:
            url = server.url
        return await refusal_of(WirePoster(url, HEADERS, SendPolicy(timeout=5)), TransientSendError)

    error = asyncio.run(scenario())
    assert error.kind == CONNECT_FAILED
    assert re.match(r"cannot connect to 127\.0\.0\.1:[0-9]+ \(.+\)$", str(error))


def test_many_new_connections_look_the_host_up_once() -> None:
    arrived = 0
    all_in = asyncio.Event()

    async def answer_late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal arrived
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(len(BODY))
            arrived += 1
            if arrived == 10:
                all_in.set()
            await asyncio.wait_for(all_in.wait(), 10)  # all ten in flight: ten connections
            writer.write(ACCEPTED)

    async def scenario() -> tuple[list[int], int, int]:
        loop = asyncio.get_running_loop()
        lookups: list[object] = []
        real_lookup = loop.getaddrinfo

        async def counted(*args: Any, **kwargs: Any) -> Any:
            lookups.append(args[0])
            return await real_lookup(*args, **kwargs)

        loop.getaddrinfo = counted  # type: ignore[method-assign]
        async with RawServer(answer_late) as server:
            url = server.url.replace("127.0.0.1", "localhost")
            poster = WirePoster(url, HEADERS, SendPolicy())
            try:
                replies = await asyncio.gather(*(poster.post(BODY) for _ in range(10)))
            finally:
                await poster.aclose()
            return [reply.status for reply in replies], server.connections, len(lookups)

    statuses, connections, lookups = asyncio.run(scenario())
    assert statuses == [202] * 10 and connections == 10
    assert lookups == 1


def refuse_with_407(seen: list[bytes]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    return handler


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_that_wants_credentials_stops_the_run_and_never_sees_the_key_in_a_tunnel(
    monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    seen: list[bytes] = []

    async def scenario() -> EndpointRefused:
        async with RawServer(refuse_with_407(seen)) as proxy:
            for name in ("http_proxy", "https_proxy", "no_proxy", "NO_PROXY"):
                monkeypatch.delenv(name, raising=False)
            proxy_url = proxy.url.removesuffix("/events").replace("//", "//me:s%40cret@")
            monkeypatch.setenv(f"{scheme.upper()}_PROXY", proxy_url)
            poster = WirePoster(f"{scheme}://torque.example:8443/events", HEADERS, SendPolicy())
            return await refusal_of(poster, EndpointRefused)

    error = asyncio.run(scenario())
    assert str(error).startswith("the proxy answered HTTP 407 (Proxy Authentication Required)")
    [request] = seen
    credentials = base64.b64encode(b"me:s@cret").decode()
    assert f"Proxy-Authorization: Basic {credentials}".encode() in request
    if scheme == "https":  # a tunnel: the proxy sees where to, never the key or the event
        assert request.startswith(b"CONNECT torque.example:8443 HTTP/1.1\r\n")
        assert TEST_KEY.encode() not in request
    else:  # plain http through a proxy: asked in absolute form
        assert request.startswith(b"POST http://torque.example:8443/events HTTP/1.1\r\n")


# --- what a failed exchange means: lost (maybe applied) or never sent --------------------------


def test_a_request_written_without_a_readable_answer_is_lost_and_may_have_been_applied() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 50)
        await writer.drain()
        await reader.read()

    for handler in (hang_up, garbage):
        [outcome], _ = post_to(handler)
        assert isinstance(outcome, AnswerLost), outcome


def test_a_request_that_never_left_is_not_lost() -> None:
    async def scenario() -> TransientSendError:
        async with RawServer(lambda r, w: asyncio.sleep(0)) as server:  # a handler doing nothing
            url = server.url
        return await refusal_of(WirePoster(url, HEADERS, SendPolicy(timeout=5)), TransientSendError)

    assert not isinstance(asyncio.run(scenario()), AnswerLost)


def test_a_2xx_head_that_never_ends_is_an_answer_at_the_timeout_not_a_loss() -> None:
    async def head_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 20\r\n\r\n{")
        await writer.drain()
        await reader.read()

    [outcome], _ = post_to(head_only, timeout=0.3)
    assert isinstance(outcome, Reply) and outcome.status == 202
