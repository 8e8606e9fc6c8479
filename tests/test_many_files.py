"""A source of many files, end to end: every row is known by its file and its number there.

The bundled sample is split into CSV parts (1,000 records each unless said otherwise). The
report names each failed row's part and its row within that part; `rerun` and `--resume`
work across the parts; the journal declares each part with its size and modification time
when the run first reaches it, so a part added after a finished run is sent by `--resume`
alone, and a declared part that changed or is gone is named in the refusal.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import SAMPLE, CliResult, SampleOutcome, SandboxProcess, write_sample_mapping
from test_resume import settle_in_flight, wait_for_events
from test_source_places import sample_lines, write_csv_exports, write_csv_part

from backfill.books.journal import read_journal
from backfill.books.report import read_report
from backfill.look.validate import preview

pytestmark = pytest.mark.timeout(120)
CONCURRENCY = 8
FAST = ("--rate", "0", "--quiet", "--json")
SLOW = ("--rate", "600", "--concurrency", str(CONCURRENCY), "--quiet", "--json")
PART = 1000


def write_parts(folder: Path, sizes: tuple[int, ...] = (PART, PART, PART)) -> list[Path]:
    """The sample's records cut into parts `orders-1.csv`..., in order; their paths."""
    header, lines = sample_lines()
    folder.mkdir(exist_ok=True)
    paths, start = [], 0
    for number, size in enumerate(sizes, start=1):
        path = folder / f"orders-{number}.csv"
        write_csv_part(path, header, lines[start : start + size])
        paths.append(path)
        start += size
    return paths


def sample_row(source: str, row: int, sizes: tuple[int, ...] = (PART, PART, PART)) -> int:
    """The sample's row for row `row` of part `source` (`.../orders-<n>.csv`)."""
    number = int(source.rsplit("-", 1)[1].split(".")[0])
    return sum(sizes[: number - 1]) + row


def stored(sandbox: SandboxProcess, outcome: SampleOutcome) -> Counter[int | None]:
    return Counter(outcome.stored_rows(sandbox))


def assert_accounted(summary: dict[str, int]) -> None:
    fates = ("accepted", "filtered", "failed", "unsent", "already_done", "already_sent")
    assert sum(summary[fate] for fate in fates) == summary["read"]


