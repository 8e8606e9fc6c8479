"""What the sandbox saw: every request's arrival, load and answer time, counted for `stats()`.

These are what an end-to-end test asserts on (duplicates after lost answers, the peak rate
the sender reached, how many were in flight), so they are kept apart from serving.
Monotonic times are appended in order, so they are already sorted for window scans.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any


class Traffic:
    """The counters and the times behind `Sandbox.stats()`."""

    __slots__ = (
        "accepted",
        "answer_seconds",
        "answers",
        "arrivals",
        "connections",
        "hashes",
        "in_flight",
        "loads",
        "peak_in_flight",
        "rejected",
    )

    def __init__(self) -> None:
        self.in_flight = self.peak_in_flight = 0
        self.arrivals = array("d")
        self.loads = array("i")  # requests in flight at each arrival, this one included
        self.answers = array("d")  # when each answered request came in, in answer order
        self.answer_seconds = array("d")  # ... and how long it took to answer
        self.connections: set[Any] = set()  # client (host, port): one TLS handshake each
        self.accepted = array("d")
        self.hashes: set[bytes] = set()  # digests of accepted bodies, to count duplicates
        self.rejected: Counter[str] = Counter()

    def came(self, transport: asyncio.BaseTransport | None) -> float:
        """A request came in (on `transport`, when known); returns when, for `answered`."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.loads.append(self.in_flight)
        if transport is not None:
            self.connections.add(transport.get_extra_info("peername"))
        return time.monotonic()

    def answered(self, came: float) -> None:
        self.in_flight -= 1
        self.answers.append(came)
        self.answer_seconds.append(time.monotonic() - came)

    def accept(self, body: dict[str, Any]) -> None:
        self.accepted.append(time.monotonic())
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        self.hashes.add(hashlib.blake2b(canonical.encode(), digest_size=16).digest())

    def count(self, status: int) -> None:
        if status >= 300:
            self.rejected[str(status)] += 1

    def stats(self, faults: Mapping[str, int]) -> dict[str, Any]:
        """Counters for tests and people; status and fault keys are strings, as in JSON."""
        accepted = self.accepted
        return {
            "requests": len(self.arrivals),
            "accepted": len(accepted),
            "duplicates": len(accepted) - len(self.hashes),
            "rejected_by_status": dict(sorted(self.rejected.items())),
            "faults_injected": dict(sorted(faults.items())),
            "max_requests_in_any_1s_window": _max_in_window(self.arrivals),
            "max_accepted_in_any_1s_window": _max_in_window(accepted),
            "max_in_flight": self.peak_in_flight,
            "connections": len(self.connections),
            "accepted_span_seconds": accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0,
            "timeline": _timeline(self.arrivals, self.loads, self.answers, self.answer_seconds),
        }


def _timeline(
    arrivals: Sequence[float],
    loads: Sequence[int],
    answers: Sequence[float] = (),
    answer_seconds: Sequence[float] = (),
) -> list[dict[str, float]]:
    """Per second since the first request: requests, the most and mean in flight, and the
    mean time the requests that came in that second took to be answered."""
    seconds: dict[int, list[int]] = {}
    for moment, load in zip(arrivals, loads):
        seconds.setdefault(int(moment - arrivals[0]), []).append(load)
    took: dict[int, list[float]] = {}
    for moment, spent in zip(answers, answer_seconds):
        took.setdefault(max(0, int(moment - arrivals[0])), []).append(spent)
    return [
        {
            "second": second,
            "requests": len(v),
            "max_in_flight": max(v),
            "mean_in_flight": round(sum(v) / len(v), 1),
            "mean_answer_ms": round(1000 * _mean(took.get(second) or [0.0]), 1),
        }
        for second, v in sorted(seconds.items())
    ]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """Most timestamps in any half-open window [t, t + width); `times` must be sorted."""
    best = start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best
