"""The crash-safe record of where each sent row stands, so a resumed run sends only the rest.

A journal is an append-only text file beside the report (`<report>.state`; a `--sandbox`
rehearsal keeps its own, `<report>.sandbox.state`):

    {"version": 3, "source": ..., "mapping": ..., "api": ..., "endpoint": ..., "started": ...}
    f 0 {"name": "exports/orders-1.csv", "fingerprint": {"size": ..., "mtime_ns": ...}}
    w 0 17                             row 17 of file 0 is on the wire: its request leaves now
    a 0 17                             ...and the server accepted it
    n 0 18                             ...or refused the key: it was not kept
    done {"accepted": ..., ...}

The header binds the journal to one source, one mapping, one envelope (`api`) and one
endpoint: a rehearsal's journal never counts as delivered in a real run. Entries are keyed
by (file, row): the row's number within its file. A file is declared (by its name, with its
size and modification time) when a run first reaches it, so the header does not depend on
the set of files: `--resume` reads a file the journal never declared as new, and refuses a
declared file that changed or is gone, naming it (see `check_files`).

Every line reaches the operating system before the next step (a `kill -9` loses nothing the
OS has). A row is marked on the wire just before its request leaves, so after a crash the
rows marked but neither accepted nor in the failure report are exactly those whose fate is
unknown ("uncertain"): at most the requests in flight at the crash. Failed rows need no
entry: the report is their record. Filtered rows need none: the filter decides again.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from backfill.books.record_file import RecordFile
from backfill.errors import JournalError

JOURNAL_VERSION = 3  # 2: one fingerprint for the whole source, in the header
SANDBOX_ENDPOINT = "sandbox"  # what a rehearsal's journal is bound to (its port changes)
KEY_FIELDS = ("source", "mapping", "api", "endpoint")
Fingerprint = dict[str, Any]  # a file's {"size": ..., "mtime_ns": ...}


@dataclass(frozen=True)
class JournalKey:
    """What makes two runs the same backfill: the same source mapped the same way, sent to
    the same endpoint in the same envelope. Its files' bytes are checked one by one."""

    source: str
    mapping: str
    api: str
    endpoint: str = ""

    def bound_to(self, endpoint: str) -> JournalKey:
        return replace(self, endpoint=endpoint)


def file_fingerprint(path: Path) -> Fingerprint:
    """A local file's size and modification time, as a journal keeps them."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class RowSet:
    """Row numbers as a growable bitmap: 10 million rows cost 10 MB, not a Python set."""

    def __init__(self, bits: np.ndarray | None = None) -> None:
        self._bits = np.zeros(1024, dtype=bool) if bits is None else bits
        self.count = int(self._bits.sum()) if bits is not None else 0

    def add(self, row: int) -> None:
        if row >= len(self._bits):
            grown = np.zeros(max(row + 1, len(self._bits) * 2), dtype=bool)
            grown[: len(self._bits)] = self._bits
            self._bits = grown
        if not self._bits[row]:
            self._bits[row] = True
            self.count += 1

    def __contains__(self, row: object) -> bool:
        return isinstance(row, int) and 0 <= row < len(self._bits) and bool(self._bits[row])

    def __len__(self) -> int:
        return self.count

    def minus(self, *others: RowSet) -> RowSet:
        """The rows of this set that are in none of `others`."""
        bits = self._bits.copy()
        for other in others:
            common = min(len(bits), len(other._bits))
            bits[:common] &= ~other._bits[:common]
        return RowSet(bits)

    def union(self, *others: RowSet) -> RowSet:
        """The rows in this set or in any of `others`."""
        bits = np.zeros(max(len(s._bits) for s in (self, *others)), dtype=bool)
        for rows in (self, *others):
            bits[: len(rows._bits)] |= rows._bits
        return RowSet(bits)

    def rows(self) -> list[int]:
        return np.flatnonzero(self._bits).tolist()


@dataclass
class JournalState:
    """What an earlier run's journal says; row sets are per declared file id."""

    key: dict[str, Any]
    files: dict[str, int] = field(default_factory=dict)  # file name -> id
    fingerprints: dict[str, Fingerprint | None] = field(default_factory=dict)  # name -> it
    accepted: dict[int, RowSet] = field(default_factory=dict)
    on_wire: dict[int, RowSet] = field(default_factory=dict)
    not_kept: dict[int, RowSet] = field(default_factory=dict)
    finished: bool = False

    def rows(self, kind: dict[int, RowSet], name: str) -> RowSet:
        file_id = self.files.get(name)
        return kind.get(file_id, RowSet()) if file_id is not None else RowSet()

    def accepted_count(self) -> int:
        return sum(len(rows) for rows in self.accepted.values())

    def unknown_fate(self, name: str, reported: RowSet) -> RowSet:
        """Rows of file `name` sent but neither accepted, refused, nor in the report."""
        wired = self.rows(self.on_wire, name)
        return wired.minus(self.rows(self.accepted, name), self.rows(self.not_kept, name), reported)


