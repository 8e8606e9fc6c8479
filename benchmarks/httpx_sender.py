"""httpx's counterpart of reference_sender.py: the same bodies, N workers, one AsyncClient.

    python benchmarks/httpx_sender.py --url https://127.0.0.1:PORT/events --events 20000

Measures what httpx would cost if it were backfill's HTTP client (docs/sending.md, "The HTTP
client").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import httpx
import make_orders
from reference_sender import DEFAULT_KEY, build_bodies


async def send(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, int]:
    headers = {
        "Content-Type": "application/json",
        "x-torque-api-key": os.environ.get("TORQUE_API_KEY", DEFAULT_KEY),
    }
    pending = iter(bodies)
    errors = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for body in pending:
            response = await client.post(url, content=body, headers=headers)
            errors += response.status_code >= 300

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--events", type=make_orders.parse_rows, default=20_000)
    parser.add_argument("--concurrency", "-c", type=int, default=32)
    args = parser.parse_args()
    bodies = build_bodies(args.events)
    seconds, errors = asyncio.run(send(args.url, bodies, args.concurrency))
    print(json.dumps({"events": len(bodies), "seconds": round(seconds, 3), "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
