"""Row numbers are the file's own, end to end: a record that cannot be read keeps its number
in the report, every later row keeps its own, and the journal, `--resume` and `--limit`
agree on them. The real CLI against a real sandbox process on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SAMPLE, CliResult, SampleOutcome, SandboxProcess, write_sample_mapping
from test_resume import CONCURRENCY, SLOW, duplicates, wait_for_events

from backfill.books.report import read_report

pytestmark = pytest.mark.timeout(120)
FAST = ("--rate", "0", "--quiet")


def with_unreadable_records(path: Path, bad_at: dict[int, bytes]) -> dict[int, int]:
    """The sample CSV with raw lines that cannot be read put at the given record numbers;
    returns each sample row's number in the new file."""
    with (SAMPLE / "orders.csv").open(encoding="utf-8", newline="") as handle:
        header, *records = list(csv.reader(handle))
    out = io.BytesIO()
    new_rows: dict[int, int] = {}
    row = 0

    def write(cells: list[str]) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerow(cells)
        out.write(text.getvalue().encode("utf-8"))

    write(header)
    for number, record in enumerate(records):
        while row in bad_at:
            out.write(bad_at[row] + b"\n")
            row += 1
        new_rows[number] = row
        write(record)
        row += 1
    path.write_bytes(out.getvalue())
    return new_rows


BAD_AT = {
    100: b"ORD-RAGGED,2024-01-01T00:00:00Z",
    1500: "ORD-X,2024-03-01T10:00:00Z,Zürich,00001,Crème,1,9.50,gold,paid,CH,".encode("latin-1"),
    2500: b"ORD-RAGGED-2,too,few",
}


def test_unreadable_records_keep_their_numbers_through_a_crash_and_a_resume(
    cli: Callable[..., CliResult],
    cli_process: Callable[..., subprocess.Popen[str]],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    source = tmp_path / "orders.csv"
    new_rows = with_unreadable_records(source, BAD_AT)
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    report = tmp_path / "failures.jsonl"
    command = (
        "run", source, "--mapping", mapping, "--report", report,
        "--endpoint", sandbox.endpoint(), *SLOW, "--json",
    )  # fmt: skip
    process = cli_process(*command)
    wait_for_events(sandbox, process, 300)  # past record 100, before 1500 and 2500
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)

    resumed = cli(*command, "--resume")

    assert resumed.code == 1, resumed.stderr
    summary = resumed.json()
    assert summary["stopped"] is None
    assert summary["read"] == 3000 + len(BAD_AT)
    settled = ("accepted", "filtered", "failed", "already_done")
    assert sum(summary[key] for key in settled) == summary["read"]
    stored = Counter(sample_outcome.stored_rows(sandbox))
    assert set(stored) == sample_outcome.valid_rows, "a row was skipped, or a wrong one sent"
    assert duplicates(stored) <= CONCURRENCY  # only those in flight at the kill
    reported = Counter(failure.row for failure in read_report(report))
    expected = {new_rows[row] for row in sample_outcome.bad_rows} | set(BAD_AT)
    assert set(reported) == expected
    assert max(reported.values()) == 1, "a row is in the report twice"
    read_failures = {f.row: f for f in read_report(report) if f.stage == "read"}
    assert sorted(read_failures) == sorted(BAD_AT)
    assert read_failures[1500].record["_line"].startswith("ORD-X,2024-03-01T10:00:00Z,Z\\xfcrich")


def test_limit_and_resume_agree_on_the_numbers_around_an_unreadable_record(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    source = tmp_path / "orders.csv"
    new_rows = with_unreadable_records(source, {30: b"ragged", 31: b"ragged,too"})
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    command = ("run", source, "--mapping", mapping, "--endpoint", sandbox.endpoint(), *FAST)

    trial = cli(*command, "--limit", "50", "--json")
    finished = cli(*command, "--resume", "--json")

    assert trial.code in (0, 1) and finished.code == 1, trial.stderr + finished.stderr
    assert trial.json()["accepted"] == 50
    stored = Counter(sample_outcome.stored_rows(sandbox))
    assert stored == Counter(sample_outcome.valid_rows)  # each exactly once
    report = tmp_path / "orders.csv.failures.jsonl"
    reported = Counter(failure.row for failure in read_report(report))
    assert reported == Counter({new_rows[row] for row in sample_outcome.bad_rows} | {30, 31})
