"""A run's books: where every row went, kept in the files and in the counts.

Accepted rows go to the journal, failed rows to the report, filtered rows are only counted
(the filter decides again next time), and rows an earlier run settled (accepted in its
journal, failed in its report) are counted as already done and never sent or reported
twice. `RunCounts` holds the invariant `accepted + filtered + failed + unsent +
already_done == read`: every counter changes here, through one method per fate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backfill.events import MappedChunk, RowFailure
from backfill.journal import (
    JournalWriter,
    RowSet,
    check_journal,
    drop_torn_tail,
    journal_path,
    read_journal,
)
from backfill.report import ReportWriter, read_report
from backfill.run_plan import RunPlan

MAX_REASONS = 50  # distinct reasons kept in the summary; servers may put values in messages
OTHER_REASONS = "other reasons (see the report)"
Item = tuple[int, bytes]  # (row, request body)


@dataclass
class RunCounts:
    """Where every row went; `accepted + filtered + failed + unsent + already_done == read`."""

    read: int = 0
    accepted: int = 0
    filtered: int = 0
    failed: int = 0
    unsent: int = 0
    already_done: int = 0
    failed_before: int = 0  # of already_done: rows an earlier run put in the report
    retries: int = 0
    failed_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def settled(self) -> int:
        return self.accepted + self.filtered + self.failed + self.already_done


class RunRecords:
    """The report, the journal, the rows an earlier run settled, and the counts."""

    def __init__(self, plan: RunPlan, secrets: list[str]) -> None:
        """Open (or, resuming, reopen) the report and the journal of `plan`."""
        self.plan = plan
        self.counts = RunCounts()
        self._done_rows = RowSet()
        self._skip_bad_lines = 0  # report lines without a row: skip as many unnumbered lines
        self._journal: JournalWriter | None = None
        if plan.journal_key is None:
            plan.report_path.unlink(missing_ok=True)
            self._report = ReportWriter(plan.report_path, secrets)
            return
        path = journal_path(plan.report_path)
        state = None if plan.restart else read_journal(path)  # --restart discards it unread
        resuming = check_journal(
            path, state, plan.journal_key, resume=plan.resume, restart=plan.restart
        )
        if resuming and state is not None:
            self._done_rows = state.accepted
            self._load_reported_rows()
        else:
            plan.report_path.unlink(missing_ok=True)
        self._report = ReportWriter(plan.report_path, secrets)
        self._journal = JournalWriter(path, plan.journal_key, append=resuming)

    @property
    def journal_path(self) -> Path | None:
        return self._journal.path if self._journal else None

    def _load_reported_rows(self) -> None:
        """Rows already in the report are settled: a resumed run must not report them twice."""
        if not self.plan.report_path.exists():
            return
        drop_torn_tail(self.plan.report_path)
        for failure in read_report(self.plan.report_path):
            self.counts.failed_before += 1
            if failure.row is None:
                self._skip_bad_lines += 1
            else:
                self._done_rows.add(failure.row)

    # --- rows an earlier run settled -------------------------------------------------------

    def not_done(self, items: list[Item]) -> list[Item]:
        """The items an earlier run did not settle."""
        done = self._done_rows
        return [item for item in items if item[0] not in done] if done else items

    def fresh(self, items: list[Item]) -> list[Item]:
        """The items not settled by an earlier run; those are counted as already done."""
        fresh = self.not_done(items)
        self.counts.already_done += len(items) - len(fresh)
        return fresh

    # --- one method per fate ---------------------------------------------------------------

    def settle_offline(self, chunk: MappedChunk) -> None:
        """Count the chunk's rows; filtered and unmappable rows are settled right here."""
        self.counts.read += chunk.read
        self.counts.filtered += chunk.filtered
        for failure in chunk.failures:
            if failure.row is None and self._skip_bad_lines:
                self._skip_bad_lines -= 1
                self.counts.already_done += 1
            elif failure.row is not None and failure.row in self._done_rows:
                self.counts.already_done += 1
            else:
                self.failed(failure)

    def accepted(self, row: int) -> None:
        self.counts.accepted += 1
        if self._journal is not None:
            self._journal.accepted(row)

    def failed(self, failure: RowFailure) -> None:
        self.counts.failed += 1
        by_reason = self.counts.failed_by_reason
        known = failure.reason in by_reason or len(by_reason) < MAX_REASONS
        by_reason[failure.reason if known else OTHER_REASONS] += 1
        self._report.write(failure)

    def unsent(self, count: int) -> None:
        self.counts.unsent += count

    # --- the end ---------------------------------------------------------------------------

    def close(self, summary: dict[str, Any] | None) -> None:
        """Flush and close both files; `summary` marks the journal finished."""
        self._report.close()
        if self._journal is not None:
            if summary is not None:
                self._journal.finish(summary)
            self._journal.close()