def journal_path(report_path: Path, *, rehearsal: bool = False) -> Path:
    """Beside the report: `<report>.state`; a rehearsal's `<name>.sandbox.state` beside
    its `<name>.sandbox.failures.jsonl`, and `.sandbox.` said once in any other name."""
    name = report_path.name
    if rehearsal and name.endswith(REHEARSAL_REPORT):
        return report_path.with_name(name.removesuffix(REHEARSAL_REPORT) + ".sandbox.state")
    named_apart = not rehearsal or ".sandbox." in name  # a rehearsal's rerun report is too
    return report_path.with_name(name + (".state" if named_apart else ".sandbox.state"))


REHEARSAL_REPORT = ".sandbox.failures.jsonl"


def read_journal(path: Path) -> JournalState | None:
    """The journal at `path`, or None if there is none. A torn last line is ignored."""
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as lines:
        try:
            key = json.loads(lines.readline())
            if not isinstance(key, dict):
                raise ValueError(key)
        except ValueError:
            raise JournalError(
                f"{path}: not a backfill journal (unreadable header); remove it or use --restart."
            ) from None
        state = JournalState(key=key)
        if key.get("version", 1) < 2:  # one file, "a <row>" lines, no endpoint in the key
            state.files[""] = 0
        kinds = {"a": state.accepted, "w": state.on_wire, "n": state.not_kept}
        for line in lines:
            if not line.endswith("\n"):
                break
            _read_line(line, state, kinds)
    return state


def _read_line(line: str, state: JournalState, kinds: dict[str, dict[int, RowSet]]) -> None:
    tag, _, rest = line.partition(" ")
    if tag in kinds:
        file_text, _, row_text = rest.partition(" ")
        file_id, row = (int(file_text), int(row_text)) if row_text else (0, int(file_text))
        kinds[tag].setdefault(file_id, RowSet()).add(row)
        state.finished = False  # a finished run resumed (a file added since) goes on
    elif tag == "f":
        file_text, _, text = rest.partition(" ")
        declaration = json.loads(text)
        state.files[declaration["name"]] = int(file_text)
        state.fingerprints[declaration["name"]] = declaration.get("fingerprint")
    elif tag.startswith("done"):
        state.finished = True


def check_journal(
    path: Path,
    state: JournalState | None,
    key: JournalKey,
    *,
    resume: bool,
    restart: bool,
    files: dict[str, Fingerprint | None] | None = None,
) -> bool:
    """Decide from an earlier journal whether this run resumes; refuse what would resend.
    `files` are the source's files now (name -> fingerprint), checked against the journal's."""
    if restart:
        return False
    if state is None:
        if resume:
            raise JournalError(
                f"--resume: there is no journal at {path} to resume; "
                "check --report, or run without --resume to start."
            )
        return False
    wanted = asdict(key)
    if state.key.get("endpoint") != wanted.get("endpoint"):
        made_for = state.key.get("endpoint") or "an endpoint it does not name (an older backfill)"
        raise JournalError(
            f"{path} was made for sending to {made_for}, and this run sends to "
            f"{wanted.get('endpoint')}: rows it counts as delivered were not delivered here. "
            "Use --report to keep this run's records elsewhere, or --restart to discard it."
        )
    if state.key.get("version") != JOURNAL_VERSION:
        raise JournalError(
            f"{path} was written by another version of backfill (journal version "
            f"{state.key.get('version')}, this one keeps version {JOURNAL_VERSION}); it cannot "
            "tell which rows of which file it holds. Use --report to write elsewhere, or "
            "--restart to discard it (with `id:` in the mapping, delivered ids are skipped)."
        )
    differs = [k for k in KEY_FIELDS if state.key.get(k) != wanted.get(k)]
    if differs:
        raise JournalError(
            f"{path} belongs to another backfill (its {', '.join(differs)} differ from this "
            "run's). Use --report to write elsewhere, or --restart to discard that journal."
        )
    if resume:
        check_files(path, state, files or {})
        return True
    accepted = state.accepted_count()
    if state.finished:
        raise JournalError(
            f"this source was already sent with this mapping ({accepted:,} rows accepted; "
            f"journal {path}). Nothing was sent. Use --resume to send only files added "
            "since, or --restart to send everything again."
        )
    raise JournalError(
        f"an unfinished run of this source exists ({accepted:,} rows accepted so far; "
        f"journal {path}). Nothing was sent. Continue it with --resume, or start over "
        "with --restart (rows already accepted would be sent again)."
    )


