"""Breaking the sandbox on purpose: injected statuses, dropped connections, slow answers.

Apart from the server, which only asks, once per request, which fault (if any) hits it. Every
draw comes from `random.Random(seed)`, so a test sees the same faults every time; the
latency's jitter draws from a generator of its own, so adding latency keeps the faults.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

from aiohttp import web

from backfill.errors import UsageError
from backfill.sandbox.replies import error, phrase, retry_after

if TYPE_CHECKING:
    from backfill.sandbox.config import SandboxConfig

NAMED_FAULTS = ("reset-before", "reset-after", "slow", "429-no-retry-after")
LATENCY_JITTER = 0.2  # each answer takes latency × (1 ± this), uniformly


def check_fault_table(table: dict[str, float]) -> None:
    """Known kinds, probabilities from 0 to 1 that add up to at most 1."""
    for kind, probability in table.items():
        if not _is_fault_kind(kind):
            raise UsageError(
                f"Fault {kind!r} is not known; use an HTTP status from 400 to 599 "
                f"or one of {', '.join(NAMED_FAULTS)}."
            )
        if not 0.0 <= probability <= 1.0:
            raise UsageError(f"Fault {kind!r} has probability {probability}; use 0 to 1.")
    if sum(table.values()) > 1.0 + 1e-9:
        raise UsageError(f"Fault probabilities add up to more than 1: {table}.")


def _is_fault_kind(kind: str) -> bool:
    return kind in NAMED_FAULTS or (kind.isdigit() and 400 <= int(kind) <= 599)


class Faults:
    """Which fault hits each request, what an injected status answers, how long answers take."""

    __slots__ = ("_jitter", "_rng", "_table", "config", "injected")

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.injected: Counter[str] = Counter()
        self._table = config.fault_table()
        self._rng = random.Random(config.seed)
        self._jitter = random.Random(config.seed + 1)  # apart, so faults stay the same

    def draw(self, index: int) -> str | None:
        """One draw per request while faults apply, so a seed fixes the whole sequence."""
        if not self._table or (self.config.fault_first_n and index >= self.config.fault_first_n):
            return None
        draw, total = self._rng.random(), 0.0
        for kind, probability in self._table.items():
            total += probability
            if draw < total:
                self.injected[kind] += 1
                return kind
        return None

    def answer(self, kind: str) -> web.Response:
        """The answer of an injected status (not of a dropped or slow request)."""
        if kind == "429-no-retry-after":
            return error(429, "Rate limit exceeded")
        status = int(kind)
        wait = self.config.fault_retry_after
        if status == 429:
            return error(429, "Rate limit exceeded", self._retry_after(wait or 1))
        headers = self._retry_after(wait) if wait is not None and status >= 500 else None
        return error(status, f"Injected fault: {status} {phrase(status)}", headers)

    def _retry_after(self, seconds: int) -> dict[str, str]:
        return retry_after(seconds, self.config.retry_after_format)

    def answer_time(self, in_flight: int) -> float:
        """The latency with jitter, stretched when more requests are in flight than the
        capacity: a server that queues, so more load means slower answers, not more."""
        config = self.config
        seconds = config.latency * (1 + LATENCY_JITTER * (2 * self._jitter.random() - 1))
        if config.capacity is not None and in_flight > config.capacity:
            seconds *= in_flight / config.capacity
        return seconds
