"""What a run tells its caller: `Progress` while it goes, `RunSummary` when it ends.

The library never prints: the CLI draws the bar from `Progress` and prints the summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backfill.pipeline.run_records import RunCounts

if TYPE_CHECKING:
    from backfill.send.gate import ConcurrencyGate


@dataclass
class RunSummary:
    counts: RunCounts
    elapsed: float
    report_path: Path
    journal_path: Path | None
    stopped: str | None = None  # "interrupted", "auth", "endpoint", "unreachable"; None: done
    message: str = ""
    slowdowns: int = 0
    total: int | None = None
    uncertain_path: Path | None = None  # rows sent again whose fate was unknown
    network: dict[str, Any] = field(default_factory=dict)  # see Sender.network_report

    @property
    def events_per_second(self) -> float:
        return self.counts.accepted / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "read": counts.read,
            "accepted": counts.accepted,
            "filtered": counts.filtered,
            "failed": counts.failed,
            "unsent": counts.unsent,
            "already_done": counts.already_done,
            "already_sent": counts.already_sent,
            "failed_before": counts.failed_before,
            "retries": counts.retries,
            "uncertain": counts.uncertain,
            "uncertain_report": str(self.uncertain_path) if self.uncertain_path else None,
            "slowdowns": self.slowdowns,
            **self.network,
            "failed_by_reason": dict(counts.failed_by_reason.most_common()),
            "elapsed_seconds": round(self.elapsed, 3),
            "events_per_second": round(self.events_per_second, 1),
            "report": str(self.report_path),
            "journal": str(self.journal_path) if self.journal_path else None,
            "stopped": self.stopped,
            "message": self.message,
        }


@dataclass
class Progress:
    done: int
    total: int | None
    accepted: int
    failed: int
    filtered: int
    in_flight: int = 0  # requests on the wire now
    answer_ms: float | None = None  # median answer time of the latest requests


def progress_of(counts: RunCounts, total: int | None, gate: ConcurrencyGate | None) -> Progress:
    """Where the run stands now: its counts, and the gate's requests and answer times."""
    answer = gate.median_answer_time() if gate is not None else None
    return Progress(
        counts.settled,
        total,
        counts.accepted,
        counts.failed,
        counts.filtered,
        in_flight=gate.in_flight if gate is not None else 0,
        answer_ms=None if answer is None else answer * 1000,
    )
