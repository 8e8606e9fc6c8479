"""A run's books: where every row went, kept in the files and in the counts.

Accepted rows go to the journal, failed rows to the report, filtered rows are only counted
(the filter decides again next time), and rows an earlier run settled (accepted in its
journal, failed in its report) are counted as already done and never sent or reported
twice. A row is known by (file, row): each file of the source has its own `FileBooks`,
looked up once a chunk (a chunk's rows all come from one file), never once a row.
`RunCounts` holds the invariant `accepted + filtered + failed + unsent + already_done +
already_sent == read`: every counter changes here, through one method per fate. The files
themselves (opening, resuming, fsync, closing) are `run_files`' job.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backfill.books.id_ledger import IdLedger
from backfill.books.id_screen import Screened
from backfill.books.journal import RowSet, drop_torn_tail
from backfill.books.report import read_report
from backfill.mapping.envelopes import Api
from backfill.mapping.events import MappedChunk, RowFailure
from backfill.pipeline.run_files import RunFiles
from backfill.pipeline.run_plan import RunPlan
from backfill.pipeline.target import Target

MAX_REASONS = 50  # distinct reasons kept in the summary; servers may put values in messages
OTHER_REASONS = "other reasons (see the report)"
Item = tuple[int, bytes]  # (row, request body); the row's file is its chunk's
NOT_DECLARED = -1  # a file's journal id before the run reaches it


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
    uncertain: int = 0  # sent again after a crash or a lost answer: possible duplicates
    failed_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def settled(self) -> int:
        return self.accepted + self.filtered + self.failed + self.already_done + self.already_sent


@dataclass
class FileBooks:
    """One file's share of the books: its journal id and the rows an earlier run settled."""

    name: str
    done: RowSet = field(default_factory=RowSet)  # accepted (journal) or failed (report)
    reported: RowSet = field(default_factory=RowSet)  # failed before: in the report
    unknown_fate: RowSet = field(default_factory=RowSet)  # sent before, never heard back
    unnumbered: int = 0  # its report lines without a row: skip as many unnumbered failures
    file_id: int = NOT_DECLARED
    ids: dict[int, str] = field(default_factory=dict)  # row -> id of queued events (ledger)

    def not_done(self, items: list[Item]) -> list[Item]:
        """The items an earlier run did not settle."""
        done = self.done
        return [item for item in items if item[0] not in done] if done else items

    def is_done(self, row: int) -> bool:
        return row in self.done

    def accepted_before(self, row: int) -> bool:
        return row in self.done and row not in self.reported


