"""`backfill rerun`: the rows of a failure report sent again, end to end.

The real CLI in a subprocess against a real sandbox process on 127.0.0.1. A run with a wrong
mapping fails a known set of rows; `rerun --mapping <fixed>` sends exactly those and nothing
else, so the sandbox ends with every valid row of the sample exactly once, and the new report
holds only the rows that are truly bad.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CliResult, SampleOutcome, SandboxProcess, write_sample_mapping

from backfill.books.report import read_report

pytestmark = pytest.mark.timeout(120)
CLI_TIMEOUT = 60
FAST = ("--rate", "0", "--quiet")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def report_rows(path: Path) -> Counter[int | None]:
    return Counter(failure.row for failure in read_report(path))


def fixed_and_still_failing(result: CliResult) -> tuple[int, int]:
    found = re.search(r"([\d,]+) fixed, ([\d,]+) still failing", result.stdout)
    assert found, result.stdout + result.stderr
    fixed, failing = (int(group.replace(",", "")) for group in found.groups())
    return fixed, failing


def assert_every_valid_row_once(sandbox: SandboxProcess, outcome: SampleOutcome) -> None:
    stored = Counter(outcome.stored_rows(sandbox))
    assert None not in stored, "the sandbox holds an event no correct run would send"
    assert set(stored) == outcome.valid_rows
    assert max(stored.values()) == 1, "some rows were sent twice"


def assert_exactly_once_each(rows: Counter[int | None], expected: frozenset[int]) -> None:
    assert set(rows) == expected
    assert max(rows.values(), default=1) == 1


def test_rerun_with_the_fixed_mapping_sends_exactly_the_failed_rows(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_csv: Path,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    wrong = write_sample_mapping(tmp_path / "wrong.yaml", true_words=("premium",))
    fixed = write_sample_mapping(tmp_path / "fixed.yaml")
    report = tmp_path / "failures.jsonl"
    send = ("--endpoint", sandbox.endpoint(), *FAST)
    gold = sample_outcome.rows_with_tier("gold")
    assert len(sample_outcome.valid_rows) == 2632 and len(sample_outcome.bad_rows) == 72
    assert gold, "the sample has gold rows"

    first = cli("run", sample_csv, "--mapping", wrong, "--report", report, *send, "--json")
    assert first.code == 1, first.stderr
    assert first.json()["accepted"] == len(sample_outcome.valid_rows - gold)
    assert_exactly_once_each(report_rows(report), sample_outcome.bad_rows | gold)
    sent_before = len(sandbox.events())
    before = digest(report)

    rerun = cli("rerun", report, "--mapping", fixed, *send, timeout=CLI_TIMEOUT)

    assert rerun.code == 1, rerun.stderr
    assert fixed_and_still_failing(rerun) == (len(gold), 72)
    assert Counter(sample_outcome.stored_rows(sandbox)[sent_before:]) == Counter(gold)
    assert_every_valid_row_once(sandbox, sample_outcome)
    assert_exactly_once_each(
        report_rows(tmp_path / "failures.rerun.jsonl"), sample_outcome.bad_rows
    )
    assert digest(report) == before, "rerun must not touch its input report"


def test_a_rerun_report_can_itself_be_rerun(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_csv: Path,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    no_gold_no_basic = write_sample_mapping(
        tmp_path / "a.yaml", true_words=("premium",), false_words=("no",)
    )
    no_basic = write_sample_mapping(tmp_path / "b.yaml", false_words=("no",))
    fixed = write_sample_mapping(tmp_path / "fixed.yaml")
    send = ("--endpoint", sandbox.endpoint(), *FAST)
    gold, basic = sample_outcome.rows_with_tier("gold"), sample_outcome.rows_with_tier("basic")
    bad = sample_outcome.bad_rows

    first = cli("run", sample_csv, "--mapping", no_gold_no_basic, "--report", "f.jsonl", *send)
    assert first.code == 1, first.stderr
    assert_exactly_once_each(report_rows(tmp_path / "f.jsonl"), bad | gold | basic)

    second = cli("rerun", "f.jsonl", "--mapping", no_basic, *send, timeout=CLI_TIMEOUT)
    assert second.code == 1, second.stderr
    assert fixed_and_still_failing(second) == (len(gold), len(bad | basic))
    assert_exactly_once_each(report_rows(tmp_path / "f.rerun.jsonl"), bad | basic)
    before = digest(tmp_path / "f.rerun.jsonl")

    third = cli("rerun", "f.rerun.jsonl", "--mapping", fixed, *send, timeout=CLI_TIMEOUT)
    assert third.code == 1, third.stderr
    assert fixed_and_still_failing(third) == (len(basic), len(bad))
    assert_exactly_once_each(report_rows(tmp_path / "f.rerun.rerun.jsonl"), bad)
    assert digest(tmp_path / "f.rerun.jsonl") == before
    assert_every_valid_row_once(sandbox, sample_outcome)


def test_rerun_without_mapping_resends_stored_events_and_keeps_mapping_failures(
    cli: Callable[..., CliResult],
    sandbox_factory: Callable[..., SandboxProcess],
    sample_csv: Path,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    broken = sandbox_factory("--fault", "503=1.0", name="broken.jsonl")
    healthy = sandbox_factory(name="healthy.jsonl")
    fixed = write_sample_mapping(tmp_path / "fixed.yaml")
    report = tmp_path / "failures.jsonl"

    first = cli(
        "run", sample_csv, "--mapping", fixed, "--report", report,
        "--endpoint", broken.endpoint(), "--max-retries", "0", *FAST, "--json",
    )  # fmt: skip
    assert first.code == 1, first.stderr
    assert first.json()["accepted"] == 0
    assert broken.events() == []
    failures = list(read_report(report))
    sent = {f.row for f in failures if f.stage == "send"}
    assert sent == sample_outcome.valid_rows
    assert all(f.event is not None and f.status == 503 for f in failures if f.stage == "send")
    before = digest(report)

    rerun = cli("rerun", report, "--endpoint", healthy.endpoint(), *FAST, timeout=CLI_TIMEOUT)

    assert rerun.code == 1, rerun.stderr
    assert fixed_and_still_failing(rerun) == (2632, 72)
    assert_every_valid_row_once(healthy, sample_outcome)
    still = list(read_report(tmp_path / "failures.rerun.jsonl"))
    assert_exactly_once_each(Counter(f.row for f in still), sample_outcome.bad_rows)
    assert all(f.stage == "mapping" and "--mapping" in f.error for f in still)
    assert digest(report) == before


def test_rerun_reads_a_csv_report_and_writes_one(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_csv: Path,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    wrong = write_sample_mapping(tmp_path / "wrong.yaml", true_words=("premium",))
    fixed = write_sample_mapping(tmp_path / "fixed.yaml")
    send = ("--endpoint", sandbox.endpoint(), *FAST)
    gold = sample_outcome.rows_with_tier("gold")

    first = cli("run", sample_csv, "--mapping", wrong, "--report", "failures.csv", *send)
    assert first.code == 1, first.stderr
    assert (tmp_path / "failures.csv").read_text(encoding="utf-8").startswith("row,")
    assert_exactly_once_each(report_rows(tmp_path / "failures.csv"), sample_outcome.bad_rows | gold)
    before = digest(tmp_path / "failures.csv")

    rerun = cli("rerun", "failures.csv", "--mapping", fixed, *send, timeout=CLI_TIMEOUT)

    assert rerun.code == 1, rerun.stderr
    assert fixed_and_still_failing(rerun) == (len(gold), 72)
    assert_every_valid_row_once(sandbox, sample_outcome)
    assert_exactly_once_each(report_rows(tmp_path / "failures.rerun.csv"), sample_outcome.bad_rows)
    assert digest(tmp_path / "failures.csv") == before


def test_rerun_refuses_to_write_over_its_input_report(
    cli: Callable[..., CliResult], sandbox: SandboxProcess, tmp_path: Path
) -> None:
    report = tmp_path / "failures.jsonl"
    report.write_text("", encoding="utf-8")

    result = cli("rerun", report, "--report", report, "--endpoint", sandbox.endpoint(), *FAST)

    assert result.code == 2
    assert "is the input report" in result.stderr
    assert report.read_text(encoding="utf-8") == ""
    assert sandbox.stats()["requests"] == 0


def test_rerun_with_a_mapping_that_needs_a_column_the_run_did_not_read_exits_2_naming_it(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_csv: Path,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    import yaml

    wrong = write_sample_mapping(tmp_path / "wrong.yaml", true_words=("premium",))
    fixed = write_sample_mapping(tmp_path / "fixed.yaml")
    raw = yaml.safe_load(fixed.read_text(encoding="utf-8"))
    raw["event_data"]["product"] = {"column": "Product Name", "type": "string"}
    fixed.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    send = ("--endpoint", sandbox.endpoint(), *FAST)
    first = cli("run", sample_csv, "--mapping", wrong, "--report", "failures.jsonl", *send)
    assert first.code == 1, first.stderr
    records = [failure.record for failure in read_report(tmp_path / "failures.jsonl")]
    assert records and all("Product Name" not in record for record in records)
    sent = sandbox.stats()["requests"]

    rerun = cli("rerun", "failures.jsonl", "--mapping", fixed, *send, timeout=CLI_TIMEOUT)

    assert rerun.code == 2, rerun.stderr
    assert "the column 'Product Name' is not in the records of failures.jsonl" in rerun.stderr
    assert "only the columns the failed run read" in rerun.stderr
    assert f"backfill run SOURCE --mapping {fixed}" in rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert sandbox.stats()["requests"] == sent
    assert not (tmp_path / "failures.rerun.jsonl").exists()
