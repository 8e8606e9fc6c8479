"""`backfill validate` and `backfill preview`: the offline half, on the sample data.

The sample (sample_data/README.md) has 3,000 orders: 296 filtered out (not paid), 72 paid
rows with one deliberately bad value each, and 2,632 that map.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import CliResult, make_pubkey

from backfill.books.report import REPORT_FIELDS, read_report
from backfill.cli import cli as cli_group
from backfill.errors import MappingError
from backfill.look.validate import preview, validate

SAMPLE_COLUMNS = [
    "order_id",
    "created_at",
    "wallet",
    "sku",
    "Product Name",
    "quantity",
    "total",
    "tier",
    "status",
    "Country/Region",
    "coupon",
]
PUBKEY = "user.pubKey (column 'wallet') is not a Solana public key"
MISSING = "is missing (add default: or optional: true to the field to allow that)"
BAD_ROWS = {  # reason -> order ids (sample_data/README.md, "Deliberately bad rows")
    PUBKEY: "000064 000202 000248 000283 000445 000571 000580 000622 000924 001204 001569 002224 "
    "002477 002652 000353 000632 000649 000700 000845 000891 001206 001438 002060 002382",
    "user.pubKey (column 'wallet') is missing": "000221 000695 000824 001035 001666 002093 "
    "002114 002885",
    "timestamp (column 'created_at') is not a timestamp (expected ISO-8601 or epoch digits)": (
        "000018 000039 000242 000512 000611 000861 000901 001173 001608 002307 002333 002824"
    ),
    "event_data.orderAmount (column 'total') is not a number": "000045 000184 001067 001594 "
    "001745 002373 002412 002706 002804 002841 002845 002925",
    "event_data.isPremiumUser (column 'tier') is not a boolean (expected one of premium, gold, "
    "basic)": "000070 000137 001621 001773 001963 002547 002604 002668 002867",
    f"event_data.quantity (column 'quantity') {MISSING}": "000411 000979 001061 001413 001533 "
    "001573 002639",
}
EXPECTED_REASONS = {reason: len(ids.split()) for reason, ids in BAD_ROWS.items()}
EXPECTED_ROWS = {int(i) - 1: reason for reason, ids in BAD_ROWS.items() for i in ids.split()}


def sample(kind: str) -> Path:
    return Path(__file__).resolve().parent.parent / "sample_data" / f"orders.{kind}"


@pytest.mark.parametrize(("kind", "report_name"), [("parquet", "x.jsonl"), ("csv", "x.csv")])
def test_validate_counts_the_sample_and_writes_the_report_run_would(
    cli: Callable[..., CliResult],
    sample_mapping: Path,
    tmp_path: Path,
    kind: str,
    report_name: str,
) -> None:
    report = tmp_path / report_name
    report.write_text("stale content from an earlier run\n")
    result = cli(
        "validate", sample(kind), "--mapping", sample_mapping, "--json", "--report", report
    )
    assert result.code == 1, result.stderr
    assert result.stderr == ""
    summary = result.json()
    assert {k: summary[k] for k in ("read", "would_send", "filtered", "failing")} == {
        "read": 3000,
        "would_send": 2632,
        "filtered": 296,
        "failing": 72,
    }
    assert {r["reason"]: r["count"] for r in summary["reasons"]} == EXPECTED_REASONS
    assert [r["count"] for r in summary["reasons"]] == sorted(
        EXPECTED_REASONS.values(), reverse=True
    )
    assert summary["report"] == str(report)
    assert summary["source"] == str(sample(kind))

    failures = list(read_report(report))
    assert {f.row: f.reason for f in failures} == EXPECTED_ROWS
    assert {(f.stage, f.event, f.status, f.attempts, f.source) for f in failures} == {
        ("mapping", None, None, 0, str(sample(kind)))
    }
    mapped = [column for column in SAMPLE_COLUMNS if column != "Product Name"]
    assert all(list(f.record) == mapped for f in failures)  # the columns the mapping reads
    assert all(f.record["order_id"] == f"ORD-{f.row + 1:06d}" for f in failures)
    by_row = {f.row: f for f in failures}
    assert by_row[44].record["total"] == "14,95"  # ORD-000045: the original text, not a number
    assert by_row[44].error.endswith(": found '14,95'")
    assert by_row[410].record["quantity"] in (None, "")  # ORD-000411: the empty quantity
    quantity_missing = f"event_data.quantity (column 'quantity') {MISSING}"
    quantities = {type(f.record["quantity"]) for f in failures if f.reason != quantity_missing}
    assert quantities == ({int} if kind == "parquet" else {str})
    text = report.read_text(encoding="utf-8")
    assert "stale content" not in text
    if report_name.endswith(".csv"):
        assert text.startswith(",".join(REPORT_FIELDS) + "\n")
    else:
        assert [list(json.loads(line)) for line in text.splitlines()] == [list(REPORT_FIELDS)] * 72


def test_validate_prints_counts_and_grouped_reasons(
    cli: Callable[..., CliResult], sample_parquet: Path, sample_mapping: Path
) -> None:
    result = cli("validate", sample_parquet, "--mapping", sample_mapping)
    assert result.code == 1
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        f"{sample_parquet}: read 3,000 rows",
        "  would send  2,632",
        "  filtered    296",
        "  failing     72",
    ]
    assert f"  24 × {PUBKEY}" in lines
    examples = lines[lines.index(f"  24 × {PUBKEY}") + 1]
    assert examples.startswith("      e.g. rows 63, 201, 247, 282, 352: ")
    assert "Failure report" not in result.stdout


def test_validate_exits_0_when_every_row_maps_and_takes_a_delimiter(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    source = tmp_path / "orders.csv"
    source.write_text(
        "Order Date;Country/Region;total\n"
        "2024-03-05 14:22:31;Korea, Republic of;14,95\n"
        "2024-03-31 02:30:00;France;7\n",
        encoding="utf-8",
    )
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "event_name: E\n"
        "timestamp: {column: Order Date, timezone: Europe/Berlin}\n"
        "user: {pubKey: Country/Region}\n"
        "event_data: {amount: total}\n",
        encoding="utf-8",
    )
    # The wallet column holds no keys: both rows fail, and the second is in Berlin's DST gap.
    result = cli("validate", source, "--mapping", mapping, "--delimiter", ";", "--json")
    assert result.code == 1
    reasons = {r["reason"]: r["example_rows"] for r in result.json()["reasons"]}
    assert reasons == {
        "user.pubKey (column 'Country/Region') is not a Solana public key": [0],
        "timestamp (column 'Order Date') does not exist in time zone Europe/Berlin (clocks "
        "skipped it); user.pubKey (column 'Country/Region') is not a Solana public key": [1],
    }
    source.write_text(
        f"Order Date;Country/Region;total\n2024-03-05 14:22:31;{make_pubkey(7)};14,95\n",
        encoding="utf-8",
    )
    result = cli("validate", source, "--mapping", mapping, "--delimiter", ";", "--json")
    assert (result.code, result.stderr) == (0, "")
    assert result.json()["would_send"] == 1


def test_preview_shows_row_numbers_and_pretty_json(
    cli: Callable[..., CliResult], sample_csv: Path, sample_mapping: Path
) -> None:
    result = cli("preview", sample_csv, "--mapping", sample_mapping, "-n", "3")
    assert (result.code, result.stderr) == (0, "")
    parts = re.split(r"^row (\d+):\n", result.stdout, flags=re.MULTILINE)
    assert parts[0] == ""
    rows = [int(number) for number in parts[1::2]]
    events = [json.loads(block) for block in parts[2::2]]
    assert rows == [0, 1, 2]
    assert '\n  "timestamp": 1704088824353,\n' in parts[2]  # indented two spaces
    assert events[0] == {
        "timestamp": 1704088824353,  # 2024-01-01T06:00:24.353Z
        "user": {"pubKey": "3ooVv5ebAEi4UpQ26BPVXxyUv6GPnCB1VfSiNZKkR2Jd"},
        "event_name": "STORE_ORDER",
        "event_data": {
            "orderId": "ORD-000001",
            "itemId": "00808",
            "orderAmount": 12.5,
            "quantity": 1,
            "isPremiumUser": True,
            "country": "Nigeria",
            "channel": "backfill",
        },
    }
    assert [event["event_data"]["orderId"] for event in events] == [
        "ORD-000001",
        "ORD-000002",
        "ORD-000003",
    ]


def test_preview_shows_failing_rows_on_the_way(sample_csv: Path, sample_mapping: Path) -> None:
    result = preview(sample_csv, sample_mapping, 20)
    assert len(result.events) == 20
    assert [f.row for f in result.failures] == [17]  # ORD-000018: "yesterday" or the like
    assert [item.row for item in result.rows] == sorted(item.row for item in result.rows)
    assert result.filtered > 0
    frame = result.frame()
    assert frame.loc[frame["row"] == 17, "→ error"].iloc[0].startswith("timestamp (column")
    assert frame.loc[frame["row"] == 0, "→ orderId"].iloc[0] == "ORD-000001"

    printed = CliRunner().invoke(
        cli_group, ["preview", str(sample_csv), "--mapping", str(sample_mapping), "-n", "20"]
    )
    assert printed.exit_code == 0
    assert "\nrow 17: FAILS: timestamp (column 'created_at') is not a timestamp" in printed.stdout


def test_validate_streams_in_chunks_with_the_same_counts_and_progress(
    sample_parquet: Path, sample_csv: Path, sample_mapping: Path
) -> None:
    for source in (sample_parquet, sample_csv):
        progress: list[int] = []
        result = validate(source, sample_mapping, chunk_rows=700, on_progress=progress.append)
        assert (result.read, result.mappable, result.filtered, result.failing) == (
            3000,
            2632,
            296,
            72,
        )
        assert progress == sorted(progress) and progress[-1] == 3000 and len(progress) >= 5
        assert {reason: r.count for reason, r in result.reasons.items()} == EXPECTED_REASONS
        assert result.reasons_frame()["count"].sum() == 72


def test_validate_stops_at_a_filter_that_does_not_fit_the_column_types(
    tmp_path: Path, sample_csv: Path
) -> None:
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "event_name: E\ntimestamp: created_at\nuser: {pubKey: wallet}\n"
        "event_data: {q: quantity}\nfilter: quantity > 2\n",
        encoding="utf-8",
    )
    with pytest.raises(
        MappingError, match=r"filter: `quantity > 2` compares column 'quantity' \(text in "
    ):
        validate(sample_csv, mapping)


# --- source errors -------------------------------------------------------------------------


def test_a_missing_source_exits_2_with_one_line(
    cli: Callable[..., CliResult], tmp_path: Path, sample_mapping: Path
) -> None:
    result = cli("validate", tmp_path / "nope.csv", "--mapping", sample_mapping)
    assert result.code == 2
    assert result.stderr == f"Error: {tmp_path / 'nope.csv'}: no such file or directory.\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "orders.xls",
            "x",
            "{path}: cannot tell the format from the name 'orders.xls'; expected .csv, "
            ".csv.gz, .parquet, .xlsx, .jsonl, .ndjson (.gz), .tsv, .tab, a tab-separated .txt, "
            "a directory or glob of them, or an s3:// URL.",
        ),
        (
            "orders.xlsx",
            "x",
            "{path}: not a readable .xlsx workbook (an .xlsx file is a zip archive; this one is "
            "not: open it in Excel and save it as .xlsx).",
        ),
        ("orders.csv", "", "{path}: the file is empty; expected a header line of column names."),
    ],
)
def test_an_unreadable_source_exits_2_with_one_line(
    tmp_path: Path, sample_mapping: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    for command in ("validate", "preview"):
        result = CliRunner().invoke(
            cli_group, [command, str(path), "--mapping", str(sample_mapping)]
        )
        assert result.exit_code == 2
        assert result.stderr == "Error: " + message.format(path=path) + "\n"


def test_validate_json_is_one_object(sample_parquet: Path, sample_mapping: Path) -> None:
    result = CliRunner().invoke(
        cli_group, ["validate", str(sample_parquet), "-m", str(sample_mapping), "--json"]
    )
    assert result.exit_code == 1
    data: dict[str, Any] = json.loads(result.stdout)
    assert list(data) == [
        "source",
        "mapping",
        "read",
        "would_send",
        "filtered",
        "failing",
        "reasons",
        "report",
    ]
    assert data["report"] is None
    assert Counter(r["count"] for r in data["reasons"]) == Counter(EXPECTED_REASONS.values())
