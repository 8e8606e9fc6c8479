"""`backfill plan`: validate's counts, what was sent already, requests and ETA, the span and
the events per month (checked against an independent pandas computation), and the
timestamp audit, which fires on files with each problem and stays quiet on a clean one.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import SAMPLE, CliResult, SampleOutcome, SandboxProcess, make_pubkey
from test_id_ledger import id_mapping, valid_in, write_export

from backfill.books.report import read_report
from backfill.look.plan import PLAN_KEYS, plan

NOW_MS = 1_717_200_000_000  # 2024-06-01T00:00:00Z: the audit's "now" in these tests
HOUR_MS = 3_600_000


def independent_events(tmp_path: Path, cli: Callable[..., CliResult]) -> pd.Series:
    """The sample's events' timestamps by pandas alone: paid rows, minus the rows validate
    reports, each value parsed by its own kind (epoch s, epoch ms, ISO with or without an
    offset, naive read as UTC as map.yaml says)."""
    report = tmp_path / "validate.jsonl"
    cli("validate", SAMPLE / "orders.csv", "-m", SAMPLE / "map.yaml", "--report", report)
    failing = {f.row for f in read_report(report)}
    frame = pd.read_csv(SAMPLE / "orders.csv", dtype=str, keep_default_na=False)
    frame = frame[(frame["status"] == "paid") & ~frame.index.isin(failing)]

    def parse(value: str) -> pd.Timestamp:
        if value.isdigit():
            number = int(value)
            return pd.Timestamp(number, unit="s" if number < 10**11 else "ms", tz="UTC")
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")

    return frame["created_at"].map(parse)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_plan_json_matches_validate_and_an_independent_span_and_months(
    cli: Callable[..., CliResult], tmp_path: Path, kind: str
) -> None:
    source = SAMPLE / f"orders.{kind}"
    planned = cli("plan", source, "-m", SAMPLE / "map.yaml", "--json", "--rate", "50")
    assert planned.code == 1, planned.stderr  # some rows fail, as with validate
    result = planned.json()
    assert list(result) == list(PLAN_KEYS)
    validated = cli("validate", source, "-m", SAMPLE / "map.yaml", "--json").json()
    for key in ("read", "would_send", "filtered", "failing"):
        assert result[key] == validated[key], key
    assert result["already_sent"] == 0
    assert result["requests"] == validated["would_send"]
    assert result["eta_seconds"] == validated["would_send"] / 50

    stamps = independent_events(tmp_path, cli)
    assert len(stamps) == result["would_send"]
    millis = [s.value // 1_000_000 for s in stamps]
    assert result["first_timestamp"] == min(millis)
    assert result["last_timestamp"] == max(millis)
    months = stamps.map(lambda s: s.strftime("%Y-%m")).value_counts().sort_index()
    assert result["by_month"] == months.to_dict()
    assert [w["code"] for w in result["warnings"]] == ["naive_values"]  # 2024-03-05 14:22:31
    naive = result["warnings"][0]
    frame = pd.read_csv(SAMPLE / "orders.csv", dtype=str, keep_default_na=False)
    paid = frame[frame["status"] == "paid"]["created_at"]
    naive_text = paid[paid.str.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")]
    expected = naive_text[pd.to_datetime(naive_text, errors="coerce").notna()]  # that parse
    assert naive["count"] == len(expected)
    assert naive["example_rows"] == expected.index[:5].tolist()


def test_plan_counts_rows_a_run_already_sent_and_the_requests_left(
    cli: Callable[..., CliResult], sandbox: SandboxProcess
) -> None:
    source = SAMPLE / "orders.csv"
    trial = cli(
        "run", source, "-m", SAMPLE / "map.yaml", "--endpoint", sandbox.endpoint(),
        "--limit", "10", "--json",
    )  # fmt: skip
    assert trial.code in (0, 1), trial.stderr
    assert trial.json()["accepted"] == 10
    result = cli("plan", source, "-m", SAMPLE / "map.yaml", "--json").json()
    assert result["already_sent"] == 10
    assert result["requests"] == result["would_send"] - 10
    assert result["eta_seconds"] == (result["would_send"] - 10) / 100
    unlimited = cli("plan", source, "-m", SAMPLE / "map.yaml", "--json", "--rate", "0").json()
    assert unlimited["eta_seconds"] is None


def test_plan_of_a_glob_finds_the_journal_its_run_wrote(
    cli: Callable[..., CliResult], sandbox: SandboxProcess, tmp_path: Path
) -> None:
    for part in ("orders-1.csv", "orders-2.csv"):
        (tmp_path / part).write_bytes((SAMPLE / "orders.csv").read_bytes())
    trial = cli(
        "run", "orders-*.csv", "-m", SAMPLE / "map.yaml", "--endpoint", sandbox.endpoint(),
        "--limit", "10", "--json",
    )  # fmt: skip
    assert trial.json()["accepted"] == 10, trial.stderr
    result = cli("plan", "orders-*.csv", "-m", SAMPLE / "map.yaml", "--json")
    assert result.json()["already_sent"] == 10, result.stderr  # the run's default report


def test_plan_counts_ids_the_ledger_holds_as_already_sent(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    mapping, ledger = id_mapping(tmp_path), tmp_path / "ledger.sqlite3"
    november = write_export(tmp_path / "orders-nov.csv", range(0, 1000))
    endpoint = ("--endpoint", sandbox.endpoint(), "--ledger", ledger)
    sent = cli("run", november, "-m", mapping, *endpoint, "--rate", "0", "--quiet", "--json")
    assert sent.code == 1, sent.stderr

    result = cli("plan", SAMPLE / "orders.csv", "-m", mapping, *endpoint, "--json").json()
    assert result["already_sent"] == valid_in(sample_outcome, range(1000)) > 0
    assert result["requests"] == result["would_send"] - result["already_sent"]
    elsewhere = cli("plan", SAMPLE / "orders.csv", "-m", mapping, "--ledger", ledger,
                    "--endpoint", "https://api.example/events", "--json")  # fmt: skip
    assert elsewhere.json()["already_sent"] == 0


def test_plan_prints_a_readable_summary(cli: Callable[..., CliResult]) -> None:
    result = cli("plan", SAMPLE / "orders.parquet", "-m", SAMPLE / "map.yaml")
    assert result.code == 1
    lines = result.stdout.splitlines()
    assert "  would send    2,632" in lines
    assert "  requests      2,632 at 100/s: about 26 s" in lines
    assert "  first         2024-01-01 06:00:24 UTC" in lines
    december = next(line for line in lines if line.startswith("    2024-12 "))
    assert december.split()[1:] == ["375", "#" * 40]  # the busiest month: the longest bar
    assert any(line.startswith("  [naive_values] 418 × times without an offset") for line in lines)


# --- the audit -----------------------------------------------------------------------------


def write_orders(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_mapping(path: Path, **timestamp: str) -> Path:
    mapping = {
        "event_name": "ORDER",
        "timestamp": {"column": "at", **timestamp},
        "user": {"pubKey": "wallet"},
        "event_data": {"orderId": {"column": "order_id", "type": "string"}},
    }
    path.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    return path


def clean_rows(count: int = 300) -> list[dict[str, Any]]:
    start = pd.Timestamp("2023-03-01T08:15:00Z")
    return [
        {
            "order_id": f"ORD-{i:05d}",
            "at": (start + pd.Timedelta(minutes=97 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "wallet": make_pubkey(i + 1),
        }
        for i in range(count)
    ]


def audit(tmp_path: Path, rows: list[dict[str, Any]], **timestamp: str) -> dict[str, dict]:
    source = write_orders(tmp_path / "orders.csv", rows)
    mapping = write_mapping(tmp_path / "map.yaml", **timestamp)
    result = plan(source, mapping, now_ms=NOW_MS, report=tmp_path / "r.jsonl")
    return {w.code: w.as_dict() for w in result.warnings}


def test_the_audit_is_quiet_on_a_clean_file(tmp_path: Path) -> None:
    assert audit(tmp_path, clean_rows()) == {}


def test_values_in_the_future_and_before_2009_are_flagged(tmp_path: Path) -> None:
    rows = clean_rows()
    rows[5]["at"] = "2024-06-01T10:00:00Z"  # after now, within a day: it maps
    rows[9]["at"] = "2024-07-01T10:00:00Z"  # a month ahead: it fails, and is flagged
    rows[7]["at"] = "2005-02-03T10:00:00Z"
    found = audit(tmp_path, rows)
    assert set(found) == {"future", "before_2009"}
    assert (found["future"]["count"], found["future"]["example_rows"]) == (2, [5, 9])
    assert (found["before_2009"]["count"], found["before_2009"]["example_rows"]) == (1, [7])


@pytest.mark.parametrize(("unit", "factor", "said"), [("s", 1000, "ms"), ("ms", 0.001, "s")])
def test_epoch_magnitudes_of_another_unit_are_flagged(
    tmp_path: Path, unit: str, factor: float, said: str
) -> None:
    rows = clean_rows(50)
    for row in rows:
        seconds = pd.Timestamp(row["at"]).value // 1_000_000_000
        row["at"] = str(seconds if unit == "s" else seconds * 1000)
    for i in (3, 4, 30):
        rows[i]["at"] = str(int(int(rows[i]["at"]) * factor))
    found = audit(tmp_path, rows, unit=unit)
    assert found["unit_mismatch"]["count"] == 3
    assert found["unit_mismatch"]["example_rows"] == [3, 4, 30]
    assert f"says {said}, but the mapping's unit is {unit}" in found["unit_mismatch"]["message"]


def test_a_date_column_with_every_time_at_midnight_is_flagged(tmp_path: Path) -> None:
    rows = clean_rows(40)
    for i, row in enumerate(rows):
        row["at"] = f"{i % 28 + 1:02d}/03/2023"
    found = audit(tmp_path, rows, format="%d/%m/%Y")
    assert found["all_midnight"]["count"] == 40
    assert found["all_midnight"]["example_rows"] == [0, 1, 2, 3, 4]
    assert found["naive_values"]["count"] == 40
    rows[17]["at"] = "5/03/2023"  # still midnight
    assert "all_midnight" in audit(tmp_path, rows, format="%d/%m/%Y")


def test_naive_values_ambiguous_and_missing_local_times_are_flagged(tmp_path: Path) -> None:
    rows = clean_rows(30)
    for row in rows:
        row["at"] = pd.Timestamp(row["at"]).strftime("%Y-%m-%d %H:%M:%S")  # no offset
    rows[2]["at"] = "2023-10-29 02:30:00"  # Berlin: clocks went back, this hour is twice
    rows[11]["at"] = "2023-03-26 02:30:00"  # Berlin: clocks went forward, it never was
    rows[12]["at"] = "2023-03-26T02:30:00Z"  # with an offset: neither naive nor missing
    found = audit(tmp_path, rows, timezone="Europe/Berlin")
    assert set(found) == {"naive_values", "dst_ambiguous", "dst_missing"}
    assert (
        found["naive_values"]["count"] == 28
    )  # all but the one with an offset and the missing one
    assert (found["dst_ambiguous"]["count"], found["dst_ambiguous"]["example_rows"]) == (1, [2])
    assert (found["dst_missing"]["count"], found["dst_missing"]["example_rows"]) == (1, [11])


def test_duplicate_order_ids_are_flagged(tmp_path: Path) -> None:
    rows = clean_rows()
    rows[40]["order_id"] = rows[10]["order_id"]
    rows[41]["order_id"] = rows[10]["order_id"]
    rows[299]["order_id"] = rows[0]["order_id"]
    found = audit(tmp_path, rows)
    assert set(found) == {"duplicate_ids"}
    assert (found["duplicate_ids"]["count"], found["duplicate_ids"]["example_rows"]) == (
        3,
        [40, 41, 299],
    )


def test_one_wallet_with_an_outsized_share_is_flagged(tmp_path: Path) -> None:
    rows = clean_rows(400)
    busy = make_pubkey(999_999)
    for i in range(0, 400, 4):
        rows[i]["wallet"] = busy
    found = audit(tmp_path, rows)
    assert set(found) == {"wallet_concentration"}
    assert found["wallet_concentration"]["count"] == 100
    assert found["wallet_concentration"]["example_rows"] == [0, 4, 8, 12, 16]
    assert busy in found["wallet_concentration"]["message"]
    assert "25%" in found["wallet_concentration"]["message"]


def test_beyond_the_exact_limit_duplicates_are_estimated_in_fixed_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backfill.look import duplicates

    monkeypatch.setattr(duplicates, "EXACT_IDS", 50)
    assert audit(tmp_path, clean_rows()) == {}  # nothing flagged on a clean file
    rows = clean_rows()
    for i in range(200, 240):
        rows[i]["order_id"] = rows[i - 150]["order_id"]
    found = audit(tmp_path, rows)
    assert set(found) == {"duplicate_ids"}
    assert found["duplicate_ids"]["count"] == 40  # 300 ids in 2^28 bits: no false repeat
    assert found["duplicate_ids"]["example_rows"] == [200, 201, 202, 203, 204]
    assert "(about 40 repeats)" in found["duplicate_ids"]["message"]
