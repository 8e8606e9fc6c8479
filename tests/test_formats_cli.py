"""Exports as shops' tools write them, end to end: the real CLI against a real sandbox
process on 127.0.0.1 must send exactly the events the bundled UTF-8 sample makes."""

from __future__ import annotations

import csv
import datetime as dt
import json
import zoneinfo
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import SAMPLE, CliResult, SandboxProcess, canonical_event, make_pubkey

from backfill.books.report import read_report
from backfill.cli import cli as cli_group

pytestmark = pytest.mark.timeout(120)
SEND = ("--rate", "0", "--quiet", "--json")


def sample_records() -> tuple[list[str], list[dict[str, str]]]:
    with (SAMPLE / "orders.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def swap_marks(text: str) -> str:
    """12.50 -> 12,50 (and a wrong 30,00 -> a wrong 30.00): the same value, the other way."""
    return text.translate(str.maketrans(".,", ",."))


def sent(
    cli: Callable[..., CliResult], sandbox: SandboxProcess, report: Path, *args: str | Path
) -> tuple[Counter[str], list[tuple[int | None, str]]]:
    """Run into `sandbox`; the events it stored, and the report's (row, reason) pairs."""
    result = cli("run", *args, "--report", report, "--endpoint", sandbox.endpoint(), *SEND)
    assert result.code == 1, result.stderr  # the sample has bad rows on purpose
    assert result.json()["unsent"] == 0
    events = Counter(canonical_event(line["event"]) for line in sandbox.events())
    failures = sorted((f.row, f.reason) for f in read_report(report))
    return events, failures


def test_a_windows_1252_semicolon_crlf_decimal_comma_export_sends_the_same_events(
    cli: Callable[..., CliResult],
    sandbox_factory: Callable[..., SandboxProcess],
    tmp_path: Path,
) -> None:
    header, records = sample_records()
    export = tmp_path / "export.csv"
    with export.open("w", encoding="cp1252", errors="replace", newline="") as handle:
        writer = csv.DictWriter(handle, header, delimiter=";", lineterminator="\r\n")
        writer.writeheader()
        for record in records:
            writer.writerow({**record, "total": swap_marks(record["total"])})
    data = export.read_bytes()
    assert b"\r\n" in data and "é".encode("cp1252") in data  # the sample's accents, in cp1252
    mapping: dict[str, Any] = yaml.safe_load((SAMPLE / "map.yaml").read_text(encoding="utf-8"))
    mapping["event_data"]["orderAmount"].update({"decimal": ",", "thousands": "."})
    local_map = tmp_path / "local.yaml"
    local_map.write_text(yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8")

    original = sent(
        cli, sandbox_factory(name="a.jsonl"), tmp_path / "a.failures.jsonl",
        SAMPLE / "orders.csv", "-m", SAMPLE / "map.yaml",
    )  # fmt: skip
    exported = sent(
        cli, sandbox_factory(name="b.jsonl"), tmp_path / "b.failures.jsonl",
        export, "-m", local_map, "--delimiter", ";", "--encoding", "cp1252",
    )  # fmt: skip

    assert sum(original[0].values()) > 2000
    assert exported[0] == original[0]
    assert exported[1] == original[1]


def write_cp1252_orders(tmp_path: Path) -> tuple[Path, Path]:
    source = tmp_path / "orders.csv"
    source.write_bytes(
        "created_at;wallet;city;total\r\n"
        f"2024-01-01T00:00:00Z;{WALLET};Zürich;1.234,50\r\n"
        f"2024-01-02T00:00:00Z;{WALLET};Köln;12\r\n".encode("cp1252")
    )
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "event_name: STORE_ORDER\n"
        "timestamp: {column: created_at}\n"
        "user: {pubKey: wallet}\n"
        "event_data:\n"
        "  city: city\n"
        '  amount: {column: total, type: number, decimal: ",", thousands: "."}\n',
        encoding="utf-8",
    )
    return source, mapping


WALLET = "3ooVv5ebAEi4UpQ26BPVXxyUv6GPnCB1VfSiNZKkR2Jd"
READ_AS = ("--delimiter", ";", "--encoding", "cp1252")


def test_validate_and_preview_take_the_encoding(tmp_path: Path) -> None:
    source, mapping = write_cp1252_orders(tmp_path)
    runner = CliRunner()
    checked = runner.invoke(
        cli_group, ["validate", str(source), "-m", str(mapping), "--json", *READ_AS]
    )
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["would_send"] == 2
    shown = runner.invoke(cli_group, ["preview", str(source), "-m", str(mapping), *READ_AS])
    assert shown.exit_code == 0, shown.output
    assert '"city": "Zürich"' in shown.stdout and '"amount": 1234.5' in shown.stdout
    assert '"city": "Köln"' in shown.stdout and '"amount": 12\n' in shown.stdout


def test_without_the_encoding_the_rows_say_which_to_try(tmp_path: Path) -> None:
    source, mapping = write_cp1252_orders(tmp_path)
    result = CliRunner().invoke(
        cli_group, ["validate", str(source), "-m", str(mapping), "--delimiter", ";", "--json"]
    )
    assert result.exit_code == 1
    [reason] = json.loads(result.stdout)["reasons"]
    assert "it looks like cp1252: try --encoding cp1252" in reason["reason"]
    assert reason["example_rows"] == [0, 1]


def test_an_unknown_encoding_is_a_one_line_error_before_anything_is_sent(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    source, mapping = write_cp1252_orders(tmp_path)
    result = cli("run", source, "-m", mapping, "--sandbox", "--encoding", "klingon", *SEND)
    assert result.code == 2
    assert result.stderr == (
        "Error: --encoding 'klingon' is not an encoding Python knows; "
        "try cp1252, latin-1, utf-16 or utf-8.\n"
    )


def test_an_xlsx_of_thousands_of_rows_maps_exactly(
    cli: Callable[..., CliResult], sandbox: SandboxProcess, tmp_path: Path
) -> None:
    import openpyxl

    start = dt.datetime(2024, 3, 31, 12, 0, 0)  # naive: read in Berlin, in summer time
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Orders")
    sheet.append(["Order ID", "Ordered at", "Wallet", "Total", "Premium"])
    expected: Counter[str] = Counter()
    for i in range(3000):
        when = start + dt.timedelta(milliseconds=i * 1_000_003)
        total: int | float = i if i % 2 else i + 0.25
        order_id = f"{i:06d}"
        sheet.append([order_id, when, make_pubkey(i % 40), total, i % 3 == 0])
        stamp = when.replace(tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))
        event = {
            "timestamp": int(stamp.timestamp()) * 1000 + stamp.microsecond // 1000,
            "user": {"pubKey": make_pubkey(i % 40)},
            "event_name": "STORE_ORDER",
            # a column of numbers, some with fractions, is a float column, as in Parquet
            "event_data": {"orderId": order_id, "amount": float(total), "premium": i % 3 == 0},
        }
        expected[canonical_event(event)] += 1
    sheet.append(["999999", 45292.5, make_pubkey(1), 1, True])  # a date that lost its format
    source = tmp_path / "orders.xlsx"
    workbook.save(source)
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "event_name: STORE_ORDER\n"
        "timestamp: {column: Ordered at, timezone: Europe/Berlin}\n"
        "user: {pubKey: Wallet}\n"
        "event_data:\n"
        "  orderId: Order ID\n"
        "  amount: {column: Total, type: number}\n"
        "  premium: Premium\n",
        encoding="utf-8",
    )
    report = tmp_path / "failures.jsonl"

    result = cli("run", source, "-m", mapping, "--sheet", "Orders", "--report", report,
                 "--endpoint", sandbox.endpoint(), *SEND)  # fmt: skip

    assert result.code == 1, result.stderr
    assert result.json()["accepted"] == 3000
    assert Counter(canonical_event(line["event"]) for line in sandbox.events()) == expected
    [failure] = read_report(report)
    assert (failure.row, failure.stage) == (3000, "read")  # Excel's row 3002
    assert "looks like an Excel serial date (2024-01-01 12:00:00)" in failure.reason