def test_the_report_names_each_rows_file_and_its_row_there_and_rerun_delivers_across_files(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    write_parts(tmp_path / "exports")
    wrong = write_sample_mapping(tmp_path / "wrong.yaml", true_words=("premium",))  # no "gold"
    report = tmp_path / "failures.jsonl"
    send = ("--endpoint", sandbox.endpoint())

    first = cli("run", "exports/orders-*.csv", "--mapping", wrong, "--report", report,
                *send, *FAST)  # fmt: skip

    assert first.code == 1, first.stderr
    failures = list(read_report(report))
    assert {f.source for f in failures} == {f"exports/orders-{n}.csv" for n in (1, 2, 3)}
    assert all(f.row is not None and 0 <= f.row < PART for f in failures)
    gold = sample_outcome.rows_with_tier("gold")
    wanted = gold | sample_outcome.bad_rows
    assert Counter(sample_row(f.source, f.row or 0) for f in failures) == Counter(wanted)
    second = [f for f in failures if f.source == "exports/orders-2.csv"]
    assert second and all(f.record["order_id"] == sample_lines()[1][PART + f.row][0]
                          for f in second if f.row is not None)  # fmt: skip
    assert set(stored(sandbox, sample_outcome)) == sample_outcome.valid_rows - gold

    fixed = write_sample_mapping(tmp_path / "fixed.yaml")
    rerun_report = tmp_path / "rerun.jsonl"
    rerun = cli("rerun", report, "--mapping", fixed, "--report", rerun_report, *send, *FAST)

    assert rerun.code == 1, rerun.stderr  # the truly bad rows stay
    assert rerun.json()["accepted"] == len(gold)
    events = stored(sandbox, sample_outcome)
    assert set(events) == sample_outcome.valid_rows and max(events.values()) == 1
    again = Counter(sample_row(f.source, f.row or 0) for f in read_report(rerun_report))
    assert again == Counter(sample_outcome.bad_rows)
    state = read_journal(rerun_report.with_name(rerun_report.name + ".state"))
    assert state is not None
    accepted = {sample_row(n, r) for n in state.files for r in state.rows(state.accepted, n).rows()}
    assert accepted == gold - sample_outcome.bad_rows


def test_a_rerun_across_files_killed_then_resumed_delivers_each_row_once(
    cli: Callable[..., CliResult],
    cli_process: Callable[..., subprocess.Popen[str]],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    write_parts(tmp_path / "exports")
    wrong = write_sample_mapping(tmp_path / "wrong.yaml", true_words=("premium",))
    report = tmp_path / "failures.jsonl"
    send = ("--endpoint", sandbox.endpoint())
    assert cli("run", "exports/", "--mapping", wrong, "--report", report, *send,
               *FAST).code == 1  # fmt: skip
    before = len(sandbox.events())
    fixed = write_sample_mapping(tmp_path / "fixed.yaml")
    rerun = ("rerun", report, "--mapping", fixed, "--report", tmp_path / "rerun.jsonl", *send)
    process = cli_process(*rerun, "--rate", "100", "--concurrency", str(CONCURRENCY), "--quiet")
    wait_for_events(sandbox, process, before + 100)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)
    settle_in_flight(sandbox)

    resumed = cli(*rerun, *FAST, "--resume")

    assert resumed.code == 1, resumed.stderr
    summary = resumed.json()
    assert summary["already_done"] >= 100 - CONCURRENCY
    assert_accounted(summary)
    events = stored(sandbox, sample_outcome)
    assert set(events) == sample_outcome.valid_rows
    assert sum(count - 1 for count in events.values()) <= summary["uncertain"] <= CONCURRENCY


def test_a_kill_in_the_second_of_three_files_then_resume_sends_each_event_once(
    cli: Callable[..., CliResult],
    cli_process: Callable[..., subprocess.Popen[str]],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    write_parts(tmp_path / "exports")
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    report = tmp_path / "failures.jsonl"
    command = ("run", "exports", "--mapping", mapping, "--report", report,
               "--endpoint", sandbox.endpoint(), *SLOW)  # fmt: skip
    first_part = len(sample_outcome.valid_rows & set(range(PART)))
    process = cli_process(*command)
    wait_for_events(sandbox, process, first_part + 300)  # well into the second part
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)
    settle_in_flight(sandbox)

    journal = report.with_name(report.name + ".state")
    state = read_journal(journal)
    assert state is not None
    declared = list(state.files)
    assert declared[:2] == ["exports/orders-1.csv", "exports/orders-2.csv"]
    # Killed in the second file: the reader may have declared the third ahead of the senders
    # (it reads while they send), but none of the third file's rows was accepted yet.
    assert declared[2:] in ([], ["exports/orders-3.csv"])
    assert all(not state.rows(state.accepted, name).rows() for name in declared[2:])
    assert all(state.fingerprints[name]["size"] > 0 for name in state.files)

    resumed = cli(*command, "--resume")

    assert resumed.code == 1, resumed.stderr
    summary = resumed.json()
    assert summary["already_done"] > first_part and summary["read"] == 3000
    assert_accounted(summary)
    events = stored(sandbox, sample_outcome)
    assert None not in events and set(events) == sample_outcome.valid_rows
    assert sum(count - 1 for count in events.values()) <= summary["uncertain"] <= CONCURRENCY
    reported = Counter(sample_row(f.source, f.row or 0) for f in read_report(report))
    assert reported == Counter(sample_outcome.bad_rows)
    state = read_journal(journal)
    assert state is not None
    assert list(state.files) == [f"exports/orders-{n}.csv" for n in (1, 2, 3)]
    for name in state.files:  # each file's own rows, numbered within it
        rows = state.rows(state.accepted, name).rows()
        assert rows and max(rows) < PART
    accepted = {sample_row(n, r) for n in state.files for r in state.rows(state.accepted, n).rows()}
    assert accepted == set(sample_outcome.valid_rows)


def test_a_file_added_after_a_finished_run_is_sent_by_resume_and_nothing_else(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    sizes = (750, 750, 750, 750)
    header, lines = sample_lines()
    write_parts(tmp_path / "exports", sizes[:3])
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    command = ("run", "exports/", "--mapping", mapping, "--report", tmp_path / "f.jsonl",
               "--endpoint", sandbox.endpoint(), *FAST)  # fmt: skip
    assert cli(*command).code == 1
    requests = sandbox.stats()["requests"]
    assert requests == len(sample_outcome.valid_rows & set(range(2250)))
    write_csv_part(tmp_path / "exports" / "orders-4.csv", header, lines[2250:])
    plan = ("plan", "exports/", "--mapping", mapping, "--report", tmp_path / "f.jsonl", "--json")
    planned = cli(*plan).json()
    assert planned["would_send"] == len(sample_outcome.valid_rows)
    assert planned["already_sent"] == requests  # the new file's rows count as not sent

    again = cli(*command)
    assert again.code == 2 and "already sent" in again.stderr
    assert "--resume to send only files added since" in again.stderr
    resumed = cli(*command, "--resume")

    assert resumed.code == 1, resumed.stderr
    new_rows = sample_outcome.valid_rows & set(range(2250, 3000))
    assert sandbox.stats()["requests"] - requests == len(new_rows)
    summary = resumed.json()
    assert summary["accepted"] == len(new_rows)
    settled_before = (sample_outcome.valid_rows | sample_outcome.bad_rows) & set(range(2250))
    assert summary["already_done"] == len(settled_before)  # accepted or reported before
    assert_accounted(summary)
    events = stored(sandbox, sample_outcome)
    assert set(events) == sample_outcome.valid_rows and max(events.values()) == 1
    report_rows = Counter(sample_row(f.source, f.row or 0, sizes)
                          for f in read_report(tmp_path / "f.jsonl"))  # fmt: skip
    assert report_rows == Counter(sample_outcome.bad_rows)

    nothing_new = cli(*command, "--resume")
    assert nothing_new.code == 1, nothing_new.stderr  # the bad rows, reported before
    assert nothing_new.json()["already_done"] == len(settled_before) + len(
        (sample_outcome.valid_rows | sample_outcome.bad_rows) & set(range(2250, 3000))
    )
    assert nothing_new.json()["accepted"] == 0
    assert sandbox.stats()["requests"] - requests == len(new_rows)
    assert cli(*plan).json()["already_sent"] == len(sample_outcome.valid_rows)
    first = tmp_path / "exports" / "orders-1.csv"
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 1))
    in_first = len(sample_outcome.valid_rows & set(range(750)))
    assert cli(*plan).json()["already_sent"] == len(sample_outcome.valid_rows) - in_first


