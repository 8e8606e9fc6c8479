"""Crashes, Ctrl-C and second runs: nothing lost, nothing sent twice, end to end.

The real CLI in a subprocess against a real sandbox process on 127.0.0.1. A run is killed or
interrupted once the sandbox holds some hundreds of events; the same command with `--resume`
must then finish the job with every valid row accepted and at most `--concurrency` of them
twice (those in flight at the crash, whose answer was never recorded).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    CliResult,
    SampleOutcome,
    SandboxProcess,
    journal_accepted_rows,
    write_sample_mapping,
    write_valid_orders,
)

from backfill.books.report import read_report

pytestmark = pytest.mark.timeout(120)
CONCURRENCY = 8
SLOW = ("--rate", "600", "--concurrency", str(CONCURRENCY), "--quiet")
FAST = ("--rate", "0", "--quiet")
CLI_TIMEOUT = 60
PART_WAY = 300  # events in the sandbox before the run is stopped: well under the 2632


def stored_count(sandbox: SandboxProcess) -> int:
    return sandbox.store.read_bytes().count(b"\n") if sandbox.store.exists() else 0


def wait_for_events(sandbox: SandboxProcess, process: subprocess.Popen[str], count: int) -> None:
    """Poll the store (bounded) until it holds `count` events; the run must still be going."""
    deadline = time.monotonic() + 30
    while stored_count(sandbox) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"only {stored_count(sandbox)} events after 30 s"
        time.sleep(0.02)  # polls for the event (events stored), up to the 30 s deadline


def order_ids(sandbox: SandboxProcess) -> list[str]:
    return [line["event"]["event_data"]["orderId"] for line in sandbox.events()]


def settle_in_flight(sandbox: SandboxProcess) -> None:
    """After a client is killed, wait (bounded) until the server has answered, or dropped,
    every request it received: what it keeps of them is then in its store."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = sandbox.stats()
        if stats["accepted"] + sum(stats["rejected_by_status"].values()) >= stats["requests"]:
            return
        time.sleep(0.02)  # polls for the event (all answered), up to the 10 s deadline


def journal_rows(report: Path) -> list[int]:
    return journal_accepted_rows(report.with_name(report.name + ".state"))


def duplicates(stored: Counter[int | None]) -> int:
    return sum(count - 1 for count in stored.values())


def assert_job_done(sandbox: SandboxProcess, outcome: SampleOutcome, report: Path) -> None:
    """Every valid row accepted, at most CONCURRENCY twice; every bad row reported once."""
    stored = Counter(outcome.stored_rows(sandbox))
    assert None not in stored, "the sandbox holds an event no correct run would send"
    assert set(stored) == outcome.valid_rows
    assert duplicates(stored) <= CONCURRENCY, stored.most_common(3)
    reported = Counter(failure.row for failure in read_report(report))
    assert set(reported) == outcome.bad_rows
    assert max(reported.values()) == 1, "a row is in the report twice"


def assert_accounted(summary: dict[str, int]) -> None:
    assert summary["already_done"] > 0
    settled = (
        summary["accepted"] + summary["filtered"] + summary["failed"] + summary["already_done"]
    )
    assert settled == summary["read"] == 3000


