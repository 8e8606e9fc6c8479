"""The ledger of delivered ids: an order id that holds across exports.

Unit tests of the SQLite ledger; end to end, two overlapping exports of the bundled sample
sent to a real sandbox process: each event arrives once, also when the second run is killed
and resumed."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import SAMPLE, CliResult, SampleOutcome, SandboxProcess, write_sample_mapping
from test_id_segments import write_version_1_ledger
from test_resume import CONCURRENCY, SLOW, wait_for_events

from backfill.books.id_ledger import IdLedger, LedgerScope, default_ledger_path, delivered_reader
from backfill.books.report import read_report
from backfill.errors import JournalError, MappingError
from backfill.mapping.spec import mapping_from_dict

SCOPE = LedgerScope.of("https://api.torque.so/events/", "torque-v1", "STORE_ORDER")
pytestmark = pytest.mark.timeout(120)


def test_ids_recorded_by_one_run_are_delivered_for_the_next(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    first = IdLedger(path, SCOPE)
    assert not first.check(["A", "B"], ["r0", "r1"]).already_sent.any()
    first.record("A")
    first.close()

    second = IdLedger(path, SCOPE)
    checked = second.check(["A", "B", "C"], ["r0", "r1", "r2"])
    assert checked.already_sent.tolist() == [True, False, False]
    assert checked.duplicates == {}


def test_an_id_met_twice_in_one_run_is_a_duplicate_before_and_after_its_commit(
    tmp_path: Path,
) -> None:
    ledger = IdLedger(tmp_path / "ledger.sqlite3", SCOPE)
    checked = ledger.check(["A", "B", "A"], ["row 0 of a.csv", "row 1 of a.csv", "row 2"])
    assert checked.duplicates == {2: "row 0 of a.csv"}
    assert ledger.check(["B"], ["row 9"]).duplicates == {0: "row 1 of a.csv"}  # in flight
    ledger.record("B")
    ledger.commit()
    again = ledger.check(["B"], ["row 10"])
    assert again.duplicates == {0: "an earlier row of this run"}
    assert not again.already_sent.any()


def test_an_id_an_earlier_run_delivered_but_never_committed_is_a_duplicate_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal says row 1 was accepted; its crash came before the ledger's commit. The
    id is recorded again on --resume, and a later row with it is not sent meanwhile."""
    monkeypatch.setattr("backfill.books.id_ledger.COMMIT_INTERVAL", 3600.0)
    ledger = IdLedger(tmp_path / "ledger.sqlite3", SCOPE)
    same_chunk = ledger.check(["X", "Y"], ["row 5 of a.csv", "row 6"], [("X", "row 1 of a.csv")])
    assert same_chunk.duplicates == {0: "row 1 of a.csv"}
    ledger.record_many(["X"])  # as the records do after the check: not committed yet
    assert ledger.check(["X"], ["row 9 of a.csv"]).duplicates == {0: "row 1 of a.csv"}
    ledger.commit()
    assert ledger.check(["X"], ["row 10"]).duplicates == {0: "an earlier row of this run"}
    ledger.close()


def test_a_released_id_may_be_sent_by_a_later_row(tmp_path: Path) -> None:
    ledger = IdLedger(tmp_path / "ledger.sqlite3", SCOPE)
    ledger.check(["A"], ["row 0"])
    ledger.release("A")  # its send failed: it is in the report, not delivered
    assert ledger.check(["A"], ["row 5"]).duplicates == {}


def test_letting_go_of_an_id_no_row_holds_changes_nothing(tmp_path: Path) -> None:
    """A row may fail before its id is claimed, or be let go twice: no error for that."""
    ledger = IdLedger(tmp_path / "ledger.sqlite3", SCOPE)
    ledger.check(["A"], ["row 0"])
    ledger.release("B")
    ledger.release("A")
    ledger.release("A")
    assert ledger.check(["A", "B"], ["row 5", "row 6"]).duplicates == {}


