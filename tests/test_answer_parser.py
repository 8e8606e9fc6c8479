"""`AnswerReader` at its edges: the caps on head, body and interim answers, to the byte; what
a malformed answer says (the failure report shows it) and what it still tells; a CONNECT's
2xx; answers that arrive in pieces. `test_wire.py` has the framing of whole answers."""

from __future__ import annotations

import pytest

from backfill.send.answer_parser import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    MAX_INTERIM,
    Answer,
    AnswerMalformed,
    AnswerReader,
)


def fed(*pieces: bytes, to_connect: bool = False) -> tuple[AnswerReader, Answer | None]:
    """A reader fed `pieces` one read at a time; the answer once one comes out."""
    reader = AnswerReader()
    reader.expect(to_connect)
    answer = None
    for piece in pieces:
        answer = reader.feed(piece)
    return reader, answer


def malformed(*pieces: bytes, at_eof: bool = False) -> AnswerMalformed:
    with pytest.raises(AnswerMalformed) as caught:
        reader, _ = fed(*pieces)
        if at_eof:
            reader.feed_eof()
    return caught.value


def test_a_200_is_a_final_answer_not_an_interim_one() -> None:
    _, answer = fed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert answer is not None and (answer.status, answer.body) == (200, b"ok")


def test_a_reason_that_arrives_in_two_reads_is_kept_whole() -> None:
    _, answer = fed(b"HTTP/1.1 400 Bad Re", b"quest\r\nContent-Length: 0\r\n\r\n")
    assert answer is not None and answer.reason == "Bad Request"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"HTTX/1.1 200 OK\r\n\r\n", "Expected HTTP/"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "a 101 Switching "),
    ],
)
def test_what_is_not_an_answer_says_why(raw: bytes, why: str) -> None:
    caught = malformed(raw)
    assert str(caught).startswith(why) and caught.answer is None


def test_an_unasked_101_is_malformed_with_its_reason() -> None:
    caught = malformed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n")
    assert str(caught) == "a 101 Switching Protocols that nobody asked for"


def test_an_answer_cut_short_keeps_what_it_said() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    caught = malformed(head, b"a", b"bc", at_eof=True)
    assert str(caught) == "the connection ended in the middle of the answer"
    said = caught.answer
    assert said is not None and (said.status, said.reason, said.body) == (200, "OK", b"abc")
    assert said.headers == {"content-length": "10"} and said.keep_alive is False


def test_a_chunked_answer_cut_short_is_malformed_not_whole() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"
    assert malformed(head, at_eof=True).answer is not None


def test_a_status_line_that_arrives_in_pieces_is_kept_when_the_head_is_cut_short() -> None:
    caught = malformed(b"HTTP/1.1 2", b"02 Accepted\r\nContent-", at_eof=True)
    assert caught.answer is not None and caught.answer.status == 202


def test_a_head_without_an_end_is_malformed_past_its_cap_even_in_small_reads() -> None:
    pieces = [b"HTTP/1.1 200 OK\r\n"] + [b"X-Pad: " + b"a" * 1000 + b"\r\n"] * 70
    caught = malformed(*pieces)
    assert str(caught) == f"no end of the head in {MAX_HEAD_BYTES} bytes"
    assert caught.answer is not None and caught.answer.status == 200


def test_a_head_of_exactly_the_cap_is_still_read() -> None:
    start = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: "
    head = start + b"a" * (MAX_HEAD_BYTES - len(start))
    _, answer = fed(head, b"\r\n\r\n")
    assert answer is not None and answer.status == 200


def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_malformed() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
    megabyte = b"a" * 2**20
    pieces = [megabyte] * (MAX_BODY_BYTES // 2**20)
    _, answer = fed(head % MAX_BODY_BYTES, *pieces)
    assert answer is not None and len(answer.body) == MAX_BODY_BYTES
    caught = malformed(head % (MAX_BODY_BYTES + 1), *pieces, b"a")
    assert str(caught) == f"an answer of more than {MAX_BODY_BYTES} bytes"


def test_sixteen_interim_answers_are_skipped_and_a_seventeenth_is_malformed() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    final = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    _, answer = fed(*[interim] * MAX_INTERIM, final)
    assert answer is not None and answer.status == 202
    caught = malformed(*[interim] * (MAX_INTERIM + 1), final)
    assert str(caught) == f"more than {MAX_INTERIM} interim 1xx answers"


@pytest.mark.parametrize("status", [200, 299])
def test_a_2xx_to_connect_is_whole_at_the_end_of_its_head(status: int) -> None:
    """No length and not chunked: after any other request this body would run to EOF."""
    _, answer = fed(b"HTTP/1.1 %d Connection established\r\n\r\n" % status, to_connect=True)
    assert answer is not None and answer.status == status


def test_a_300_to_connect_is_an_ordinary_answer_with_its_body() -> None:
    raw = b"HTTP/1.1 300 Choices\r\nContent-Length: 3\r\n\r\nabc"
    _, answer = fed(raw, to_connect=True)
    assert answer is not None and (answer.status, answer.body) == (300, b"abc")
