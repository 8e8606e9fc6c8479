"""The unreachable-server cutoff: stop a run whose endpoint is gone for good.

Without it, a server that died would make every remaining row spend all its retries, for
days on a large file. After enough events in a row that could not even connect, the run
stops instead, and `--resume` sends the rest once the server is back.
"""

from __future__ import annotations

from backfill.send.answers import CONNECT_FAILED

UNREACHABLE_AFTER = 20  # events in a row that could not even connect: the server is gone


class UnreachableCutoff:
    """Counts events in a row that could not connect; trips once at the limit."""

    def __init__(self, concurrency: int) -> None:
        # A full round of senders failing at once is one outage, not yet proof it is gone.
        self.limit = max(UNREACHABLE_AFTER, concurrency)
        self.tripped = False
        self._streak = 0

    def observe(self, kind: str) -> bool:
        """Note how one event ended; True the moment the cutoff trips (and only then)."""
        self._streak = self._streak + 1 if kind == CONNECT_FAILED else 0
        if self._streak >= self.limit and not self.tripped:
            self.tripped = True
            return True
        return False

    def message(self) -> str:
        return (
            f"{self.limit} events in a row could not connect to the endpoint. "
            "When it is back, --resume sends the rest; `backfill rerun` the report for "
            "those that gave up."
        )
