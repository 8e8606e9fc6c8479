"""A run's files: the report, the journal and the list of rows sent again, kept together.

They are opened together (or, resuming, reopened after the journal says the input is the
same), fsynced together on a timer, and closed together, every one of them even after a
write failed. What goes into them, row by row, is `run_records`' job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backfill.books.journal import (
    JournalState,
    JournalWriter,
    check_journal,
    drop_torn_tail,
    journal_path,
    read_journal,
)
from backfill.books.record_file import RecordFile
from backfill.books.report import ReportWriter
from backfill.errors import RecordWriteError
from backfill.pipeline.run_plan import RunPlan
from backfill.pipeline.target import Target

UNCERTAIN = ".uncertain.jsonl"  # beside the report: rows sent again whose fate was unknown
FSYNC_INTERVAL = 1.0  # seconds: an accepted row is on disk at most about this long after


class RunFiles:
    """The report, the journal (when the run keeps one) and, once needed, the uncertain list."""

    def __init__(
        self, plan: RunPlan, target: Target, read_earlier_report: Callable[[], None]
    ) -> None:
        """Open (or, resuming, reopen) the report and the journal of `plan`; when resuming,
        `read_earlier_report` reads the report before it is reopened for writing."""
        self.earlier: JournalState | None = None  # the earlier run's journal, when resuming
        self.journal: JournalWriter | None = None
        self.uncertain_path = plan.report_path.with_name(plan.report_path.name + UNCERTAIN)
        self._uncertain: RecordFile | None = None
        resuming, state, path = False, None, None
        if plan.journal_key is not None:
            key = plan.journal_key.bound_to(target.bound_to)
            path = journal_path(plan.report_path, rehearsal=target.rehearsal)
            state = None if plan.restart else read_journal(path)  # --restart: unread
            resuming = check_journal(
                path, state, key, resume=plan.resume, restart=plan.restart, files=plan.files
            )
        if resuming and state is not None and path is not None:
            self.earlier = state
            read_earlier_report()
            drop_torn_tail(path)  # a full disk may have cut its last line
        else:
            plan.report_path.unlink(missing_ok=True)
            self.uncertain_path.unlink(missing_ok=True)
        self.report = ReportWriter(plan.report_path, [target.api_key])
        if plan.journal_key is not None and path is not None:
            self.journal = JournalWriter(path, key, append=resuming)
            if self.earlier is not None:
                self.journal.files.update(self.earlier.files)

    @property
    def journal_path(self) -> Path | None:
        return self.journal.path if self.journal else None

    def write_uncertain(self, line: bytes) -> None:
        """One row sent again whose fate was unknown; the file is made on the first."""
        if self._uncertain is None:
            self._uncertain = RecordFile(self.uncertain_path)
        self._uncertain.write(line)

    def sync(self) -> None:
        """fsync whatever was written since the last sync (safe from another thread)."""
        for record in (self.journal, self.report, self._uncertain):
            if record is not None:
                record.sync()

    async def keep_synced(
        self,
        on_error: Callable[[Exception], None],
        interval: float | None = None,
    ) -> None:
        """fsync every `interval` seconds, quiet spells included, off the event loop; an
        fsync that fails (EIO...) goes to `on_error`, which stops the run."""
        try:
            while True:
                await asyncio.sleep(FSYNC_INTERVAL if interval is None else interval)
                await asyncio.to_thread(self.sync)
        except RecordWriteError as exc:
            on_error(exc)

    def close(self, summary: dict[str, Any] | None) -> None:
        """Flush and close every file; `summary` marks the journal finished. After a failed
        write nothing more is written, and every file is still closed."""
        files = [f for f in (self.report, self._uncertain, self.journal) if f is not None]
        try:
            if summary is not None and self.journal is not None:
                self.journal.finish(summary)
        finally:
            errors = []
            for record in files:
                try:
                    record.close()
                except RecordWriteError as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
