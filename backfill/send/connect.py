"""Opening connections: a host's addresses looked up once a minute, tried as RFC 8305's
Happy Eyeballs says, so one dead address costs CONNECT_DELAY, not the whole timeout.

An address that drops SYNs (a broken IPv6 route, a firewall) never refuses: without a race
every connection would wait for `--timeout` there before trying the next. Here the next
address starts CONNECT_DELAY after the previous one (or at once when one fails), the first
to connect wins and the others are closed. Families alternate (IPv6, IPv4, IPv6...), and the
address that won last time is tried first, so a run pays the delay once, not per connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable
from typing import Any

from backfill.send.pool import Connection

CONNECT_DELAY = 0.25  # RFC 8305's "Connection Attempt Delay" (it recommends 250 ms)
ADDRESS_SECONDS = 60.0  # how long a host's looked-up addresses are used
Address = tuple[int, str]  # (family, address)
Resolve = Callable[[str, int], Awaitable[list[Address]]]


async def look_up(host: str, port: int) -> list[Address]:
    """The host's addresses, through the loop's resolver (a thread)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, sockaddr[0]) for family, _, _, _, sockaddr in infos]


class Dialer:
    """Connections to one or two hosts (the endpoint, a proxy), with their addresses cached.
    `resolve` is the seam for tests that need a host with a dead first address."""

    def __init__(self, resolve: Resolve = look_up) -> None:
        self._resolve = resolve
        self._resolved: dict[tuple[str, int], tuple[float, asyncio.Future[list[Address]]]] = {}
        self._winner: dict[tuple[str, int], str] = {}

    async def dial(self, host: str, port: int, tls: ssl.SSLContext | None) -> Connection:
        """A connection to the first of the host's addresses that answers."""
        loop = asyncio.get_running_loop()
        sni = host if tls is not None else None  # the name the certificate must carry

        async def attempt(address: Address) -> Connection:
            family, ip = address
            _, connection = await loop.create_connection(
                Connection, ip, port, family=family, ssl=tls, server_hostname=sni
            )
            return connection

        addresses = self._ordered((host, port), await self._addresses(host, port))
        if not addresses:
            raise OSError(f"no address for {host}")
        connection, ip = await race(addresses, attempt)
        self._winner[(host, port)] = ip
        return connection

    def _ordered(self, key: tuple[str, int], addresses: list[Address]) -> list[Address]:
        """Families interleaved (RFC 8305 section 4), last time's winner first."""
        first_family = addresses[0][0] if addresses else 0
        same = [a for a in addresses if a[0] == first_family]
        other = [a for a in addresses if a[0] != first_family]
        mixed = [a for pair in zip(same, other) for a in pair]
        mixed += same[len(other) :] + other[len(same) :]
        winner = self._winner.get(key)
        return sorted(mixed, key=lambda address: address[1] != winner)

    async def _addresses(self, host: str, port: int) -> list[Address]:
        """Looked up once a minute, not once a connection: a ramp opens hundreds at once,
        and each look-up is a trip through a thread."""
        loop = asyncio.get_running_loop()
        known = self._resolved.get((host, port))
        if known is None or loop.time() - known[0] > ADDRESS_SECONDS or _failed(known[1]):
            lookup = asyncio.ensure_future(self._resolve(host, port))
            known = self._resolved[(host, port)] = (loop.time(), lookup)
        return list(await asyncio.shield(known[1]))


async def race(
    addresses: list[Address], attempt: Callable[[Address], Awaitable[Connection]]
) -> tuple[Connection, str]:
    """The first connection made: a new attempt every CONNECT_DELAY, or as soon as one
    fails; the losers are cancelled or closed. A certificate that does not verify ends the
    race (another address would show the same certificate); otherwise the last failure."""
    waiting = list(addresses)
    running: dict[asyncio.Task[Connection], str] = {}
    failure: BaseException | None = None
    try:
        while waiting or running:
            if waiting:
                address = waiting.pop(0)
                running[asyncio.ensure_future(attempt(address))] = address[1]
            delay = CONNECT_DELAY if waiting else None
            done, _ = await asyncio.wait(running, timeout=delay, return_when=FIRST_COMPLETED)
            for task in done:
                ip = running.pop(task)
                error = task.exception()
                if error is None:
                    return task.result(), ip
                if isinstance(error, ssl.SSLError) or not isinstance(error, OSError):
                    raise error
                failure = error
        raise failure or OSError("no address answered")
    finally:
        for task in running:
            task.cancel()
            task.add_done_callback(_close_late_winner)


def _close_late_winner(task: asyncio.Task[Connection]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().close()


def _failed(lookup: asyncio.Future[Any]) -> bool:
    return lookup.done() and (lookup.cancelled() or lookup.exception() is not None)
