"""A retry after a lost answer is a possible duplicate: the sender says so before it leaves,
and only then (not after a status the server did say, not after a request that never left)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from backfill.mapping.envelopes import TORQUE_V1
from backfill.send.httpx_poster import HttpxPoster
from backfill.send.sender import Sender, SendPolicy
from tests.conftest import TEST_KEY

URL = "https://api.torque.so/events"
BODY = b'{"timestamp":1,"event_name":"x"}'
READ_TIMEOUT = httpx.ReadTimeout("slow")
DROPPED = httpx.RemoteProtocolError("closed")
REFUSED = httpx.ConnectError("refused")


def uncertain_retries(*steps: httpx.Response | Exception, max_retries: int = 3) -> tuple[int, int]:
    """(requests sent, times the sender said a request may duplicate an applied one)."""
    sent: list[int] = []
    said: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(1)
        step = steps[min(len(sent), len(steps)) - 1]
        if isinstance(step, Exception):
            raise step
        return step

    async def go() -> None:
        policy = SendPolicy(rate=0, max_retries=max_retries, backoff_base=0.0)
        transport = httpx.MockTransport(handler)
        poster = HttpxPoster(URL, {TORQUE_V1.key_header: TEST_KEY}, policy, transport=transport)
        sender = Sender(poster, policy)
        try:
            await sender.deliver(BODY, on_uncertain=lambda: said.append(len(sent) + 1))
        finally:
            await poster.aclose()

    asyncio.run(go())
    return len(sent), len(said)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ((httpx.Response(202),), (1, 0)),
        ((READ_TIMEOUT, httpx.Response(202)), (2, 1)),
        ((DROPPED, DROPPED, httpx.Response(202)), (3, 2)),
        ((DROPPED, httpx.Response(503), httpx.Response(202)), (3, 1)),
        ((httpx.Response(503), httpx.Response(202)), (2, 0)),
        ((REFUSED, httpx.Response(202)), (2, 0)),
        ((DROPPED,), (4, 3)),  # given up after 4: 3 retries may each duplicate
    ],
)
def test_each_retry_after_a_lost_answer_and_only_those_is_said_uncertain(
    steps: tuple[httpx.Response | Exception, ...], expected: tuple[int, int]
) -> None:
    assert uncertain_retries(*steps) == expected
