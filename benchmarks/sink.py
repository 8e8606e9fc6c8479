"""A fast local HTTP sink that accepts every event, for the send benchmarks.

    python benchmarks/sink.py --port 0      # prints: listening on http://127.0.0.1:PORT

Every POST (any path) is answered 202 with `{"status":"SUCCESS"}`, as Torque answers. The
sink does nothing else per request, so that when the harness compares backfill with the
reference sender, both are limited by the client and not by the server.

- `GET /stats`: `{requests, max_in_any_1s_window, max_window_starts_after,
  min_in_any_1s_window, first_at, last_at, missing_key, body_bytes, cpu_seconds}`.
  `first_at` and `last_at` are `time.time()` of the first and last arrival, so another
  process can compare them with its own launch time. `max_window_starts_after` says where the
  busiest second began (0.0: a burst at the start). `cpu_seconds` is the sink's own CPU time
  since the reset, so the harness can tell when the sink, not the client, set the pace.
- `POST /reset` or `GET /reset`: zero everything before the next measurement.

Arrival times are kept (8 bytes each: 1M requests cost 8 MB) rather than bucketed by whole
seconds, because a burst that straddles a second boundary would hide in per-second buckets;
the sliding 1-second window is computed from them on `/stats`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from array import array
from typing import NamedTuple

import numpy as np
from aiohttp import web

ACCEPTED_BODY = b'{"status":"SUCCESS"}'
KEY_HEADERS = ("x-torque-api-key", "x-api-key")


class Arrivals:
    """Arrival times of accepted requests and the counters shown by /stats."""

    __slots__ = ("body_bytes", "cpu_at_reset", "first_wall", "last_wall", "missing_key", "times")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.times = array("d")  # time.monotonic() of each arrival, in order
        self.first_wall: float | None = None
        self.last_wall: float | None = None
        self.missing_key = 0
        self.body_bytes = 0
        self.cpu_at_reset = time.process_time()

    def record(self, body_size: int, has_key: bool) -> None:
        now = time.time()
        if self.first_wall is None:
            self.first_wall = now
        self.last_wall = now
        self.times.append(time.monotonic())
        self.body_bytes += body_size
        if not has_key:
            self.missing_key += 1

    def stats(self) -> dict[str, object]:
        windows = window_counts(np.frombuffer(self.times, dtype=np.float64))
        return {
            "requests": len(self.times),
            "max_in_any_1s_window": windows.most,
            "max_window_starts_after": windows.most_starts_after,
            "min_in_any_1s_window": windows.fewest,
            "first_at": self.first_wall,
            "last_at": self.last_wall,
            "missing_key": self.missing_key,
            "body_bytes": self.body_bytes,
            "cpu_seconds": round(time.process_time() - self.cpu_at_reset, 4),
        }


class Windows(NamedTuple):
    most: int
    most_starts_after: float | None  # seconds after the first arrival: 0.0 is a start burst
    fewest: int | None


def window_counts(times: np.ndarray, width: float = 1.0) -> Windows:
    """Most and fewest arrivals in any `width`-second window, for sorted arrival times.

    The busiest window can always be slid to start at an arrival, and the quietest to start
    just after one (or at the first), so looking at those windows is exact. The fewest is
    taken only over windows that fit between the first and last arrival, so the ramp-up
    and the tail do not read as stalls; it is None when the arrivals span less than `width`.
    """
    if len(times) == 0:
        return Windows(0, None, None)
    counts = np.searchsorted(times, times + width, side="left") - np.arange(len(times))
    busiest = int(counts.argmax())
    most, most_after = int(counts[busiest]), round(float(times[busiest] - times[0]), 3)
    if times[0] + width > times[-1]:
        return Windows(most, most_after, None)
    # Windows (t, t + width] just after each arrival t that fit, and [first, first + width).
    fits = times + width < times[-1]
    after = np.searchsorted(times, times + width, side="right")
    after -= np.searchsorted(times, times, side="right")
    at_first = int(np.searchsorted(times, times[0] + width, side="left"))
    fewest = min(int(after[fits].min()) if fits.any() else at_first, at_first)
    return Windows(most, most_after, fewest)


def make_app() -> web.Application:
    arrivals = Arrivals()

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        has_key = any(name in request.headers for name in KEY_HEADERS)
        arrivals.record(len(body), has_key)
        return web.Response(status=202, body=ACCEPTED_BODY, content_type="application/json")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(arrivals.stats())

    async def reset(_: web.Request) -> web.Response:
        arrivals.reset()
        return web.json_response({"reset": True})

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_route("*", "/reset", reset)
    app.router.add_post("/{tail:.*}", accept)
    return app


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"listening on http://{host}:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
