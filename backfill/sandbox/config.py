"""How the sandbox is set up: where it listens, what it accepts, which faults it injects.

Checked once, when made, so that a bad setting is a `UsageError` before anything listens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from backfill.errors import UsageError
from backfill.sandbox.faults import check_fault_table
from backfill.sandbox.schemas import EventSchema

RETRY_AFTER_FORMATS = ("seconds", "http-date")


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox listens, what it accepts and which faults it injects."""

    host: str = "127.0.0.1"
    port: int = 8787  # 0 picks a free port; read it back from `Sandbox.url`
    key: str | None = None  # None accepts any non-empty key
    schemas: tuple[EventSchema, ...] = ()
    rate: float | None = None  # accepted events per second before answering 429
    retry_after_format: str = "seconds"
    fail_rate: float = 0.0  # shorthand for faults={"503": fail_rate}
    faults: Mapping[str, float] = field(default_factory=dict)
    slow_seconds: float = 2.0
    fault_first_n: int = 0  # faults only hit the first N requests; 0 means all of them
    seed: int = 0
    store: Path | None = None
    tls_cert: Path | None = None  # serve HTTPS with this certificate chain (PEM)...
    tls_key: Path | None = None  # ...and its private key (PEM)
    redirect_to: str | None = None  # answer every event with a redirect to this base URL
    redirect_status: int = 307
    fault_retry_after: int | None = None  # Retry-After of injected 429s (default 1) and 5xx
    latency: float = 0.0  # seconds each answer takes, ± LATENCY_JITTER
    capacity: int | None = None  # in flight beyond this, answers slow down in proportion

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("tls_cert and tls_key go together: give both, or neither.")
        if not 300 <= self.redirect_status < 400:
            raise UsageError(f"redirect_status must be a 3xx, not {self.redirect_status}.")
        if self.retry_after_format not in RETRY_AFTER_FORMATS:
            raise UsageError(
                f"retry_after_format {self.retry_after_format!r} is not one of "
                f"{RETRY_AFTER_FORMATS}."
            )
        if self.rate is not None and not self.rate > 0:
            raise UsageError(f"rate must be a positive number of events/second, not {self.rate}.")
        if self.fault_first_n < 0 or self.slow_seconds < 0 or self.latency < 0:
            raise UsageError("fault_first_n, slow_seconds and latency cannot be negative.")
        if self.capacity is not None and self.capacity < 1:
            raise UsageError(f"capacity must be at least 1 request in flight, not {self.capacity}.")
        check_fault_table(self.fault_table())

    def fault_table(self) -> dict[str, float]:
        """`faults` with `fail_rate` folded in, in a fixed order so draws are reproducible."""
        table = {str(kind): float(p) for kind, p in self.faults.items()}
        if self.fail_rate:
            table["503"] = table.get("503", 0.0) + self.fail_rate
        return dict(sorted(table.items()))
