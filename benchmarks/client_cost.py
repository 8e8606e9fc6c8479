"""What one POST costs the client: httpx's and aiohttp's clients against backfill's `wire.py`.

    .venv/bin/python benchmarks/client_cost.py --events 20000 --rounds 3
    .venv/bin/python benchmarks/client_cost.py --clients wire,httpx   # the test seam's cost

Each round starts `far_server.py` (no latency) in its own process, then posts the same
pre-built bodies with 64 worker tasks on uvloop, once through each client in turn: an
`httpx.AsyncClient`, an `aiohttp.ClientSession` and `backfill.send.wire.WirePoster`. The
figure is this process's CPU per request while sending (building the bodies is not
counted); the server's CPU is its own. Nothing but the client differs, so the difference is
what the client layer costs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import make_orders
from network import Server
from reference_sender import build_bodies

from backfill.send.event_loop import event_loop_runner
from backfill.send.sender import SendPolicy
from backfill.send.wire import WirePoster

HEADERS = {"Content-Type": "application/json", "x-torque-api-key": "bench-key"}
Post = Callable[[bytes], Awaitable[int]]
Close = Callable[[], Awaitable[None]]


def aiohttp_client(url: str, concurrency: int) -> tuple[Post, Close]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency), headers=HEADERS
    )

    async def post(body: bytes) -> int:
        async with session.post(url, data=body, allow_redirects=False) as response:
            await response.read()
            return response.status

    return post, session.close


def httpx_client(url: str, concurrency: int) -> tuple[Post, Close]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(headers=HEADERS, limits=limits, follow_redirects=False)

    async def post(body: bytes) -> int:
        return (await client.post(url, content=body)).status_code

    return post, client.aclose


def wire_client(url: str, concurrency: int) -> tuple[Post, Close]:
    poster = WirePoster(url, HEADERS, SendPolicy(concurrency=concurrency))

    async def post(body: bytes) -> int:
        return (await poster.post(body)).status

    return post, poster.aclose


CLIENTS = {"httpx": httpx_client, "aiohttp": aiohttp_client, "wire": wire_client}


async def cost(client: str, url: str, bodies: list[bytes], concurrency: int) -> float:
    """CPU seconds per request of posting every body once through `client`."""
    post, close = CLIENTS[client](url, concurrency)
    pending = iter(bodies)
    statuses: list[int] = []

    async def worker() -> None:
        for body in pending:
            statuses.append(await post(body))

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    spent = time.process_time() - started
    await close()
    if statuses.count(202) != len(bodies):
        raise RuntimeError(f"{client}: {len(bodies) - statuses.count(202)} requests not accepted")
    return spent / len(bodies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=make_orders.parse_rows, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--clients", default="httpx,aiohttp,wire", help="comma-separated")
    args = parser.parse_args(argv)
    bodies = build_bodies(args.events)
    run = event_loop_runner()
    figures: dict[str, list[float]] = {name: [] for name in args.clients.split(",")}
    for _ in range(args.rounds):
        for client in figures:
            server = Server("far")
            try:
                url = server.url + "/events"
                figures[client].append(run(cost(client, url, bodies, args.concurrency)))
            finally:
                server.stop()
    print("| client | µs of CPU per POST, per round | median |")
    print("| --- | --- | --- |")
    medians = {client: statistics.median(values) for client, values in figures.items()}
    for client, values in figures.items():
        rounds = ", ".join(f"{value * 1e6:.1f}" for value in values)
        print(f"| {client} | {rounds} | {medians[client] * 1e6:.1f} |")
    if "wire" in medians:
        for client, median in medians.items():
            print(f"{client} ÷ wire: {median / medians['wire']:.1f} ×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
