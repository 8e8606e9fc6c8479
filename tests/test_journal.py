"""The journal: entries keyed by (file, row), files declared with their fingerprints when a
run reaches them, on-the-wire marks, rows of unknown fate, the endpoint binding, torn tails,
and what is fsynced when (the power-cut half of the durability promise; the `kill -9` half
is end to end in tests/test_resume.py)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY

from backfill.books import record_file
from backfill.books.journal import (
    KEY_FIELDS,
    JournalKey,
    JournalWriter,
    RowSet,
    check_journal,
    drop_torn_tail,
    file_fingerprint,
    journal_path,
    read_journal,
)
from backfill.errors import JournalError, RecordWriteError
from backfill.mapping.envelopes import TORQUE_V1
from backfill.pipeline.run_plan import RunPlan
from backfill.pipeline.run_records import RunRecords
from backfill.pipeline.target import Target

KEY = JournalKey("/data/orders.csv", "map-digest", "torque-v1", "https://a/events")


def rows(found: RowSet) -> list[int]:
    return found.rows()


def test_entries_are_keyed_by_file_and_row_and_files_are_declared_once(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    writer = JournalWriter(path, KEY, append=False)
    first, second = writer.declare("a.csv"), writer.declare("b.csv")
    assert writer.declare("a.csv") == first != second
    writer.on_wire(first, 3)
    writer.accepted(first, 3)
    writer.on_wire(second, 3)
    writer.close()

    text = path.read_text(encoding="utf-8").splitlines()
    assert [line for line in text if line.startswith("f ")] == [
        'f 0 {"name": "a.csv"}',
        'f 1 {"name": "b.csv"}',
    ]
    state = read_journal(path)
    assert state is not None
    assert json.loads(text[0])["endpoint"] == "https://a/events"
    assert rows(state.rows(state.accepted, "a.csv")) == [3]
    assert rows(state.rows(state.accepted, "b.csv")) == []
    assert rows(state.unknown_fate("b.csv", RowSet())) == [3]

    again = JournalWriter(path, KEY, append=True)  # a resumed run reuses the ids
    assert again.declare("b.csv", known=state.files) == second
    assert again.declare("c.csv", known=state.files) == 2
    again.close()


def test_rows_of_unknown_fate_are_on_the_wire_but_neither_accepted_refused_nor_reported(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.state"
    writer = JournalWriter(path, KEY, append=False)
    file_id = writer.declare("orders.csv")
    for row in range(6):
        writer.on_wire(file_id, row)
    writer.accepted(file_id, 0)
    writer.accepted(file_id, 1)
    writer.not_kept(file_id, 2)  # refused key: the server kept nothing
    writer.close()
    reported = RowSet()
    reported.add(3)  # a send failure, in the report

    state = read_journal(path)
    assert state is not None
    assert rows(state.unknown_fate("orders.csv", reported)) == [4, 5]


def test_a_torn_last_line_is_ignored_and_cut_off_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    writer = JournalWriter(path, KEY, append=False)
    writer.declare("orders.csv")
    writer.accepted(0, 7)
    writer.close()
    with path.open("ab") as handle:
        handle.write(b"a 0 12")  # a crash or a full disk mid-line

    state = read_journal(path)
    assert state is not None and rows(state.rows(state.accepted, "orders.csv")) == [7]
    drop_torn_tail(path)
    again = JournalWriter(path, KEY, append=True)
    again.accepted(0, 8)
    again.close()
    state = read_journal(path)
    assert state is not None and rows(state.rows(state.accepted, "orders.csv")) == [7, 8]


def test_a_journal_made_for_another_endpoint_is_refused_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    JournalWriter(path, KEY, append=False).close()
    state = read_journal(path)
    other = KEY.bound_to("https://b/events")

    for resume in (True, False):
        with pytest.raises(JournalError) as refused:
            check_journal(path, state, other, resume=resume, restart=False)
        message = str(refused.value)
        assert "made for sending to https://a/events" in message
        assert "this run sends to https://b/events" in message
        assert "--restart" in message
    assert check_journal(path, state, other, resume=True, restart=True) is False
    assert check_journal(path, state, KEY, resume=True, restart=False) is True


def test_a_version_1_journal_has_no_endpoint_and_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    old = {"version": 1, "source": KEY.source, "size": 10, "mtime_ns": 20}
    path.write_text(json.dumps({**old, "mapping": "m", "api": "torque-v1"}) + "\na 3\n")
    state = read_journal(path)

    with pytest.raises(JournalError, match="an endpoint it does not name"):
        check_journal(path, state, KEY, resume=True, restart=False)


# --- files and their fingerprints ----------------------------------------------------------------

SIZE_1K = {"size": 1024, "mtime_ns": 1_700_000_000_000_000_000}


def journal_of(path: Path, files: dict[str, dict[str, int]], *, finished: bool = False) -> None:
    writer = JournalWriter(path, KEY, append=False)
    for name, fingerprint in files.items():
        writer.accepted(writer.declare(name, fingerprint), 0)
    if finished:
        writer.finish({"accepted": len(files)})
    writer.close()


def test_files_are_declared_with_their_fingerprints_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    journal_of(path, {"a.csv": SIZE_1K, "b.csv": {"size": 7, "mtime_ns": None}})

    header, *lines = path.read_text(encoding="utf-8").splitlines()
    assert set(json.loads(header)) == {"version", *KEY_FIELDS, "started"}
    assert "size" not in json.loads(header)  # the set of files is not in the key
    assert lines[0] == f'f 0 {{"name": "a.csv", "fingerprint": {json.dumps(SIZE_1K)}}}'
    state = read_journal(path)
    assert state is not None
    assert state.fingerprints == {"a.csv": SIZE_1K, "b.csv": {"size": 7, "mtime_ns": None}}


def test_resume_refuses_a_declared_file_that_changed_naming_it_and_what_changed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.state"
    journal_of(path, {"a.csv": SIZE_1K, "b.csv": SIZE_1K})
    state = read_journal(path)
    grown = {"size": 2048, "mtime_ns": SIZE_1K["mtime_ns"] + 1_500_000_000}

    with pytest.raises(JournalError) as refused:
        check_journal(path, state, KEY, resume=True, restart=False,
                      files={"a.csv": SIZE_1K, "b.csv": grown})  # fmt: skip

    message = str(refused.value)
    assert message.startswith(f"--resume: b.csv changed since the journal {path} was made (")
    assert "size 1,024 -> 2,048 bytes" in message
    assert "modified 2023-11-14 22:13:20.000000 UTC -> 2023-11-14 22:13:21.500000 UTC" in message
    assert "Nothing was sent" in message and "--restart" in message
    touched = {**SIZE_1K, "mtime_ns": SIZE_1K["mtime_ns"] + 1}
    with pytest.raises(JournalError, match=r"b\.csv changed .*\(modified [^,]*\)"):
        check_journal(path, state, KEY, resume=True, restart=False,
                      files={"a.csv": SIZE_1K, "b.csv": touched})  # fmt: skip


def test_a_reruns_journal_names_the_report_that_changed(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    journal_of(path, {"a.csv": {"report": "/r/failures.jsonl", **SIZE_1K}})

    now = {"a.csv": {"report": "/r/failures.jsonl", **SIZE_1K, "size": 9}}
    with pytest.raises(JournalError) as refused:
        check_journal(path, read_journal(path), KEY, resume=True, restart=False, files=now)

    assert "the report /r/failures.jsonl (rows of a.csv) changed since" in str(refused.value)
    assert "size 1,024 -> 9 bytes)" in str(refused.value)


def test_resume_refuses_a_declared_file_that_is_gone_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    journal_of(path, {"a.csv": SIZE_1K, "b.csv": SIZE_1K})

    with pytest.raises(JournalError, match=r"a\.csv is in the journal .* no longer in the source"):
        check_journal(path, read_journal(path), KEY, resume=True, restart=False,
                      files={"b.csv": SIZE_1K})  # fmt: skip


def test_a_file_the_journal_never_declared_is_new_and_a_finished_journal_resumes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.state"
    journal_of(path, {"a.csv": SIZE_1K}, finished=True)
    state = read_journal(path)
    assert state is not None and state.finished
    files = {"a.csv": SIZE_1K, "b.csv": {"size": 1, "mtime_ns": 2}}

    assert check_journal(path, state, KEY, resume=True, restart=False, files=files) is True
    with pytest.raises(JournalError, match="--resume to send only files added since"):
        check_journal(path, state, KEY, resume=False, restart=False, files=files)

    again = JournalWriter(path, KEY, append=True)
    again.files.update(state.files)
    again.on_wire(again.declare("b.csv", files["b.csv"]), 0)  # resumed, then killed
    again.close()
    resumed = read_journal(path)
    assert resumed is not None and not resumed.finished
    assert resumed.files == {"a.csv": 0, "b.csv": 1}


def test_a_version_2_journal_is_refused_naming_the_versions(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    header = {"version": 2, "source": KEY.source, "size": 10, "mtime_ns": 20, "mapping":
              KEY.mapping, "api": KEY.api, "endpoint": KEY.endpoint}  # fmt: skip
    path.write_text(json.dumps(header) + '\nf 0 {"name": "/data"}\na 0 3\n')

    with pytest.raises(JournalError, match="journal version 2, this one keeps version 3"):
        check_journal(path, read_journal(path), KEY, resume=True, restart=False)


def test_records_declare_a_file_with_its_fingerprint_when_the_run_first_reaches_it(
    tmp_path: Path,
) -> None:
    records = make_records(tmp_path, files={"a.csv": SIZE_1K, "b.csv": SIZE_1K})
    first = records.books("b.csv")
    records.on_wire(first, 4)
    assert records.books("b.csv") is first
    records.accepted(records.books("a.csv"), 4)
    records.close(None)

    state = read_journal(tmp_path / "failures.jsonl.state")
    assert state is not None
    assert state.files == {"b.csv": 0, "a.csv": 1}  # in the order the run reached them
    assert state.fingerprints == {"b.csv": SIZE_1K, "a.csv": SIZE_1K}
    assert rows(state.rows(state.accepted, "a.csv")) == [4]
    assert rows(state.unknown_fate("b.csv", RowSet())) == [4]


# --- durability --------------------------------------------------------------------------------


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every fsync the record files make: 'dir' for a directory, else the file's name."""
    calls: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            calls.append("dir")
        else:
            calls.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real(fd)

    monkeypatch.setattr(record_file.os, "fsync", spy)
    return calls


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="names fds through /proc")
def test_the_journal_header_and_its_directory_entry_are_fsynced_at_creation(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    JournalWriter(tmp_path / "j.state", KEY, append=False)
    assert fsyncs == ["j.state", "dir"]


def make_records(tmp_path: Path, files: dict[str, Any] | None = None) -> RunRecords:
    plan = RunPlan(
        feed=lambda: iter(()),
        source_name="orders.csv",
        report_path=tmp_path / "failures.jsonl",
        journal_key=KEY,
        files=files or {},
    )
    target = Target(TORQUE_V1, "https://a/events", TEST_KEY)
    return RunRecords(plan, target)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="names fds through /proc")