def test_a_killed_run_resumes_without_losing_or_repeating_rows(
    cli: Callable[..., CliResult],
    cli_process: Callable[..., subprocess.Popen[str]],
    sandbox: SandboxProcess,
    sample_csv: Path,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    report = tmp_path / "failures.jsonl"
    command = (
        "run", sample_csv, "--mapping", mapping, "--report", report,
        "--endpoint", sandbox.endpoint(), *SLOW, "--json",
    )  # fmt: skip
    process = cli_process(*command)
    wait_for_events(sandbox, process, PART_WAY)

    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert len(journal_rows(report)) < len(sample_outcome.valid_rows)

    resumed = cli(*command, "--resume", timeout=CLI_TIMEOUT)

    assert resumed.code == 1, resumed.stderr  # the sample's bad rows are in the report
    assert resumed.json()["stopped"] is None
    assert_accounted(resumed.json())
    assert_job_done(sandbox, sample_outcome, report)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_stops_cleanly_and_resumes(
    signum: signal.Signals,
    cli: Callable[..., CliResult],
    cli_process: Callable[..., subprocess.Popen[str]],
    sandbox: SandboxProcess,
    sample_csv: Path,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    report = tmp_path / "failures.jsonl"
    command = (
        "run", sample_csv, "--mapping", mapping, "--report", report,
        "--endpoint", sandbox.endpoint(), *SLOW,
    )  # fmt: skip
    process = cli_process(*command)
    wait_for_events(sandbox, process, PART_WAY)

    os.kill(process.pid, signum)
    out, err = process.communicate(timeout=30)

    assert process.returncode == 130, out + err
    assert "Interrupted." in out
    assert "--resume" in out
    journal = journal_rows(report)
    stored = sample_outcome.stored_rows(sandbox)
    assert len(journal) == len(set(journal)) < len(sample_outcome.valid_rows)
    assert set(journal) <= set(stored), "the journal names rows the sandbox never accepted"
    # a clean stop lets the requests in flight finish: every accepted row is in the journal
    assert set(stored) == set(journal)

    resumed = cli(*command, "--resume", "--json", timeout=CLI_TIMEOUT)

    assert resumed.code == 1, resumed.stderr  # the sample's bad rows are in the report
    assert resumed.json()["stopped"] is None
    assert_accounted(resumed.json())
    assert_job_done(sandbox, sample_outcome, report)


def test_a_second_run_refuses_an_unfinished_journal_and_sends_nothing(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_csv: Path,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    command = ("run", sample_csv, "--mapping", mapping, "--endpoint", sandbox.endpoint(), *FAST)
    partial = cli(*command, "--limit", "100")
    assert partial.code == 1, partial.stderr  # rows 17, 38, ... of the first 100 are bad
    requests = sandbox.stats()["requests"]
    assert requests == 100

    again = cli(*command)

    assert again.code == 2
    assert "--resume" in again.stderr and "--restart" in again.stderr
    assert "Nothing was sent" in again.stderr
    assert sandbox.stats()["requests"] == requests
    assert len(sandbox.events()) == 100

    finished = cli(*command, "--resume", "--json")
    assert finished.code == 1, finished.stderr
    assert_accounted(finished.json())
    assert_job_done(sandbox, sample_outcome, tmp_path / "orders.csv.failures.jsonl")
    assert duplicates(Counter(sample_outcome.stored_rows(sandbox))) == 0


def test_a_run_after_a_finished_run_refuses_and_restart_sends_everything_again(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_csv: Path,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    report = tmp_path / "failures.jsonl"
    command = (
        "run", sample_csv, "--mapping", mapping, "--report", report,
        "--endpoint", sandbox.endpoint(), *FAST,
    )  # fmt: skip
    assert cli(*command).code == 1
    requests = sandbox.stats()["requests"]

    again = cli(*command)

    assert again.code == 2
    assert "already sent" in again.stderr and "--restart" in again.stderr
    assert sandbox.stats()["requests"] == requests

    restarted = cli(*command, "--restart", "--json")

    assert restarted.code == 1, restarted.stderr
    assert restarted.json()["accepted"] == len(sample_outcome.valid_rows)
    assert restarted.json()["already_done"] == 0
    stored = Counter(sample_outcome.stored_rows(sandbox))
    assert stored == Counter({row: 2 for row in sample_outcome.valid_rows})
    reported = Counter(failure.row for failure in read_report(report))
    assert reported == Counter(sample_outcome.bad_rows), "the restart starts a fresh report"


def test_resume_without_a_journal_refuses(
    cli: Callable[..., CliResult], sandbox: SandboxProcess, sample_csv: Path, tmp_path: Path
) -> None:
    mapping = write_sample_mapping(tmp_path / "map.yaml")

    result = cli(
        "run", sample_csv, "--mapping", mapping, "--endpoint", sandbox.endpoint(), *FAST,
        "--resume",
    )  # fmt: skip

    assert result.code == 2
    assert "no journal" in result.stderr
    assert sandbox.stats()["requests"] == 0


def test_a_journal_of_another_mapping_is_refused(
    cli: Callable[..., CliResult], sandbox: SandboxProcess, sample_csv: Path, tmp_path: Path
) -> None:
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    other = write_sample_mapping(tmp_path / "other.yaml", true_words=("premium",))
    send = ("--endpoint", sandbox.endpoint(), *FAST)
    assert cli("run", sample_csv, "--mapping", mapping, *send, "--limit", "50").code == 1
    requests = sandbox.stats()["requests"]

    for flags in (("--resume",), ()):
        result = cli("run", sample_csv, "--mapping", other, *send, *flags)

        assert result.code == 2, flags
        assert "belongs to another backfill" in result.stderr
        assert "mapping" in result.stderr
        assert sandbox.stats()["requests"] == requests


# --- a run is bound to where it sends ----------------------------------------------------------


def test_a_sandbox_trial_never_counts_as_delivered_to_the_real_endpoint(
    cli: Callable[..., CliResult],
    sandbox_factory: Callable[..., SandboxProcess],
    sample_csv: Path,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    real = sandbox_factory(name="real.jsonl")  # a second sandbox plays the real endpoint
    mapping = write_sample_mapping(tmp_path / "map.yaml")

    trial = cli("run", sample_csv, "--mapping", mapping, "--sandbox", *FAST, "--limit", "300")
    assert trial.code == 1, trial.stderr  # some of the first rows are bad
    assert (tmp_path / "orders.csv.sandbox.failures.jsonl").exists()
    assert not (tmp_path / "orders.csv.failures.jsonl").exists()

    command = ("run", sample_csv, "--mapping", mapping, "--endpoint", real.endpoint(), *FAST)
    first = cli(*command, "--json")

    assert first.code == 1, first.stderr
    summary = first.json()
    assert summary["already_done"] == 0 and summary["accepted"] == len(sample_outcome.valid_rows)
    assert_job_done(real, sample_outcome, tmp_path / "orders.csv.failures.jsonl")
    assert duplicates(Counter(sample_outcome.stored_rows(real))) == 0

    # --resume, as the old refusal message told users to do, never skips the trial's rows
    # either: the real run's journal is its own.
    resumed = cli(*command, "--resume", "--json")
    assert resumed.code == 1 and resumed.json()["accepted"] == 0


def test_a_journal_made_for_another_endpoint_is_refused(
    cli: Callable[..., CliResult],
    sandbox_factory: Callable[..., SandboxProcess],
    sample_csv: Path,
    tmp_path: Path,
) -> None:
    first, second = sandbox_factory(name="a.jsonl"), sandbox_factory(name="b.jsonl")
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    base = ("run", sample_csv, "--mapping", mapping, "--report", "r.jsonl", *FAST)
    assert cli(*base, "--endpoint", first.endpoint(), "--limit", "50").code == 1

    for flags in (("--resume",), ()):
        result = cli(*base, "--endpoint", second.endpoint(), *flags)

        assert result.code == 2, result.stderr
        assert f"made for sending to {first.endpoint()}" in result.stderr
        assert f"this run sends to {second.endpoint()}" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert second.stats()["requests"] == 0


# --- rows in flight at a crash are known -------------------------------------------------------


def uncertain_lines(report: Path) -> list[dict[str, object]]:
    path = report.with_name(report.name + ".uncertain.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_rows_in_flight_at_a_kill_are_counted_listed_and_bound_the_duplicates(
    cli: Callable[..., CliResult],
    cli_process: Callable[..., subprocess.Popen[str]],
    sandbox_factory: Callable[..., SandboxProcess],
    tmp_path: Path,
) -> None:
    count = 400
    source, mapping = write_valid_orders(tmp_path, count)
    sandbox = sandbox_factory("--fault", "slow=1.0", "--slow-seconds", "0.1")
    report = tmp_path / "failures.jsonl"
    command = (
        "run", source, "--mapping", mapping, "--report", report, "--endpoint",
        sandbox.endpoint(), "--rate", "0", "--concurrency", str(CONCURRENCY), "--quiet", "--json",
    )  # fmt: skip
    process = cli_process(*command)
    wait_for_events(sandbox, process, 80)  # answers take 100 ms: 8 requests are in flight
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)
    settle_in_flight(sandbox)

    resumed = cli(*command, "--resume", timeout=CLI_TIMEOUT)

    assert resumed.code == 0, resumed.stderr
    summary = resumed.json()
    stored = Counter(order_ids(sandbox))
    assert set(stored) == {f"ORD-{i}" for i in range(count)}
    twice = {order for order, times in stored.items() if times > 1}
    listed = uncertain_lines(report)
    assert 0 < summary["uncertain"] == len(listed) <= CONCURRENCY
    assert len(twice) == sandbox.stats()["duplicates"] <= summary["uncertain"]
    assert summary["uncertain_report"] == str(report) + ".uncertain.jsonl"
    for line in listed:
        assert line["source"] == str(source)  # as the report names it
        assert line["event"]["event_data"]["orderId"] == f"ORD-{line['row']}"  # type: ignore[index]
    assert twice <= {f"ORD-{line['row']}" for line in listed}, "a duplicate nobody was told of"


def test_the_text_summary_names_the_uncertain_rows(
    cli: Callable[..., CliResult],
    cli_process: Callable[..., subprocess.Popen[str]],
    sandbox_factory: Callable[..., SandboxProcess],
    tmp_path: Path,
) -> None:
    source, mapping = write_valid_orders(tmp_path, 200)
    sandbox = sandbox_factory("--fault", "slow=1.0", "--slow-seconds", "0.1")
    command = (
        "run", source, "--mapping", mapping, "--endpoint", sandbox.endpoint(),
        "--rate", "0", "--concurrency", "4", "--quiet",
    )  # fmt: skip
    process = cli_process(*command)
    wait_for_events(sandbox, process, 20)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)

    resumed = cli(*command, "--resume", timeout=CLI_TIMEOUT)

    assert resumed.code == 0, resumed.stderr
    line = next(x for x in resumed.stdout.splitlines() if x.startswith("  uncertain"))
    assert "may hold them twice" in line
    assert "orders.parquet.failures.jsonl.uncertain.jsonl" in line


def test_a_clean_interrupt_leaves_no_uncertain_rows(
    cli: Callable[..., CliResult],
    cli_process: Callable[..., subprocess.Popen[str]],
    sandbox: SandboxProcess,
    sample_csv: Path,
    tmp_path: Path,
) -> None:
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    command = ("run", sample_csv, "--mapping", mapping, "--endpoint", sandbox.endpoint(), *SLOW)
    process = cli_process(*command)
    wait_for_events(sandbox, process, PART_WAY)
    os.kill(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 130

    resumed = cli(*command, "--resume", "--json", timeout=CLI_TIMEOUT)

    assert resumed.code == 1, resumed.stderr
    assert resumed.json()["uncertain"] == 0
    assert sandbox.stats()["duplicates"] == 0
