"""A run's books: where every row went, kept in the files and in the counts.

Accepted rows go to the journal, failed rows to the report, filtered rows are only counted
(the filter decides again next time), and rows an earlier run settled (accepted in its
journal, failed in its report) are counted as already done and never sent or reported
twice. `RunCounts` holds the invariant `accepted + filtered + failed + unsent +
already_done == read`: every counter changes here, through one method per fate.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backfill.errors import RecordWriteError
from backfill.events import MappedChunk, RowFailure
from backfill.id_ledger import IdLedger
from backfill.id_screen import Screened
from backfill.journal import (
    JournalWriter,
    RowSet,
    check_journal,
    drop_torn_tail,
    journal_path,
    read_journal,
)
from backfill.record_file import RecordFile
from backfill.report import ReportWriter, read_report
from backfill.run_plan import RunPlan
from backfill.target import Target

MAX_REASONS = 50  # distinct reasons kept in the summary; servers may put values in messages
OTHER_REASONS = "other reasons (see the report)"
UNCERTAIN = ".uncertain.jsonl"  # beside the report: rows sent again whose fate was unknown
FSYNC_INTERVAL = 1.0  # seconds: an accepted row is on disk at most about this long after
Item = tuple[int, bytes]  # (row, request body)


@dataclass
class RunCounts:
    """Where every row went; `accepted + filtered + failed + unsent + already_done +
    already_sent == read`."""

    read: int = 0
    accepted: int = 0
    filtered: int = 0
    failed: int = 0
    unsent: int = 0
    already_done: int = 0
    already_sent: int = 0  # skipped: the ledger says an earlier run delivered their ids
    failed_before: int = 0  # of already_done: rows an earlier run put in the report
    retries: int = 0
    uncertain: int = 0  # sent again: an earlier run sent them but never heard back
    failed_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def settled(self) -> int:
        return self.accepted + self.filtered + self.failed + self.already_done + self.already_sent


class RunRecords:
    """The report, the journal, the rows an earlier run settled, and the counts."""

    def __init__(self, plan: RunPlan, target: Target, ledger: IdLedger | None = None) -> None:
        """Open (or, resuming, reopen) the report and the journal of `plan`."""
        self.plan = plan
        self.counts = RunCounts()
        self._api = target.api
        self.ledger = ledger
        self._ids: dict[int, str] = {}  # row -> id of the events queued, for the ledger
        self._reported_rows = RowSet()
        self._done_rows = RowSet()
        self._unknown_fate = RowSet()  # sent by an earlier run that never heard back
        self._skip_bad_lines = 0  # report lines without a row: skip as many unnumbered lines
        self._journal: JournalWriter | None = None
        self._file_id = 0
        self.uncertain_path = plan.report_path.with_name(plan.report_path.name + UNCERTAIN)
        self._uncertain: RecordFile | None = None
        resuming, state, path = False, None, None
        if plan.journal_key is not None:
            key = plan.journal_key.bound_to(target.bound_to)
            path = journal_path(plan.report_path, rehearsal=target.rehearsal)
            state = None if plan.restart else read_journal(path)  # --restart: unread
            resuming = check_journal(path, state, key, resume=plan.resume, restart=plan.restart)
        if resuming and state is not None and path is not None:
            reported = self._load_reported_rows()
            self._reported_rows = reported
            name = plan.source_name
            self._done_rows = state.rows(state.accepted, name).minus()
            for row in reported.rows():
                self._done_rows.add(row)
            self._unknown_fate = state.unknown_fate(name, reported)
            drop_torn_tail(path)  # a full disk may have cut its last line
        else:
            plan.report_path.unlink(missing_ok=True)
            self.uncertain_path.unlink(missing_ok=True)
        self._report = ReportWriter(plan.report_path, [target.api_key])
        if plan.journal_key is not None and path is not None:
            self._journal = JournalWriter(path, key, append=resuming)
            known = state.files if resuming and state is not None else None
            self._file_id = self._journal.declare(plan.source_name, known)

    @property
    def journal_path(self) -> Path | None:
        return self._journal.path if self._journal else None

    def _load_reported_rows(self) -> RowSet:
        """Rows already in the report are settled: a resumed run must not report them twice."""
        reported = RowSet()
        if not self.plan.report_path.exists():
            return reported
        drop_torn_tail(self.plan.report_path)
        for failure in read_report(self.plan.report_path):
            self.counts.failed_before += 1
            if failure.row is None:
                self._skip_bad_lines += 1
            else:
                reported.add(failure.row)
        return reported

    # --- rows sent before whose fate is unknown --------------------------------------------

    def resending(self, items: list[Item]) -> None:
        """Items about to go again although an earlier run may have delivered them: count
        them and list them (row, source, event), so the user can look for them in Torque."""
        if not self._unknown_fate:
            return
        for row, body in items:
            if row in self._unknown_fate:
                if self._uncertain is None:
                    self._uncertain = RecordFile(self.uncertain_path)
                event = self._api.parse(json.loads(body)).as_dict()
                line = {"row": row, "source": self.plan.source_name, "event": event}
                self._uncertain.write((json.dumps(line, ensure_ascii=False) + "\n").encode())
                self.counts.uncertain += 1

    # --- rows an earlier run settled -------------------------------------------------------

    def not_done(self, items: list[Item]) -> list[Item]:
        """The items an earlier run did not settle."""
        done = self._done_rows
        return [item for item in items if item[0] not in done] if done else items

    def is_done(self, row: int) -> bool:
        return row in self._done_rows

    def accepted_before(self, row: int) -> bool:
        return row in self._done_rows and row not in self._reported_rows

    def apply_screen(self, screened: Screened) -> list[Item]:
        """The ledger's decision on a chunk (id_screen.py), counted and recorded here."""
        assert self.ledger is not None
        self.counts.already_sent += screened.already_sent
        for failure in screened.failures:
            self.failed(failure)
        self._ids.update(screened.ids)
        if screened.settled_ids:
            self.ledger.record_many(screened.settled_ids)
        return screened.items

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

    def on_wire(self, row: int) -> None:
        """Written before the request leaves: after a crash, this row's fate is unknown."""
        if self._journal is not None:
            self._journal.on_wire(self._file_id, row)

    def accepted(self, row: int) -> None:
        self.counts.accepted += 1
        if self._journal is not None:
            self._journal.accepted(self._file_id, row)
        if self.ledger is not None and row in self._ids:
            self.ledger.record(self._ids.pop(row))

    def not_kept(self, row: int) -> None:
        """Sent, but the server refused the key: it kept nothing, so the row is unsent."""
        self.counts.unsent += 1
        if self._journal is not None:
            self._journal.not_kept(self._file_id, row)

    def failed(self, failure: RowFailure) -> None:
        self.counts.failed += 1
        by_reason = self.counts.failed_by_reason
        known = failure.reason in by_reason or len(by_reason) < MAX_REASONS
        by_reason[failure.reason if known else OTHER_REASONS] += 1
        self._report.write(failure)
        if self.ledger is not None and failure.row in self._ids:
            self.ledger.release(self._ids.pop(failure.row))  # not delivered: a later row may

    def unsent(self, count: int) -> None:
        self.counts.unsent += count

    # --- durability ----------------------------------------------------------------------

    def sync(self) -> None:
        """fsync whatever was written since the last sync (safe from another thread)."""
        for record in (self._journal, self._report, self._uncertain):
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

    # --- the end ---------------------------------------------------------------------------

    def close(self, summary: dict[str, Any] | None) -> None:
        """Flush and close every file; `summary` marks the journal finished. After a failed
        write nothing more is written, and every file is still closed."""
        if self.ledger is not None:
            self.ledger.close()
        files = [f for f in (self._report, self._uncertain, self._journal) if f is not None]
        try:
            if summary is not None and self._journal is not None:
                self._journal.finish(summary)
        finally:
            errors = []
            for record in files:
                try:
                    record.close()
                except RecordWriteError as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
