"""The reference for send throughput: the least a Python client must do to post events.

    python benchmarks/reference_sender.py --url http://127.0.0.1:PORT/events \
        --events 20000 --concurrency 32

It posts pre-built JSON bodies with N worker tasks sharing one `aiohttp.ClientSession`
(`TCPConnector(limit=N)`): no reading, mapping, limiter, retries, journal or report. The
bodies are built before the clock starts, from the same generated orders and mapping as the
benchmark (`benchmarks/map.yaml`), so they have the size of backfill's bodies.

The machine is noisy and shared, so backfill's send rate means little on its own; the
harness runs this alternately with backfill and reports backfill's rate as a ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

import aiohttp
import make_orders
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_KEY = "bench-key"


@dataclass(frozen=True)
class SendResult:
    """What one `send_all` run did; `events_per_second` counts every answered request."""

    events: int
    concurrency: int
    seconds: float
    cpu_seconds: float  # this process's CPU while sending: building bodies is not counted
    errors: int

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def build_bodies(count: int, seed: int = make_orders.DEFAULT_SEED) -> list[bytes]:
    """`count` torque-v1 bodies from the generated orders, mapped as `benchmarks/map.yaml` says.

    Only `paid` orders become events (the mapping's filter), so more rows are read than
    bodies returned. Plain Python per row: this runs before the clock starts.
    """
    pools = make_orders.make_pools(seed)
    bodies: list[bytes] = []
    start = 0
    while len(bodies) < count:
        stop = start + make_orders.SLICE_ROWS
        table = make_orders.build_slice(pools, seed, start, stop)
        table = table.filter(pc.equal(table["status"], "paid"))
        utc = pc.cast(table["created_at"], pa.timestamp("ms", tz="UTC"))
        stamps = pc.cast(utc, pa.int64())
        for stamp, row in zip(stamps.to_pylist(), table.to_pylist(), strict=True):
            bodies.append(_body(stamp, row))
            if len(bodies) == count:
                break
        start = stop
    return bodies


def _body(stamp: int, row: dict[str, object]) -> bytes:
    event_data: dict[str, object] = {
        "orderId": row["order_id"],
        "itemId": row["sku"],
        "orderAmount": float(str(row["total"])),
        "quantity": row["quantity"],
        "isPremiumUser": row["tier"] in ("premium", "gold"),
        "country": row["Country/Region"],
        "channel": "backfill",
    }
    if row["coupon"]:
        event_data["coupon"] = row["coupon"]
    event = {
        "timestamp": stamp,
        "user": {"pubKey": row["wallet"]},
        "event_name": "STORE_ORDER",
        "event_data": event_data,
    }
    return json.dumps(event, separators=(",", ":")).encode()


async def send_bodies(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    key: str | None = None,
    key_header: str = "x-torque-api-key",
) -> SendResult:
    """Post every body once with `concurrency` workers; the clock covers connecting too."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    headers = {
        "Content-Type": "application/json",
        key_header: key or os.environ.get("TORQUE_API_KEY", DEFAULT_KEY),
    }
    pending = iter(bodies)  # shared by the workers: each body is taken exactly once
    errors = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        for body in pending:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status >= 300:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return SendResult(len(bodies), concurrency, seconds, cpu, errors)


async def send_all(url: str, bodies: list[bytes], concurrency: int) -> float:
    """Post every body once and return the rate achieved, in events per second."""
    result = await send_bodies(url, bodies, concurrency)
    return result.events_per_second


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:PORT/events")
    parser.add_argument("--events", type=make_orders.parse_rows, default=20_000)
    parser.add_argument("--concurrency", "-c", type=int, default=32)
    parser.add_argument("--key-header", default="x-torque-api-key")
    args = parser.parse_args(argv)
    build_started = time.perf_counter()
    bodies = build_bodies(args.events)
    build_seconds = time.perf_counter() - build_started
    result = asyncio.run(
        send_bodies(args.url, bodies, args.concurrency, key_header=args.key_header)
    )
    summary = {
        **asdict(result),
        "events_per_second": round(result.events_per_second, 1),
        "build_seconds": round(build_seconds, 3),
        "mean_body_bytes": round(sum(map(len, bodies)) / len(bodies), 1),
    }
    print(json.dumps(summary))
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