class RunRecords:
    """Where each row went: the counts, each file's books, and what goes into the files."""

    def __init__(self, plan: RunPlan, target: Target, ledger: IdLedger | None = None) -> None:
        """Open (or, resuming, reopen) the report and the journal of `plan`."""
        self.plan = plan
        self.counts = RunCounts()
        self._api = target.api
        self.ledger = ledger
        self._books: dict[str, FileBooks] = {}
        self._reported: dict[str, FileBooks] = {}  # file -> its rows in the report so far
        self.files = RunFiles(plan, target, read_earlier_report=self._load_reported_rows)
        self._state = self.files.earlier  # the earlier run's, when resuming
        self._journal = self.files.journal
        self.uncertain_path = self.files.uncertain_path

    @property
    def journal_path(self) -> Path | None:
        return self.files.journal_path

    def _load_reported_rows(self) -> None:
        """Rows already in the report are settled: a resumed run must not report them twice."""
        if not self.plan.report_path.exists():
            return
        drop_torn_tail(self.plan.report_path)
        for failure in read_report(self.plan.report_path):
            self.counts.failed_before += 1
            reported = self._reported.setdefault(failure.source, FileBooks(failure.source))
            if failure.row is None:
                reported.unnumbered += 1
            else:
                reported.reported.add(failure.row)

    # --- each file's books -------------------------------------------------------------------

    def books(self, name: str) -> FileBooks:
        """The books of file `name`; the journal declares the file, with its fingerprint,
        the first time the run reaches it."""
        books = self._books.get(name) or self._open_books(name)
        if books.file_id == NOT_DECLARED and self._journal is not None:
            books.file_id = self._journal.declare(name, self.plan.files.get(name))
        return books

    def _open_books(self, name: str) -> FileBooks:
        """What the earlier run (if resuming) settled of file `name`."""
        books = self._reported.get(name) or FileBooks(name)
        state = self._state
        if state is not None:
            books.done = state.rows(state.accepted, name).union(books.reported)
            books.unknown_fate = state.unknown_fate(name, books.reported)
        self._books[name] = books
        return books

    # --- rows sent before whose fate is unknown --------------------------------------------

    def resending(self, books: FileBooks, items: list[Item]) -> None:
        """Items about to go again although an earlier run may have delivered them: count
        them and list them (row, source, event), so the user can look for them in Torque."""
        if not books.unknown_fate:
            return
        for row, body in items:
            if row in books.unknown_fate:
                self.uncertain(books, row, body)

    def uncertain(self, books: FileBooks, row: int, body: bytes) -> None:
        """One request of this row going (again) although an earlier one may have been
        applied, after a crash or a lost answer: a possible duplicate in Torque, counted and
        listed (row, source, event) before it leaves, so the user can look for it there."""
        line = {"row": row, "source": books.name, "event": stored_event(self._api, body)}
        self.files.write_uncertain((json.dumps(line, ensure_ascii=False) + "\n").encode())
        self.counts.uncertain += 1

    # --- rows an earlier run settled -------------------------------------------------------

    def apply_screen(self, books: FileBooks, screened: Screened) -> list[Item]:
        """The ledger's decision on a chunk (id_screen.py), counted and recorded here."""
        assert self.ledger is not None
        self.counts.already_sent += screened.already_sent
        for failure in screened.failures:
            self.failed(failure)
        books.ids.update(screened.ids)
        if screened.settled_ids:
            self.ledger.record_many(screened.settled_ids)
        return screened.items

    def fresh(self, books: FileBooks, items: list[Item]) -> list[Item]:
        """The items not settled by an earlier run; those are counted as already done."""
        fresh = books.not_done(items)
        self.counts.already_done += len(items) - len(fresh)
        return fresh

    # --- one method per fate ---------------------------------------------------------------

    def settle_offline(self, chunk: MappedChunk) -> None:
        """Count the chunk's rows; filtered and unmappable rows are settled right here."""
        self.counts.read += chunk.read
        self.counts.filtered += chunk.filtered
        for failure in chunk.failures:  # a rerun's chunk may hold failures of many files
            books = self._books.get(failure.source) or self._open_books(failure.source)
            if failure.row is None and books.unnumbered:
                books.unnumbered -= 1
                self.counts.already_done += 1
            elif failure.row is not None and failure.row in books.done:
                self.counts.already_done += 1
            else:
                self.failed(failure)

    def on_wire(self, books: FileBooks, row: int) -> None:
        """Written before the request leaves: after a crash, this row's fate is unknown."""
        if self._journal is not None:
            self._journal.on_wire(books.file_id, row)

    def accepted(self, books: FileBooks, row: int) -> None:
        self.counts.accepted += 1
        if self._journal is not None:
            self._journal.accepted(books.file_id, row)
        if self.ledger is not None and row in books.ids:
            self.ledger.record(books.ids.pop(row))

    def not_kept(self, books: FileBooks, row: int) -> None:
        """Sent, but the server refused the key: it kept nothing, so the row is unsent."""
        self.counts.unsent += 1
        if self._journal is not None:
            self._journal.not_kept(books.file_id, row)

    def failed(self, failure: RowFailure) -> None:
        self.counts.failed += 1
        by_reason = self.counts.failed_by_reason
        known = failure.reason in by_reason or len(by_reason) < MAX_REASONS
        by_reason[failure.reason if known else OTHER_REASONS] += 1
        self.files.report.write(failure)
        books = self._books.get(failure.source)
        if self.ledger is not None and books is not None and failure.row in books.ids:
            self.ledger.release(books.ids.pop(failure.row))  # not delivered: a later row may

    def unsent(self, count: int) -> None:
        self.counts.unsent += count

    # --- the files -----------------------------------------------------------------------

    async def keep_synced(
        self, on_error: Callable[[Exception], None], interval: float | None = None
    ) -> None:
        """fsync the files on a timer; see `RunFiles.keep_synced`."""
        await self.files.keep_synced(on_error, interval)

    def close(self, summary: dict[str, Any] | None) -> None:
        """Close the ledger and every file; `summary` marks the journal finished."""
        if self.ledger is not None:
            self.ledger.close()
        self.files.close(summary)


def stored_event(api: Api, body: bytes) -> dict[str, Any]:
    """A request body as the report and the uncertain list keep it (the torque-v1 shape)."""
    return api.parse(json.loads(body)).as_dict()