def test_an_accepted_row_is_fsynced_on_the_timer_in_a_quiet_spell(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    records = make_records(tmp_path)
    fsyncs.clear()
    books = records.books("orders.csv")
    records.on_wire(books, 5)
    records.accepted(books, 5)  # ...and then nothing more happens: a quiet spell

    async def quiet_spell() -> None:
        errors: list[Exception] = []
        syncer = asyncio.create_task(records.keep_synced(errors.append, interval=0.01))
        while "failures.jsonl.state" not in fsyncs:
            await asyncio.sleep(0.005)  # bounded by the test's timeout
        syncer.cancel()
        assert errors == []

    asyncio.run(asyncio.wait_for(quiet_spell(), 10))
    assert fsyncs.count("failures.jsonl.state") == 1  # nothing new since: no second fsync
    records.close(None)


def test_a_failed_fsync_on_the_timer_stops_the_run_through_its_callback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = make_records(tmp_path)
    records.accepted(records.books("orders.csv"), 1)

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(record_file.os, "fsync", broken)
    errors: list[Exception] = []
    asyncio.run(asyncio.wait_for(records.keep_synced(errors.append, interval=0.01), 10))

    assert len(errors) == 1 and isinstance(errors[0], RecordWriteError)
    assert "failures.jsonl.state" in str(errors[0]) and "Input/output error" in str(errors[0])
    monkeypatch.undo()
    records.close(None)


def test_a_short_write_stops_the_file_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.state"
    writer = JournalWriter(path, KEY, append=False)
    monkeypatch.setattr(record_file.os, "write", lambda fd, data: len(data) - 2)

    with pytest.raises(RecordWriteError, match=r"j\.state: short write"):
        writer.accepted(0, 12345)
    monkeypatch.undo()
    with pytest.raises(RecordWriteError):  # nothing more after a torn line
        writer.accepted(0, 1)
    writer.close()
    assert b"a 0 1\n" not in path.read_bytes()


# --- row sets, names, old journals, and every refusal word for word -----------------------------


def test_a_row_set_grows_to_any_row_and_counts_each_row_once() -> None:
    found = RowSet()
    assert len(found) == 0 and 0 not in found and 1024 not in found
    for row in (0, 1023, 1024, 5000, 5000, 7):
        found.add(row)
    assert rows(found) == [0, 7, 1023, 1024, 5000] and len(found) == 5
    assert 0 in found and 5000 in found
    assert 6 not in found and 5001 not in found and 10**9 not in found
    assert -1 not in found and "7" not in found


def test_row_sets_of_different_sizes_combine_and_subtract() -> None:
    small, large = RowSet(), RowSet()
    for row in (1, 3):
        small.add(row)
    for row in (3, 4, 3000):
        large.add(row)
    both = small.union(large)
    assert rows(both) == [1, 3, 4, 3000] and len(both) == 4
    assert rows(large.union(small)) == [1, 3, 4, 3000]
    assert rows(large.minus(small)) == [4, 3000] and len(large.minus(small)) == 2
    assert rows(small.minus(large)) == [1]


@pytest.mark.parametrize(
    ("report", "rehearsal", "journal"),
    [
        ("orders.failures.jsonl", False, "orders.failures.jsonl.state"),
        ("orders.sandbox.failures.jsonl", False, "orders.sandbox.failures.jsonl.state"),
        ("orders.sandbox.failures.jsonl", True, "orders.sandbox.state"),
        ("mine.jsonl", True, "mine.jsonl.sandbox.state"),
        ("orders.sandbox.rerun.jsonl", True, "orders.sandbox.rerun.jsonl.state"),
    ],
)
def test_the_journal_lies_beside_its_report_and_a_rehearsals_says_sandbox_once(
    tmp_path: Path, report: str, rehearsal: bool, journal: str
) -> None:
    assert journal_path(tmp_path / report, rehearsal=rehearsal) == tmp_path / journal


def test_a_run_not_rehearsing_keeps_a_sandbox_named_report_journal_as_is(tmp_path: Path) -> None:
    report = tmp_path / "orders.sandbox.failures.jsonl"
    assert journal_path(report) == tmp_path / "orders.sandbox.failures.jsonl.state"


def test_a_version_1_journals_rows_belong_to_its_one_file_and_later_ones_to_declared_files(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.state"
    old.write_text(json.dumps({"source": KEY.source}) + "\na 3\na 5\n")  # no version: 1
    state = read_journal(old)
    assert state is not None and state.files == {"": 0}
    assert rows(state.rows(state.accepted, "")) == [3, 5]
    newer = tmp_path / "newer.state"
    newer.write_text(json.dumps({"version": 2}) + '\nf 0 {"name": "/data"}\na 0 3\n')
    state = read_journal(newer)
    assert state is not None and state.files == {"/data": 0}


def test_a_journal_whose_header_is_unreadable_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    for header in ("[1, 2]", "not json"):
        path.write_text(header + "\na 0 1\n")
        with pytest.raises(JournalError) as refused:
            read_journal(path)
        assert str(refused.value) == (
            f"{path}: not a backfill journal (unreadable header); remove it or use --restart."
        )


def test_a_new_journal_replaces_an_old_file_at_its_place(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    journal_of(path, {"a.csv": SIZE_1K})
    writer = JournalWriter(path, KEY, append=False)
    assert writer.path == path  # the summary names it
    writer.close()
    state = read_journal(path)
    assert state is not None and state.files == {} and state.accepted == {}


def refusal(path: Path, state: Any, key: JournalKey = KEY, **kw: Any) -> str:
    with pytest.raises(JournalError) as refused:
        check_journal(path, state, key, **{"resume": False, "restart": False, **kw})
    return str(refused.value)


def test_each_refusal_to_start_says_what_is_there_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    assert refusal(path, None, resume=True) == (
        f"--resume: there is no journal at {path} to resume; "
        "check --report, or run without --resume to start."
    )
    journal_of(path, {"a.csv": SIZE_1K})
    state = read_journal(path)
    assert refusal(path, state) == (
        f"an unfinished run of this source exists (1 rows accepted so far; journal {path}). "
        "Nothing was sent. Continue it with --resume, or start over with --restart (rows "
        "already accepted would be sent again)."
    )
    assert refusal(path, state, KEY.bound_to("https://b/events")) == (
        f"{path} was made for sending to https://a/events, and this run sends to "
        "https://b/events: rows it counts as delivered were not delivered here. Use --report "
        "to keep this run's records elsewhere, or --restart to discard it."
    )
    other = JournalKey("/data/other.csv", "other-digest", KEY.api, KEY.endpoint)
    assert refusal(path, state, other, resume=True) == (
        f"{path} belongs to another backfill (its source, mapping differ from this run's). "
        "Use --report to write elsewhere, or --restart to discard that journal."
    )


def test_an_older_journal_is_refused_word_for_word(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    path.write_text(json.dumps({"version": 1, "source": KEY.source}) + "\na 3\n")
    assert refusal(path, read_journal(path), resume=True).startswith(
        f"{path} was made for sending to an endpoint it does not name (an older backfill), "
    )
    header = {"version": 2, **{k: getattr(KEY, k) for k in ("source", "mapping", "api")}}
    path.write_text(json.dumps({**header, "endpoint": KEY.endpoint}) + "\n")
    assert refusal(path, read_journal(path), resume=True) == (
        f"{path} was written by another version of backfill (journal version 2, this one "
        "keeps version 3); it cannot tell which rows of which file it holds. Use --report to "
        "write elsewhere, or --restart to discard it (with `id:` in the mapping, delivered "
        "ids are skipped)."
    )


def test_each_refusal_to_resume_over_a_changed_source_is_word_for_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Times are shown in UTC whatever the machine's zone."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    path = tmp_path / "j.state"
    journal_of(path, {"a.csv": {"size": 7, "mtime_ns": None, "sheet": "Orders"}})
    state = read_journal(path)
    try:
        gone = refusal(path, state, resume=True, files={})
        changed = {"a.csv": {"size": None, "mtime_ns": 0, "sheet": "Sales", "rows": 4}}
        change = refusal(path, state, resume=True, files=changed)
        grown = {"a.csv": {"size": 8, "mtime_ns": None, "sheet": "Orders"}}
        only_size = refusal(path, state, resume=True, files=grown)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert f"{path} was made (size 7 -> 8 bytes): its rows" in only_size
    assert gone == (
        f"--resume: a.csv is in the journal {path} but no longer in the source. Nothing was "
        "sent. Put it back (from the same folder, SOURCE written as before), or use "
        "--restart to send everything again (with `id:` in the mapping, what was delivered "
        "is skipped)."
    )
    assert change == (
        f"--resume: a.csv changed since the journal {path} was made (size 7 -> unknown bytes, "
        "modified unknown -> 1970-01-01 00:00:00.000000 UTC, rows None -> 4, sheet Orders -> "
        "Sales): its rows are known by their numbers in it. Nothing was sent. Put the file "
        "back as it was, or use --restart to send everything again (with `id:` in the "
        "mapping, what was delivered is skipped)."
    )


def test_a_rerun_whose_report_moved_says_only_that_its_fingerprint_differs(tmp_path: Path) -> None:
    path = tmp_path / "j.state"
    journal_of(path, {"a.csv": {"report": "/r/failures.jsonl", **SIZE_1K}})
    moved = {"a.csv": {"report": "/s/failures.jsonl", **SIZE_1K}}
    message = refusal(path, read_journal(path), resume=True, files=moved)
    assert "(rows of a.csv) changed since the journal" in message
    assert f"{path} was made (its fingerprint differs): its rows" in message


def test_a_files_fingerprint_is_its_size_and_modification_time(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(b"a,b\n1,2\n")
    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_123_456_789))
    assert file_fingerprint(path) == {"size": 8, "mtime_ns": 1_700_000_000_123_456_789}