def test_json_lines_with_nested_fields_and_a_broken_line(
    cli: Callable[..., CliResult], sandbox: SandboxProcess, tmp_path: Path
) -> None:
    lines: list[str] = []
    expected: Counter[str] = Counter()
    for i in range(500):
        order = {
            "id": f"{i:05d}",
            "created": f"2024-05-01T10:00:00.{i % 1000:03d}Z",
            "customer": {"wallet": make_pubkey(i % 7), "address": {"country": "DE"}},
            "amount": {"value": i + 0.5, "currency": "EUR"},
        }
        lines.append(json.dumps(order))
        event = {
            "timestamp": 1714557600000 + i % 1000,
            "user": {"pubKey": make_pubkey(i % 7)},
            "event_name": "STORE_ORDER",
            "event_data": {"orderId": f"{i:05d}", "amount": i + 0.5, "country": "DE"},
        }
        expected[canonical_event(event)] += 1
    lines.insert(250, '{"id": "BROKEN", "created": ')  # a webhook cut mid-write
    source = tmp_path / "orders.ndjson"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "event_name: STORE_ORDER\n"
        "timestamp: {column: created}\n"
        'user: {pubKey: "`customer.wallet`"}\n'
        "event_data:\n"
        "  orderId: id\n"
        '  amount: {column: "`amount.value`", type: number}\n'
        '  country: "`customer.address.country`"\n'
        "filter: \"`amount.currency` == 'EUR'\"\n",
        encoding="utf-8",
    )
    report = tmp_path / "failures.jsonl"

    result = cli("run", source, "-m", mapping, "--report", report,
                 "--endpoint", sandbox.endpoint(), *SEND)  # fmt: skip

    assert result.code == 1, result.stderr
    assert (result.json()["read"], result.json()["accepted"]) == (501, 500)
    assert Counter(canonical_event(line["event"]) for line in sandbox.events()) == expected
    [failure] = read_report(report)
    assert (failure.row, failure.stage) == (250, "read")  # line 251 of the file
    assert failure.reason.startswith("JSON line skipped: not JSON: ")
    assert failure.record == {"_line": '{"id": "BROKEN", "created": '}