def check_files(path: Path, state: JournalState, files: dict[str, Fingerprint | None]) -> None:
    """Refuse to resume over a file the journal declared that changed or is gone: its rows
    are known by their numbers in it, which then name other rows, or none. A file the
    journal never declared is simply new."""
    for name, declared in state.fingerprints.items():
        if name not in files:
            raise JournalError(
                f"--resume: {name} is in the journal {path} but no longer in the source. "
                "Nothing was sent. Put it back (from the same folder, SOURCE written as "
                "before), or use --restart to send everything again (with `id:` in the "
                "mapping, what was delivered is skipped)."
            )
        if declared != files[name]:
            held_in = (declared or {}).get("report")  # a rerun's rows come from a report
            shown = f"the report {held_in} (rows of {name})" if held_in else name
            raise JournalError(
                f"--resume: {shown} changed since the journal {path} was made "
                f"({describe_change(declared or {}, files[name] or {})}): its rows are known "
                "by their numbers in it. Nothing was sent. Put the file back as it was, or "
                "use --restart to send everything again (with `id:` in the mapping, what was "
                "delivered is skipped)."
            )


def describe_change(before: Fingerprint, now: Fingerprint) -> str:
    """`size 1,024 -> 2,048 bytes, modified 2026-01-01 10:00:00 -> ... UTC`, only what differs."""
    said = []
    if before.get("size") != now.get("size"):
        said.append(f"size {_number(before.get('size'))} -> {_number(now.get('size'))} bytes")
    if before.get("mtime_ns") != now.get("mtime_ns"):
        said.append(f"modified {_when(before.get('mtime_ns'))} -> {_when(now.get('mtime_ns'))}")
    for key in sorted((set(before) | set(now)) - {"size", "mtime_ns", "report"}):
        if before.get(key) != now.get(key):
            said.append(f"{key} {before.get(key)} -> {now.get(key)}")
    return ", ".join(said) or "its fingerprint differs"


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "unknown"


def _when(mtime_ns: Any) -> str:
    if not isinstance(mtime_ns, int):
        return "unknown"
    moment = datetime.datetime.fromtimestamp(mtime_ns / 1e9, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def drop_torn_tail(path: Path) -> None:
    """A crash or a full disk mid-write leaves a last line without its newline: cut it off,
    so that what is appended next starts a line of its own."""
    with path.open("rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


class JournalWriter:
    """Appends entries; the header is written (and made durable) when the journal is made."""

    def __init__(self, path: Path, key: JournalKey, *, append: bool) -> None:
        self.path = path
        self._file = RecordFile(path, truncate=not append)
        self.files: dict[str, int] = {}
        if not append:
            header = {"version": JOURNAL_VERSION, **asdict(key), "started": time.time()}
            self._file.write((json.dumps(header) + "\n").encode())
            self._file.make_durable()

    def declare(
        self,
        name: str,
        fingerprint: Fingerprint | None = None,
        known: dict[str, int] | None = None,
    ) -> int:
        """The short id of file `name`: the one an earlier run declared, or a new one,
        declared here with the file's fingerprint."""
        self.files.update(known or {})
        if name not in self.files:
            file_id = max(self.files.values(), default=-1) + 1
            declaration: dict[str, Any] = {"name": name}
            if fingerprint is not None:
                declaration["fingerprint"] = fingerprint
            self._file.write(f"f {file_id} {json.dumps(declaration)}\n".encode())
            self.files[name] = file_id
        return self.files[name]

    def on_wire(self, file_id: int, row: int) -> None:
        self._file.write(b"w %d %d\n" % (file_id, row))

    def accepted(self, file_id: int, row: int) -> None:
        self._file.write(b"a %d %d\n" % (file_id, row))

    def not_kept(self, file_id: int, row: int) -> None:
        self._file.write(b"n %d %d\n" % (file_id, row))

    def finish(self, summary: dict[str, Any]) -> None:
        self._file.write(("done " + json.dumps(summary) + "\n").encode())

    @property
    def broken(self) -> bool:
        return self._file.broken is not None

    def sync(self) -> None:
        self._file.sync()

    def close(self) -> None:
        self._file.close()
