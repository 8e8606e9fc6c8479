"""`backfill run` end to end: the real CLI in a subprocess against a real sandbox process.

Two processes talk HTTP over 127.0.0.1; nothing is mocked. What "Torque" received is read
from the sandbox's store and stats, and compared with what the library maps from the same
rows. Runs use `--rate 0` unless the rate is what is tested, so the file stays quick.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, TEST_KEY, CliResult, SandboxProcess, cli_env, make_pubkey

from backfill.errors import UsageError
from backfill.look.validate import mapped_chunks, open_inputs
from backfill.mapping.envelopes import Event
from backfill.mapping.events import RowFailure
from backfill.send.event_loop import event_loop_runner

PARQUET = SAMPLE / "orders.parquet"
CSV = SAMPLE / "orders.csv"
MAPPING = SAMPLE / "map.yaml"
VALID, FILTERED, BAD, TOTAL = 2632, 296, 72, 3000

# The deliberately bad rows, from sample_data/README.md: order id -> (reason, bad column).
_BAD_KINDS = [
    (
        "user.pubKey (column 'wallet') is not a Solana public key",
        "wallet",
        "000064 000202 000248 000283 000445 000571 000580 000622 000924 001204 001569 002224 "
        "002477 002652 000353 000632 000649 000700 000845 000891 001206 001438 002060 002382",
    ),
    (
        "user.pubKey (column 'wallet') is missing",
        "wallet",
        "000221 000695 000824 001035 001666 002093 002114 002885",
    ),
    (
        "timestamp (column 'created_at') is not a timestamp",
        "created_at",
        "000018 000039 000242 000512 000611 000861 000901 001173 001608 002307 002333 002824",
    ),
    (
        "event_data.orderAmount (column 'total') is not a number",
        "total",
        "000045 000184 001067 001594 001745 002373 002412 002706 002804 002841 002845 002925",
    ),
    (
        "event_data.isPremiumUser (column 'tier') is not a boolean",
        "tier",
        "000070 000137 001621 001773 001963 002547 002604 002668 002867",
    ),
    (
        "event_data.quantity (column 'quantity') is missing",
        "quantity",
        "000411 000979 001061 001413 001533 001573 002639",
    ),
]
BAD_ORDERS = {
    f"ORD-{number}": (reason, column)
    for reason, column, numbers in _BAD_KINDS
    for number in numbers.split()
}


def canonical(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"))


@functools.cache
def mapped(source: Path) -> tuple[list[tuple[int, Event]], dict[int, RowFailure]]:
    """What the library maps from `source`: (row, event) in row order, and the failures."""
    opened, mapping = open_inputs(source, MAPPING)
    events: list[tuple[int, Event]] = []
    failures: dict[int, RowFailure] = {}
    for chunk in mapped_chunks(opened, mapping):
        events.extend(chunk.events())
        failures.update((f.row, f) for f in chunk.failures if f.row is not None)
    return events, failures


@functools.cache
def records(source: Path) -> dict[int, dict[str, Any]]:
    """Every row's original values as the source reads them, by row number: in the columns
    the mapping uses, all that a run reads (and so all that its report keeps)."""
    opened, mapping = open_inputs(source, MAPPING)
    used = set(mapping.columns)
    found: dict[int, dict[str, Any]] = {}
    for chunk in opened.chunks():
        rows = chunk.table.to_pylist()
        found.update(
            (row, {k: v for k, v in values.items() if k in used})
            for row, values in zip(chunk.rows.tolist(), rows)
        )
    return found


def expected_events(source: Path = PARQUET, limit: int | None = None) -> list[str]:
    events, _ = mapped(source)
    return sorted(canonical(event.as_dict()) for _, event in events[:limit])


def stored_events(sandbox: SandboxProcess) -> list[str]:
    return sorted(canonical(line["event"]) for line in sandbox.events())


def run_args(source: Path, sandbox: SandboxProcess, *extra: str) -> list[str | Path]:
    return [
        "run",
        source,
        "--mapping",
        MAPPING,
        "--endpoint",
        sandbox.endpoint(),
        "--report",
        "failures.jsonl",
        "--json",
        *extra,
    ]


def assert_accounted(summary: dict[str, Any]) -> None:
    settled = summary["accepted"] + summary["filtered"] + summary["failed"]
    assert settled + summary["unsent"] + summary["already_done"] == summary["read"]


def assert_key_never_written(tmp_path: Path, *results: CliResult) -> None:
    """The API key is in no output and in no file the run produced (report, journal, ...)."""
    for result in results:
        assert TEST_KEY not in result.stdout and TEST_KEY not in result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TEST_KEY.encode() not in path.read_bytes(), f"the key leaked into {path}"


def report_lines(tmp_path: Path, name: str = "failures.jsonl") -> list[dict[str, Any]]:
    text = (tmp_path / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


Cli = Callable[..., CliResult]
Factory = Callable[..., SandboxProcess]


# --- every row, exactly once, exactly as mapped ----------------------------------------------


@pytest.mark.parametrize(
    ("source", "api", "path"),
    [
        (PARQUET, "torque-v1", "/events"),
        (CSV, "torque-v1", "/events"),
        (PARQUET, "torque-ingest", "/ingest/events"),
    ],
    ids=["parquet-v1", "csv-v1", "parquet-ingest"],
)
def test_run_sends_every_valid_row_once_with_its_mapped_body_and_reports_the_bad_ones(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory, source: Path, api: str, path: str
) -> None:
    sandbox = sandbox_factory("--key", TEST_KEY)  # only this key, in this API's own header
    args = run_args(source, sandbox, "--api", api, "--endpoint", sandbox.endpoint(path))
    result = cli(*args, "--rate", "0")

    assert result.code == 1, result.stderr  # 1: some rows are in the failure report
    summary = result.json()
    assert (summary["read"], summary["accepted"], summary["filtered"], summary["failed"]) == (
        TOTAL,
        VALID,
        FILTERED,
        BAD,
    )
    assert summary["unsent"] == summary["already_done"] == summary["retries"] == 0
    assert summary["stopped"] is None
    assert_accounted(summary)

    stats = sandbox.stats()
    assert stats["requests"] == stats["accepted"] == VALID
    assert stats["duplicates"] == 0 and stats["rejected_by_status"] == {}
    assert {line["api"] for line in sandbox.events()} == {api}
    assert stored_events(sandbox) == expected_events(source)
    stored = [line["event"] for line in sandbox.events()]
    assert len({event["event_data"]["orderId"] for event in stored}) == VALID
    assert all(type(event["timestamp"]) is int for event in stored)  # ms, never a float

    failures = report_lines(tmp_path)
    assert len(failures) == BAD
    source_records = records(source)
    for failure in failures:
        reason, column = BAD_ORDERS[failure["record"]["order_id"]]
        assert failure["stage"] == "mapping" and failure["event"] is None
        assert failure["reason"].startswith(reason)
        assert failure["record"] == source_records[failure["row"]]
        assert "Product Name" not in failure["record"]  # not mapped, so not read
        assert f"found {failure['record'][column]!r}" in failure["error"]
    assert {f["record"]["order_id"] for f in failures} == set(BAD_ORDERS)
    assert_key_never_written(tmp_path, result)


NO_UVLOOP = pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not made for Windows")


@pytest.mark.parametrize("loop", ["asyncio", pytest.param("uvloop", marks=NO_UVLOOP)])
def test_run_sends_the_same_events_on_either_event_loop(
    cli: Cli, sandbox: SandboxProcess, loop: str
) -> None:
    result = cli(*run_args(PARQUET, sandbox, "--rate", "0"), env=cli_env(BACKFILL_EVENT_LOOP=loop))

    assert result.code == 1, result.stderr
    summary = result.json()
    assert (summary["accepted"], summary["failed"]) == (VALID, BAD)
    assert_accounted(summary)
    assert sandbox.stats()["duplicates"] == 0
    assert stored_events(sandbox) == expected_events(PARQUET)


def test_an_unknown_event_loop_exits_2_and_sends_nothing(
    tmp_path: Path, cli: Cli, sandbox: SandboxProcess
) -> None:
    result = cli(*run_args(PARQUET, sandbox), env=cli_env(BACKFILL_EVENT_LOOP="tokio"))

    assert result.code == 2
    assert result.stderr.strip() == (
        "Error: BACKFILL_EVENT_LOOP='tokio': expected one of uvloop, asyncio."
    )
    assert sandbox.stats()["requests"] == 0
    assert not list(tmp_path.glob("failures.jsonl*"))  # no report, no journal


def test_the_event_loop_is_uvloop_unless_asyncio_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    uvloop = pytest.importorskip("uvloop")  # installed everywhere but Windows
    monkeypatch.delenv("BACKFILL_EVENT_LOOP", raising=False)
    assert event_loop_runner() is uvloop.run
    monkeypatch.setenv("BACKFILL_EVENT_LOOP", " AsyncIO ")
    assert event_loop_runner() is asyncio.run


def test_without_uvloop_the_run_falls_back_to_asyncio_unless_uvloop_was_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an install without it looks like
    monkeypatch.delenv("BACKFILL_EVENT_LOOP", raising=False)
    assert event_loop_runner() is asyncio.run
    monkeypatch.setenv("BACKFILL_EVENT_LOOP", "uvloop")
    with pytest.raises(UsageError, match="uvloop is not installed"):
        event_loop_runner()


# --- the rate, as the server sees it ---------------------------------------------------------


def test_run_keeps_to_its_rate_as_observed_by_the_server(
    tmp_path: Path, cli: Cli, sandbox: SandboxProcess
) -> None:
    rate, events = 200, 1000
    result = cli(*run_args(PARQUET, sandbox, "--rate", str(rate), "--limit", str(events)))

    summary = result.json()
    assert summary["accepted"] == events
    assert_accounted(summary)
    stats = sandbox.stats()
    # Never more than the rate in any second, as the server counts them. How close to the
    # rate a run gets depends on the machine's load: that is measured by the benchmarks
    # (`run_benchmarks.py --only rate`, docs/benchmarks.md), not asserted here.
    assert stats["max_requests_in_any_1s_window"] <= 1.1 * rate


# --- server faults, retried until every row is in -------------------------------------------

FAULTS = {
    "429-seconds": (
        ["--fault", "429=0.2", "--fault-first-n", "40", "--retry-after-format", "seconds"],
        ["--concurrency", "32"],
    ),
    "429-http-date": (
        ["--fault", "429=0.2", "--fault-first-n", "40", "--retry-after-format", "http-date"],
        ["--concurrency", "32"],
    ),
    "503": (["--fault", "503=0.3", "--fault-first-n", "200"], []),
    "reset-before": (["--fault", "reset-before=0.2", "--fault-first-n", "200"], []),
    "slow": (
        ["--fault", "slow=0.1", "--slow-seconds", "2", "--fault-first-n", "100"],
        ["--timeout", "0.5"],
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_run_retries_server_faults_until_every_valid_row_is_accepted(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory, fault: str
) -> None:
    sandbox_flags, cli_flags = FAULTS[fault]
    sandbox = sandbox_factory(*sandbox_flags)
    result = cli(*run_args(PARQUET, sandbox, "--rate", "0", "--max-retries", "4", *cli_flags))
    final = sandbox.stop()  # wakes answers still held back by "slow", so the store is final

    assert result.code == 1, result.stderr
    summary = result.json()
    assert (summary["accepted"], summary["failed"], summary["unsent"]) == (VALID, BAD, 0)
    assert summary["retries"] > 0
    assert_accounted(summary)
    injected = sum(final["faults_injected"].values())
    stored = stored_events(sandbox)
    assert sorted(set(stored)) == expected_events()
    if fault == "slow":
        # Every held-back answer timed out and was retried (a busy machine may time out a
        # few more). An answer lost to the timeout may still have been accepted: the
        # documented window, at most one duplicate per request that timed out.
        assert summary["retries"] >= injected
        assert final["duplicates"] <= summary["retries"]
    else:
        assert summary["retries"] == injected  # one retry per fault, no more
        assert final["duplicates"] == 0 and len(stored) == VALID
    if fault.startswith("429"):
        # The whole run slowed down. That Retry-After pauses every sender for its time is
        # proved with a fake clock (tests/test_sender.py::test_limiter_pauses_everyone_until_
        # retry_after, ::test_limiter_acquire_waits_out_the_pause): a gap seen here could as
        # well come from a busy machine, so it would prove nothing.
        assert summary["slowdowns"] >= 1
    assert_key_never_written(tmp_path, result)


def test_run_reports_rows_whose_retries_ran_out(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory
) -> None:
    sandbox = sandbox_factory("--fault", "503=1.0")
    args = run_args(PARQUET, sandbox, "--rate", "0", "--max-retries", "1", "--limit", "5")
    result = cli(*args)

    assert result.code == 1, result.stderr
    summary = result.json()
    assert (summary["accepted"], summary["failed"]) == (0, 5)
    assert_accounted(summary)
    assert sandbox.stats()["requests"] == 10  # each row: the first try and one retry
    failures = sorted(report_lines(tmp_path), key=lambda f: f["row"])
    events, _ = mapped(PARQUET)
    assert [f["row"] for f in failures] == [row for row, _ in events[:5]]
    for failure, (row, event) in zip(failures, events[:5]):
        assert failure["stage"] == "send"
        assert failure["status"] == 503 and failure["attempts"] == 2
        assert failure["reason"] == "gave up: http 503"
        assert "gave up after 2 attempts" in failure["error"]
        assert failure["event"] == event.as_dict()
        assert failure["record"] == records(PARQUET)[row]
    assert_key_never_written(tmp_path, result)


# --- the key: refused, missing, or about to travel in clear ----------------------------------


def test_run_stops_at_once_when_the_server_refuses_the_key(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory
) -> None:
    sandbox = sandbox_factory("--key", "other")
    concurrency = 4
    args = [
        "run",
        PARQUET,
        "--mapping",
        MAPPING,
        "--endpoint",
        sandbox.endpoint(),
        "--rate",
        "0",
        "--concurrency",
        str(concurrency),
    ]
    result = cli(*args)

    assert result.code == 2
    assert result.stdout.startswith("Stopped: the server refused the API key.")
    output = result.stdout + result.stderr
    assert output.count("HTTP 403: Invalid API key") == 1
    assert "check TORQUE_API_KEY" in output
    assert "Traceback" not in result.stderr
    stats = sandbox.stats()
    assert 1 <= stats["requests"] <= concurrency and stats["accepted"] == 0
    assert_key_never_written(tmp_path, result)


def test_run_without_a_key_exits_2_and_sends_nothing(
    tmp_path: Path, cli: Cli, sandbox: SandboxProcess
) -> None:
    env = cli_env()
    del env["TORQUE_API_KEY"]
    result = cli(*run_args(PARQUET, sandbox), env=env)

    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Error: TORQUE_API_KEY is not set")
    assert "--sandbox" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sandbox.stats()["requests"] == 0
    assert not (tmp_path / "failures.jsonl").exists()


def test_run_refuses_plain_http_to_another_machine(tmp_path: Path, cli: Cli) -> None:
    args = ["run", PARQUET, "--mapping", MAPPING, "--endpoint", "http://example.com/events"]
    result = cli(*args)

    assert result.code == 2
    assert result.stdout == ""
    assert "clear text" in result.stderr and "--allow-insecure" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # refused before any report, journal or request
    assert TEST_KEY not in result.stderr


def test_dry_run_maps_everything_and_sends_nothing(
    tmp_path: Path, cli: Cli, sandbox: SandboxProcess
) -> None:
    result = cli(*run_args(PARQUET, sandbox, "--dry-run"))

    assert result.code == 1  # rows would fail
    summary = result.json()
    assert (summary["would_send"], summary["filtered"], summary["failing"]) == (
        VALID,
        FILTERED,
        BAD,
    )
    assert sandbox.stats()["requests"] == 0
    assert not (tmp_path / "failures.jsonl.state").exists()
    assert len(report_lines(tmp_path)) == BAD  # the report `run` would write


# --- rehearsal ------------------------------------------------------------------------------


def test_sandbox_mode_needs_no_key_and_says_what_it_accepted(tmp_path: Path, cli: Cli) -> None:
    env = cli_env()
    del env["TORQUE_API_KEY"]
    args = ["run", PARQUET, "--mapping", MAPPING, "--sandbox", "--rate", "0"]
    result = cli(*args, env=env)

    assert result.code == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Done."
    assert "  accepted      2,632" in lines
    assert "  failed        72" in lines
    assert "Sandbox: 2,632 events accepted, 0 duplicates." in lines
    # A local answer takes under a millisecond: shown in tenths, never as "0 ms".
    [in_flight] = [line for line in lines if line.startswith("  in flight")]
    assert re.fullmatch(
        r"  in flight +[0-9,]+ at most, ([0-9]\.[0-9]|[1-9][0-9,]+) ms per answer \(median\)",
        in_flight,
    ), in_flight


# --- float epochs --------------------------------------------------------------------------

FLOAT_EPOCHS = {  # column -> (float64 values with gaps, the exact ms each must arrive as)
    "at_s": (
        [1731596206.795, None, 1700000000.001, math.nan, 1600000000.999],
        [1_731_596_206_795, None, 1_700_000_000_001, None, 1_600_000_000_999],
    ),
    "at_ms": (
        [1731596206795.0, None, 1700000000001.0, math.nan, 1600000000999.0],
        [1_731_596_206_795, None, 1_700_000_000_001, None, 1_600_000_000_999],
    ),
    "at_us": (
        [1731596206795999.0, None, 1700000000001000.0, math.nan, 1600000000999999.0],
        [1_731_596_206_795, None, 1_700_000_000_001, None, 1_600_000_000_999],
    ),
}


@pytest.mark.parametrize(
    ("column", "unit"), [("at_s", "s"), ("at_ms", "auto"), ("at_us", "us"), ("at_s", "auto")]
)
def test_float64_epoch_columns_with_gaps_arrive_exactly(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory, column: str, unit: str
) -> None:
    values, expected = FLOAT_EPOCHS[column]
    wallets = [make_pubkey(i) for i in range(len(values))]
    source = tmp_path / "orders.parquet"
    pq.write_table(
        pa.table(
            {
                "order_id": [f"ORD-{i}" for i in range(len(values))],
                "wallet": wallets,
                **{name: pa.array(v, pa.float64()) for name, (v, _) in FLOAT_EPOCHS.items()},
            }
        ),
        source,
    )
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        f"event_name: E\ntimestamp: {{column: {column}, unit: {unit}}}\n"
        "user: {pubKey: wallet}\nevent_data: {orderId: order_id}\n",
        encoding="utf-8",
    )
    sandbox = sandbox_factory()
    result = cli(
        "run",
        source,
        "--mapping",
        mapping,
        "--endpoint",
        sandbox.endpoint(),
        "--json",
        "--rate",
        "0",
        "--report",
        "failures.jsonl",
    )
    assert result.code == 1, result.stderr  # the two gaps are in the report
    arrived = {
        e["event"]["event_data"]["orderId"]: e["event"]["timestamp"] for e in sandbox.events()
    }
    assert arrived == {f"ORD-{i}": ms for i, ms in enumerate(expected) if ms is not None}
    assert all(type(ms) is int for ms in arrived.values())
    failed = {line["row"]: line["reason"] for line in report_lines(tmp_path)}
    assert failed == {i: f"timestamp (column '{column}') is missing" for i in (1, 3)}
