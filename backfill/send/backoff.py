"""How long a delivery waits before its next attempt, apart from the loop that retries.

Full-jitter exponential backoff, unless the server said `Retry-After`: then every sender
pauses that long (through the shared limiter), and a wait long enough to look broken is
told to the user. A 429 also slows the whole run down.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from backfill.errors import RateLimited, TransientSendError

if TYPE_CHECKING:
    from backfill.send.limiter import AdaptiveLimiter
    from backfill.send.sender import SendPolicy

LONG_RETRY_AFTER = 300.0  # a server asking for longer is told to the user (it may be broken)


def backoff_delay(attempt: int, policy: SendPolicy, rng: random.Random) -> float:
    """Full jitter: uniform between 0 and the exponential ceiling for this attempt."""
    ceiling = min(policy.backoff_max, policy.backoff_base * 2 ** (attempt - 1))
    return rng.uniform(0, ceiling)


class RetryWaits:
    """The wait before each retry, and what it tells every sender (pause, slow down)."""

    def __init__(
        self,
        policy: SendPolicy,
        limiter: AdaptiveLimiter,
        rng: random.Random,
        on_notice: Callable[[str], None] | None,
    ) -> None:
        self.policy = policy
        self.limiter = limiter
        self.longest_retry_after = 0.0
        self._rng = rng
        self._on_notice = on_notice

    def before_retry(self, exc: TransientSendError, attempt: int) -> float:
        """Seconds to wait before attempt `attempt + 1`, after `exc`."""
        if isinstance(exc, RateLimited):
            self.limiter.slow_down(None)
        if exc.retry_after is None:
            return backoff_delay(attempt, self.policy, self._rng)
        self._honour_retry_after(exc)
        return exc.retry_after * (1 + 0.1 * self._rng.random())

    def _honour_retry_after(self, exc: TransientSendError) -> None:
        """Pause every sender for as long as the server asked; say so when that is long."""
        seconds = exc.retry_after or 0.0
        extended = self.limiter.pause(seconds)
        if seconds > self.longest_retry_after:
            self.longest_retry_after = seconds
        if extended and seconds > LONG_RETRY_AFTER and self._on_notice is not None:
            self._on_notice(
                f"The server asked to wait {duration(seconds)} before sending again "
                f"(HTTP {exc.status}, Retry-After). Waiting as asked; Ctrl-C stops, and "
                "--resume continues later."
            )


def duration(seconds: float) -> str:
    """A wait as people say it: seconds, minutes or hours."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