def test_scopes_are_apart_endpoint_envelope_and_event_name(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = IdLedger(path, SCOPE)
    ledger.record("A")
    ledger.close()
    same = LedgerScope.of("https://api.torque.so/events", "torque-v1", "STORE_ORDER")
    assert IdLedger(path, same).delivered(["A"]).tolist() == [True]  # trailing / ignored
    for other in (
        LedgerScope.of("https://staging.example/events", "torque-v1", "STORE_ORDER"),
        LedgerScope.of("https://api.torque.so/events", "torque-ingest", "STORE_ORDER"),
        LedgerScope.of("https://api.torque.so/events", "torque-v1", "OTHER_EVENT"),
    ):
        assert IdLedger(path, other).delivered(["A"]).tolist() == [False]


def test_accepted_ids_are_committed_within_the_interval_without_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("backfill.books.id_ledger.COMMIT_INTERVAL", 0.0)
    path = tmp_path / "ledger.sqlite3"
    ledger = IdLedger(path, SCOPE)
    ledger.record("A")  # no close, no commit(): as if the process were killed now
    seen_by_another_connection = delivered_reader(path, SCOPE)
    assert seen_by_another_connection(["A", "B"]).tolist() == [True, False]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_ledger_is_the_owners_alone_and_not_something_else(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    IdLedger(path, SCOPE).close()
    assert path.stat().st_mode & 0o777 == 0o600
    junk = tmp_path / "junk.sqlite3"
    junk.write_text("not a database at all, but long enough to be read as one" * 100)
    with pytest.raises(Exception, match="not a backfill ledger"):
        IdLedger(junk, SCOPE)


def test_the_default_place_is_the_environment_or_the_users_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKFILL_LEDGER", str(tmp_path / "mine.sqlite3"))
    assert default_ledger_path() == tmp_path / "mine.sqlite3"
    monkeypatch.delenv("BACKFILL_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    if os.name == "posix" and "darwin" not in os.sys.platform:
        assert default_ledger_path() == tmp_path / "backfill" / "ledger.sqlite3"


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("win32", {"LOCALAPPDATA": "{tmp}/local"}, "{tmp}/local"),
        ("win32", {}, "{home}/AppData/Local"),
        ("darwin", {}, "{home}/Library/Application Support"),
        ("linux", {"XDG_DATA_HOME": "{tmp}/data"}, "{tmp}/data"),
        ("linux", {}, "{home}/.local/share"),
    ],
)
def test_the_default_place_is_each_systems_data_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
    env: dict[str, str],
    expected: str,
) -> None:
    home = tmp_path / "home"
    monkeypatch.delenv("BACKFILL_LEDGER")
    for name in ("LOCALAPPDATA", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    monkeypatch.setattr(Path, "home", lambda: home)
    monkeypatch.setattr("backfill.books.id_ledger.sys.platform", platform)
    folder = Path(expected.format(tmp=tmp_path, home=home))
    assert default_ledger_path() == folder / "backfill" / "ledger.sqlite3"


def test_a_ledger_in_a_folder_not_made_yet_makes_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "data" / "backfill" / "ledger.sqlite3"
    IdLedger(path, SCOPE).close()
    assert path.is_file()


def test_a_throwaway_ledger_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rehearsal's ledger (":memory:") holds this run's ids and leaves nothing behind."""
    monkeypatch.chdir(tmp_path)
    ledger = IdLedger(Path(":memory:"), SCOPE)
    ledger.record("A")
    ledger.commit()
    assert ledger.delivered(["A", "B"]).tolist() == [True, False]
    ledger.close()
    assert list(tmp_path.iterdir()) == []


def test_an_id_an_earlier_run_delivered_stays_already_sent_and_never_a_duplicate(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    earlier = IdLedger(path, SCOPE)
    earlier.record("A")
    earlier.close()
    ledger = IdLedger(path, SCOPE)
    for row in ("row 0", "row 7"):
        checked = ledger.check(["A"], [row])
        assert checked.already_sent.tolist() == [True] and checked.duplicates == {}


def test_a_failed_commit_says_so_and_keeps_its_ids_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = IdLedger(path, SCOPE)
    ledger.check(["A"], ["row 0"])
    ledger.record_many(["A"])
    store_add = ledger._store.add

    def locked(*args: object, **kwargs: object) -> int:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(ledger._store, "add", locked)
    with pytest.raises(JournalError, match=r"ledger\.sqlite3: cannot record delivered ids"):
        ledger.commit()
    monkeypatch.setattr(ledger._store, "add", store_add)
    ledger.close()
    assert IdLedger(path, SCOPE).delivered(["A"]).tolist() == [True]


def test_a_ledger_that_cannot_be_read_says_which_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = IdLedger(tmp_path / "ledger.sqlite3", SCOPE)

    def broken(*args: object) -> object:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ledger._store, "runs_of", broken)
    expected = f"{tmp_path / 'ledger.sqlite3'}: cannot read delivered ids (disk I/O error)."
    with pytest.raises(JournalError) as raised:
        ledger.check(["A"], ["row 0"])
    assert str(raised.value) == expected


def test_validate_reads_no_delivered_ids_from_a_missing_ledger_or_another_scope(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    missing = delivered_reader(path, SCOPE)(["A", "B"])
    assert missing.dtype == bool and missing.tolist() == [False, False]
    ledger = IdLedger(path, SCOPE)
    ledger.record("A")
    ledger.close()
    other = LedgerScope.of("https://staging.example/events", "torque-v1", "STORE_ORDER")
    elsewhere = delivered_reader(path, other)(["A", "B"])
    assert elsewhere.dtype == bool and elsewhere.tolist() == [False, False]
    assert delivered_reader(path, SCOPE)(["A", "B"]).tolist() == [True, False]
    junk = tmp_path / "junk.sqlite3"
    junk.write_text("not a database at all, but long enough to be read as one" * 100)
    with pytest.raises(JournalError) as raised:
        delivered_reader(junk, SCOPE)
    assert str(raised.value).startswith(f"{junk}: not a backfill ledger (")
    empty = tmp_path / "empty.sqlite3"
    with sqlite3.connect(empty) as connection:
        connection.execute("PRAGMA user_version = 2")  # a ledger's version, none of its tables
    with pytest.raises(JournalError) as raised:
        delivered_reader(empty, SCOPE)
    assert str(raised.value) == f"{empty}: not a backfill ledger (no such table: scopes)."


def test_the_mapping_names_the_id_column() -> None:
    raw = yaml.safe_load((SAMPLE / "map.yaml").read_text(encoding="utf-8"))
    mapping = mapping_from_dict({**raw, "id": "order_id"}, origin="map.yaml")
    assert mapping.id_columns == ("order_id",)
    assert "order_id" in mapping.columns
    with pytest.raises(MappingError, match="id: the column 'order_number' is not in"):
        columns = (SAMPLE / "orders.csv").read_text(encoding="utf-8").split("\n")[0].split(",")
        mapping_from_dict({**raw, "id": "order_number"}).check_columns(columns, "x.csv")


# --- end to end ------------------------------------------------------------------------------


def write_export(path: Path, rows: range, repeat: range = range(0)) -> Path:
    """Rows of the sample's orders.csv (data rows `rows`, then `repeat` again)."""
    with (SAMPLE / "orders.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        lines = list(reader)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines[i] for i in [*rows, *repeat])
    return path


def id_mapping(tmp_path: Path) -> Path:
    path = write_sample_mapping(tmp_path / "map.yaml")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump({**raw, "id": "order_id"}, sort_keys=False), encoding="utf-8")
    return path


def valid_in(outcome: SampleOutcome, rows: range) -> int:
    return len(outcome.valid_rows & set(rows))


def test_two_overlapping_exports_send_each_event_once(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    mapping, ledger = id_mapping(tmp_path), tmp_path / "ledger.sqlite3"
    november = write_export(tmp_path / "orders-nov.csv", range(0, 2000))
    december = write_export(tmp_path / "orders-dec.csv", range(1000, 3000))
    common = ("--mapping", mapping, "--endpoint", sandbox.endpoint(), "--ledger", ledger,
              "--rate", "0", "--quiet", "--json")  # fmt: skip

    first = cli("run", november, *common)
    second = cli("run", december, *common)

    assert first.code == 1 and second.code == 1, first.stderr + second.stderr
    assert first.json()["accepted"] == valid_in(sample_outcome, range(0, 2000))
    assert first.json()["already_sent"] == 0
    summary = second.json()
    assert summary["already_sent"] == valid_in(sample_outcome, range(1000, 2000))
    assert summary["accepted"] == valid_in(sample_outcome, range(2000, 3000))
    settled = sum(summary[k] for k in ("accepted", "filtered", "failed", "already_sent"))
    assert settled == summary["read"] == 2000
    stored = Counter(sample_outcome.stored_rows(sandbox))
    assert set(stored) == sample_outcome.valid_rows and max(stored.values()) == 1


def test_an_id_twice_in_one_export_is_sent_once_and_the_second_row_reported(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    export = write_export(tmp_path / "orders.csv", range(0, 300), repeat=range(0, 100))
    report = tmp_path / "failures.jsonl"
    result = cli("run", export, "--mapping", id_mapping(tmp_path), "--endpoint",
                 sandbox.endpoint(), "--ledger", tmp_path / "l.sqlite3", "--report", report,
                 "--rate", "0", "--quiet", "--json")  # fmt: skip

    assert result.code == 1, result.stderr
    stored = Counter(sample_outcome.stored_rows(sandbox))
    assert set(stored) == sample_outcome.valid_rows & set(range(300))
    assert max(stored.values()) == 1
    duplicates = [f for f in read_report(report) if f.reason == "duplicate id"]
    assert len(duplicates) == valid_in(sample_outcome, range(100))
    assert {f.row for f in duplicates} == {300 + r for r in sample_outcome.valid_rows if r < 100}
    assert "was met before, at row" in duplicates[0].error
    assert result.json()["already_sent"] == 0


def test_a_resume_whose_ledger_lost_the_crashed_runs_ids_still_sends_each_id_once(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    """A crash can lose the ledger's last commits while the journal keeps those rows; the
    same ids later in the export must not go again on --resume."""
    export = write_export(tmp_path / "orders.csv", range(0, 300), repeat=range(0, 100))
    ledger, report = tmp_path / "ledger.sqlite3", tmp_path / "failures.jsonl"
    command = ("run", export, "--mapping", id_mapping(tmp_path), "--endpoint",
               sandbox.endpoint(), "--ledger", ledger, "--report", report, "--rate", "0",
               "--quiet", "--json")  # fmt: skip
    first = cli(*command, "--limit", "100")
    assert first.code == (1 if sample_outcome.bad_rows & set(range(100)) else 0), first.stderr
    for lost in tmp_path.glob("ledger.sqlite3*"):  # its commits never reached the disk
        lost.unlink()

    resumed = cli(*command, "--resume")

    assert resumed.code == 1, resumed.stderr
    stored = Counter(sample_outcome.stored_rows(sandbox))
    assert set(stored) == sample_outcome.valid_rows & set(range(300))
    assert max(stored.values()) == 1, stored.most_common(3)
    duplicates = [f for f in read_report(report) if f.reason == "duplicate id"]
    assert {f.row for f in duplicates} == {300 + r for r in sample_outcome.valid_rows if r < 100}


def test_a_crash_in_the_second_export_then_resume_sends_each_event_once(
    cli: Callable[..., CliResult],
    cli_process: Callable[..., subprocess.Popen[str]],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    mapping, ledger = id_mapping(tmp_path), tmp_path / "ledger.sqlite3"
    november = write_export(tmp_path / "orders-nov.csv", range(0, 1000))
    december = write_export(tmp_path / "orders-dec.csv", range(0, 3000))
    common = ("--mapping", mapping, "--endpoint", sandbox.endpoint(), "--ledger", ledger)
    assert cli("run", november, *common, "--rate", "0", "--quiet").code == 1
    before = len(sandbox.events())

    process = cli_process("run", december, *common, *SLOW)
    wait_for_events(sandbox, process, before + 300)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)
    resumed = cli("run", december, *common, *SLOW, "--resume", "--json")

    assert resumed.code == 1, resumed.stderr
    assert resumed.json()["already_sent"] + resumed.json()["already_done"] > 0
    stored = Counter(sample_outcome.stored_rows(sandbox))
    assert None not in stored and set(stored) == sample_outcome.valid_rows
    assert sum(count - 1 for count in stored.values()) <= CONCURRENCY, stored.most_common(3)
    assert all(stored[r] == 1 for r in sample_outcome.valid_rows if r < 1000)


def test_validate_counts_the_rows_new_to_the_ledger(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    mapping, ledger = id_mapping(tmp_path), tmp_path / "ledger.sqlite3"
    november = write_export(tmp_path / "orders-nov.csv", range(0, 1000))
    endpoint = ("--endpoint", sandbox.endpoint(), "--ledger", ledger)
    before = cli("validate", SAMPLE / "orders.csv", "-m", mapping, *endpoint, "--json")
    assert before.json()["new"] == before.json()["would_send"] == 2632
    assert cli("run", november, "-m", mapping, *endpoint, "--rate", "0", "--quiet").code == 1

    after = cli("validate", SAMPLE / "orders.csv", "-m", mapping, *endpoint, "--json")
    assert after.json()["already_sent"] == valid_in(sample_outcome, range(1000))
    assert after.json()["new"] == 2632 - valid_in(sample_outcome, range(1000))
    elsewhere = cli("validate", SAMPLE / "orders.csv", "-m", mapping, "--ledger", ledger,
                    "--endpoint", "https://api.example/events", "--json")  # fmt: skip
    assert elsewhere.json()["new"] == 2632
    text = cli("validate", SAMPLE / "orders.csv", "-m", mapping, *endpoint)
    assert f"of which new (ids not in the ledger) {after.json()['new']:,}" in text.stdout


def test_a_version_1_ledger_stops_validate_until_a_run_upgrades_it_keeping_its_ids(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    mapping, ledger = id_mapping(tmp_path), tmp_path / "ledger.sqlite3"
    with (SAMPLE / "orders.csv").open(encoding="utf-8", newline="") as handle:
        first_thousand = [row["order_id"] for row, _ in zip(csv.DictReader(handle), range(1000))]
    scope = LedgerScope.of(sandbox.endpoint(), "torque-v1", "STORE_ORDER")
    write_version_1_ledger(ledger, {1: scope}, [(1, key, 1) for key in first_thousand])
    endpoint = ("--endpoint", sandbox.endpoint(), "--ledger", ledger)

    refused = cli("validate", SAMPLE / "orders.csv", "-m", mapping, *endpoint, "--json")
    assert refused.code == 2 and "Traceback" not in refused.stderr
    assert str(ledger) in refused.stderr and "version 1" in refused.stderr
    assert "upgrades it" in refused.stderr

    run = cli("run", SAMPLE / "orders.csv", "-m", mapping, *endpoint, "--rate", "0", "--json")
    assert run.code == 1
    assert run.json()["already_sent"] == valid_in(sample_outcome, range(1000))
    stored = Counter(sample_outcome.stored_rows(sandbox))
    assert set(stored) == sample_outcome.valid_rows - set(range(1000))
    assert max(stored.values()) == 1
    after = cli("validate", SAMPLE / "orders.csv", "-m", mapping, *endpoint, "--json")
    assert after.code == 1 and after.json()["new"] == 0
