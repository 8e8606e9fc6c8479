"""Connecting: a host whose first address drops SYNs costs a quarter of a second, not the
timeout (Happy Eyeballs, RFC 8305), on loopback only.

A dropped SYN without root: a socket listening on 127.0.0.2 with a backlog of 0, its accept
queue filled by connections nobody accepts. Linux then drops every further SYN (with
net.ipv4.tcp_abort_on_overflow at its default, 0): the client retransmits and waits, as it
would for a broken IPv6 route. The name that resolves to that address first, and to the live
server on 127.0.0.1 second, comes through WirePoster's `resolve` seam (no /etc/hosts edit).
"""

from __future__ import annotations

import asyncio
import socket
import time

from backfill.send.connect import CONNECT_DELAY, Address
from backfill.send.sender import Sender, SendPolicy
from backfill.send.wire import WirePoster
from tests.conftest import DEAD
from tests.test_wire import ACCEPTED, BODY, HEADERS

EVENTS = 200


def test_a_first_address_that_drops_syns_costs_the_connect_delay_not_the_timeout(
    dead_address_and_port: tuple[socket.socket, int],
) -> None:
    live, port = dead_address_and_port

    async def resolve(host: str, port: int) -> list[Address]:
        return [(socket.AF_INET, DEAD), (socket.AF_INET, "127.0.0.1")]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(len(BODY))
                writer.write(ACCEPTED)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def scenario() -> tuple[list[bool], float]:
        server = await asyncio.start_server(answer, sock=live)
        policy = SendPolicy(rate=0, concurrency=16, timeout=20)
        poster = WirePoster(f"http://torque.test:{port}/events", HEADERS, policy, resolve)
        sender = Sender(poster, policy)
        started = time.monotonic()
        try:
            deliveries = await asyncio.wait_for(
                asyncio.gather(*(sender.deliver(BODY) for _ in range(EVENTS))), policy.timeout
            )
        finally:
            await poster.aclose()
            server.close()
        return [delivery.accepted for delivery in deliveries], time.monotonic() - started

    accepted, took = asyncio.run(scenario())
    assert accepted == [True] * EVENTS
    # Without the race every connection would wait the whole 20 s timeout at 127.0.0.2.
    assert took < 10 * CONNECT_DELAY + 5, took


def test_a_path_in_any_script_goes_on_the_wire_percent_encoded() -> None:
    from tests.test_wire import RawServer

    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(ACCEPTED)
        await writer.drain()

    async def scenario() -> int:
        async with RawServer(record) as server:
            url = server.url.replace("/events", "/événements/my events")
            poster = WirePoster(url, HEADERS, SendPolicy(timeout=5))
            try:
                return (await poster.post(BODY)).status
            finally:
                await poster.aclose()

    assert asyncio.run(scenario()) == 202
    assert seen[0].startswith(b"POST /%C3%A9v%C3%A9nements/my%20events HTTP/1.1\r\n")
