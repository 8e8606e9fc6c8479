"""Reading the endpoint's answers with llhttp (Node's HTTP parser, through `httptools`).

llhttp does the framing of RFC 9112: the status line, header lines (a folded one is
unfolded and a bare LF ends a line, as RFC 9112 lets a client accept), Content-Length
(two of them are an error), chunked bodies (a size that is not plain hex is an error),
interim 1xx answers, and whether the connection may carry another request. What is left
here is what a client needs around it:

- a body framed by the end of the connection (no length, not chunked) ends at EOF;
- a cap on the head (MAX_HEAD_BYTES), the body (MAX_BODY_BYTES) and the interim answers
  (MAX_INTERIM): a server that never stops sending is a malformed answer, not a hang;
- an unasked `101 Switching Protocols` is malformed; a 2xx to CONNECT has no body;
- what a broken answer still says: `AnswerMalformed.status` is the status of a final
  answer whose status line came in whole, so a 2xx the server sent counts as accepted
  even when the rest of its answer is garbage.
"""

from __future__ import annotations

import re

import httptools

MAX_HEAD_BYTES = 64 * 1024  # an answer's status line and headers; more is not an HTTP server
MAX_BODY_BYTES = 16 * 1024 * 1024  # an events API's answer is small; a runaway one is cut off
MAX_INTERIM = 16  # 1xx answers before the real one; an endless series is a broken server
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?:[ \t][^\r\n]*)?\r?\n")


class AnswerMalformed(Exception):
    """What came back is not a whole HTTP/1.x answer. `answer`: what could be read of it
    when its final status line came in whole (its status is what the server said)."""

    def __init__(self, message: str, answer: Answer | None = None) -> None:
        super().__init__(message)
        self.answer = answer


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


class _TunnelOpen(Exception):
    """Raised from a callback to stop parsing: CONNECT's 2xx head is all there is."""


class AnswerReader:
    """The answers of one connection, one at a time: `expect`, then `feed` until an answer
    comes out. After a malformed answer (or a tunnel) the connection is not reused."""

    __slots__ = (
        "_answer",
        "_body",
        "_body_bytes",
        "_head",
        "_head_bytes",
        "_headers",
        "_headers_done",
        "_interim",
        "_parser",
        "_reason",
        "_to_connect",
        "extra",
    )

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._parser.set_dangerous_leniencies(
            lenient_headers=True,  # obs-fold: RFC 9112 5.2 says a client must accept it
            lenient_optional_cr_before_lf=True,  # a bare LF ends a line (RFC 9112 2.2 MAY)
        )
        self.expect()

    def expect(self, to_connect: bool = False) -> None:
        """Get ready for the answer to the request about to be written."""
        self._to_connect = to_connect
        self._answer: Answer | None = None
        self.extra = False  # bytes came after the answer: the connection cannot be trusted
        self._interim = 0
        self._begin()

    def _begin(self) -> None:
        self._headers: dict[str, str] = {}
        self._reason = b""
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._head: list[bytes] = []
        self._head_bytes = 0
        self._headers_done = False

    def feed(self, data: bytes) -> Answer | None:
        """The answer once `data` completes it; None while more is needed."""
        if not self._headers_done:
            self._head.append(data)
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _TunnelOpen):
                raise self._malformed(str(exc.__context__ or exc)) from None
        except httptools.HttpParserError as exc:
            if self._answer is None:
                raise self._malformed(str(exc)) from None
            self.extra = True  # garbage after a whole answer
        if self._answer is None and not self._headers_done and self._head_bytes > MAX_HEAD_BYTES:
            raise self._malformed(f"no end of the head in {MAX_HEAD_BYTES} bytes")
        return self._answer

    def feed_eof(self) -> Answer | None:
        """The connection ended: an answer framed by its end is whole now; None when the
        server answered nothing at all; `AnswerMalformed` when it ended mid-answer."""
        if self._answer is not None:
            return self._answer
        if self._headers_done and not self._framed():
            return self._whole(keep_alive=False)
        if not self._head_bytes and not self._headers_done:
            return None
        raise self._malformed("the connection ended in the middle of the answer")

    def _framed(self) -> bool:
        headers = self._headers
        return "content-length" in headers or "transfer-encoding" in headers

    # --- llhttp's callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._answer is not None:
            self.extra = True  # a second answer to one request

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip()
        headers = self._headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status == 101:
            raise ValueError("a 101 Switching Protocols that nobody asked for")
        self._headers_done = True
        self._head = []
        if self._to_connect and 200 <= status < 300 and self._answer is None:
            self._answer = self._whole(keep_alive=True)
            raise _TunnelOpen

    def on_body(self, body: bytes) -> None:
        if self._answer is not None:
            return
        self._body_bytes += len(body)
        if self._body_bytes > MAX_BODY_BYTES:
            raise ValueError(f"an answer of more than {MAX_BODY_BYTES} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._answer is not None:
            return
        if self._parser.get_status_code() < 200:  # interim (100 Continue, 103 Early Hints)
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise ValueError(f"more than {MAX_INTERIM} interim 1xx answers")
            self._begin()
            return
        self._answer = self._whole(self._parser.should_keep_alive())

    # --- what comes out ------------------------------------------------------------------

    def _whole(self, keep_alive: bool) -> Answer:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        reason = self._reason.decode("latin-1").strip()
        status = self._parser.get_status_code()
        return Answer(status, reason, self._headers, body, keep_alive)

    def _malformed(self, why: str) -> AnswerMalformed:
        return AnswerMalformed(why, self.partial())

    def partial(self) -> Answer | None:
        """What the server said so far, if its final status line came in whole: a 2xx
        there means the event was accepted, whatever follows (a timeout, garbage)."""
        if self._answer is not None:
            return self._answer
        if self._headers_done:
            status: int | None = self._parser.get_status_code()
        else:
            lines = _STATUS_LINE.findall(b"".join(self._head)[:MAX_HEAD_BYTES])
            status = int(lines[-1]) if lines else None
        if status is None or status < 200:
            return None
        body = b"".join(self._body)
        reason = self._reason.decode("latin-1").strip()
        return Answer(status, reason, self._headers, body, False)