def test_a_declared_file_that_changed_or_is_gone_is_named_and_an_undeclared_one_is_new(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    parts = write_parts(tmp_path / "exports")
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    command = ("run", "exports/orders-*.csv", "--mapping", mapping, "--report",
               tmp_path / "f.jsonl", "--endpoint", sandbox.endpoint(), *FAST)  # fmt: skip
    assert cli(*command, "--limit", "1000").code == 1  # parts 1 and 2 reached, not 3
    requests = sandbox.stats()["requests"]
    original = parts[1].read_bytes()
    first_mtime = parts[1].stat().st_mtime_ns

    os.utime(parts[1], ns=(first_mtime, first_mtime + 5_000_000_000))
    changed = cli(*command, "--resume")
    assert changed.code == 2
    assert "exports/orders-2.csv changed since the journal" in changed.stderr
    assert "modified" in changed.stderr and "Nothing was sent" in changed.stderr
    assert "Traceback" not in changed.stderr

    with parts[1].open("a", encoding="utf-8") as handle:
        handle.write(",".join(sample_lines()[1][0]) + "\n")
    grown = cli(*command, "--resume")
    assert grown.code == 2 and "exports/orders-2.csv changed" in grown.stderr
    assert "size 1" in grown.stderr and "bytes" in grown.stderr
    parts[1].write_bytes(original)  # back as it was...
    os.utime(parts[1], ns=(first_mtime, first_mtime))  # ...to the nanosecond

    parts[0].rename(tmp_path / "orders-1.csv.away")
    gone = cli(*command, "--resume")
    assert gone.code == 2
    assert "exports/orders-1.csv is in the journal" in gone.stderr
    assert "no longer in the source" in gone.stderr
    assert sandbox.stats()["requests"] == requests
    (tmp_path / "orders-1.csv.away").rename(parts[0])  # a rename keeps the fingerprint

    os.utime(parts[2], ns=(first_mtime, first_mtime + 9_000_000_000))  # never reached: new
    resumed = cli(*command, "--resume")

    assert resumed.code == 1, resumed.stderr
    assert_accounted(resumed.json())
    events = stored(sandbox, sample_outcome)
    assert set(events) == sample_outcome.valid_rows and max(events.values()) == 1


def test_parquet_parts_with_row_groups_the_filter_rules_out_resume_under_their_own_names(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    table = pq.read_table(SAMPLE / "orders.parquet")
    parts = tmp_path / "lake"
    parts.mkdir()
    for number, start in enumerate((0, 1500), start=1):
        half = table.slice(start, 1500)
        half = half.take(pc.sort_indices(half, [("status", "descending")]))  # unpaid first
        pq.write_table(half, parts / f"part-{number}.parquet", row_group_size=100)
    report = tmp_path / "f.jsonl"
    command = ("run", parts, "--mapping", SAMPLE / "map.yaml", "--report", report,
               "--endpoint", sandbox.endpoint(), *FAST)  # fmt: skip
    assert cli(*command, "--limit", "500").code in (0, 1)

    resumed = cli(*command, "--resume")

    assert resumed.code == 1, resumed.stderr
    assert_accounted(resumed.json())
    state = read_journal(report.with_name(report.name + ".state"))
    assert state is not None
    assert list(state.files) == [str(parts / f"part-{n}.parquet") for n in (1, 2)]
    stats = sandbox.stats()
    assert stats["accepted"] == len(sample_outcome.valid_rows) and stats["duplicates"] == 0


def test_preview_across_files_shows_each_rows_own_file_and_values(
    cli: Callable[..., CliResult], sample_outcome: SampleOutcome, tmp_path: Path
) -> None:
    _, lines = sample_lines()
    bad = min(sample_outcome.bad_rows)
    valid = sorted(sample_outcome.valid_rows)
    exports = write_csv_exports(
        tmp_path, [lines[bad], lines[valid[0]]], [lines[r] for r in valid[1:4]]
    )
    mapping = write_sample_mapping(tmp_path / "map.yaml")

    shown = preview(f"{exports}/orders-*.csv", mapping, n=3)

    names = [str(exports / f"orders-{n}.csv") for n in (1, 2)]
    assert [(item.source, item.row) for item in shown.rows] == [
        (names[0], 0), (names[0], 1), (names[1], 0), (names[1], 1),
    ]  # fmt: skip
    expected = [lines[bad], lines[valid[0]], lines[valid[1]], lines[valid[2]]]
    assert [item.record["order_id"] for item in shown.rows] == [line[0] for line in expected]
    assert shown.frame()["source"].tolist() == [names[0], names[0], names[1], names[1]]
    printed = cli("preview", "exports/orders-*.csv", "-m", mapping, "-n", "3").stdout
    assert "row 0 of exports/orders-1.csv: FAILS" in printed
    assert "row 0 of exports/orders-2.csv:" in printed


def test_validate_across_files_names_each_example_rows_file(
    cli: Callable[..., CliResult], sample_outcome: SampleOutcome, tmp_path: Path
) -> None:
    _, lines = sample_lines()
    bad = sorted(sample_outcome.bad_rows)
    valid = sorted(sample_outcome.valid_rows)
    write_csv_exports(tmp_path, [lines[valid[0]], lines[bad[0]]], [lines[bad[1]], lines[valid[1]]])
    mapping = write_sample_mapping(tmp_path / "map.yaml")

    found = cli("validate", "exports/orders-*.csv", "-m", mapping, "--json").json()
    examples = sorted(
        (file, row)
        for reason in found["reasons"]
        for file, row in zip(reason["example_files"], reason["example_rows"])
    )
    assert examples == [("exports/orders-1.csv", 1), ("exports/orders-2.csv", 0)]
    printed = cli("validate", "exports/orders-*.csv", "-m", mapping).stdout
    assert "exports/orders-1.csv row 1" in printed
    assert "exports/orders-2.csv row 0" in printed
    assert "e.g. row" not in printed
    alone = cli("validate", "exports/orders-1.csv", "-m", mapping).stdout
    assert "e.g. row 1:" in alone


def test_plan_across_files_names_each_warnings_example_rows_file(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    _, lines = sample_lines()
    write_csv_exports(tmp_path, lines[:50], lines[:50])  # the same export, twice
    raw = yaml.safe_load(write_sample_mapping(tmp_path / "map.yaml").read_text(encoding="utf-8"))
    mapping = tmp_path / "id.yaml"
    mapping.write_text(yaml.safe_dump({**raw, "id": "order_id"}), encoding="utf-8")

    found = cli("plan", "exports/orders-*.csv", "-m", mapping, "--json").json()
    repeats = next(w for w in found["warnings"] if w["code"] == "duplicate_ids")
    assert set(repeats["example_files"]) == {"exports/orders-2.csv"}  # the second time each
    assert repeats["example_rows"] == sorted(repeats["example_rows"])
    assert all(row < 50 for row in repeats["example_rows"])
    printed = cli("plan", "exports/orders-*.csv", "-m", mapping).stdout
    assert "e.g. exports/orders-2.csv rows " in printed
