"""The failure report: written line by line, private to its owner, free of secrets, and
read back (JSONL or CSV) into the same failures, even after a crash tore its last line."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from backfill.books.report import (
    REPORT_FIELDS,
    ReportWriter,
    read_report,
    report_name,
    source_last_part,
)
from backfill.errors import ReportError
from backfill.mapping.events import RowFailure

SECRET = "test-key-Zq8sXw3LmN0pRt7vY"
FAILURES = [
    RowFailure(
        row=17,
        source="orders.csv",
        stage="mapping",
        reason="timestamp (column 'created_at') is not a timestamp",
        error="timestamp (column 'created_at') is not a timestamp: found '31/02/2024'",
        record={
            "sku": "00123",
            "quantity": 3,
            "total": 49.9,
            "premium": True,
            "coupon": None,
            "created_at": "31/02/2024",
            "Product Name": 'Gift Card\n"$100", ◎',
        },
    ),
    RowFailure(
        row=None,
        source="orders.csv",
        stage="read",
        reason="CSV line skipped: expected 3 columns, found 4",
        error="CSV line skipped: expected 3 columns, found 4: '1,2,3,4'",
        record={"_line": "1,2,3,4"},
    ),
    RowFailure(
        row=5,
        source="orders.parquet",
        stage="send",
        reason="http 400",
        error="http 400: Event not found for this API key",
        record={
            "when": dt.datetime(2024, 3, 5, 14, 22, 31, 123456, tzinfo=dt.timezone.utc),
            "day": dt.date(2024, 3, 5),
            "price": Decimal("49.90"),
            "big": 2**63 - 1,
        },
        event={
            "timestamp": 1709648551123,
            "user": {"pubKey": "11111111111111111111111111111111"},
            "event_name": "STORE_ORDER",
            "event_data": {"orderAmount": 100, "itemId": "00123", "isPremiumUser": False},
        },
        status=400,
        attempts=3,
    ),
]


@pytest.fixture
def private_umask() -> Iterator[None]:
    """A umask that removes nothing, so the file mode is the writer's own choice."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def write_report(path: Path, failures: list[RowFailure], secrets: tuple[str, ...] = ()) -> None:
    with ReportWriter(path, secrets=secrets) as writer:
        for failure in failures:
            writer.write(failure)
        assert writer.written == len(failures)


@pytest.mark.parametrize("name", ["failures.jsonl", "failures.csv"])
def test_a_report_reads_back_into_the_same_failures(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_report(path, FAILURES)
    back = list(read_report(path))
    assert back == FAILURES
    assert type(back[0].record["quantity"]) is int
    assert type(back[2].record["when"]) is dt.datetime


@pytest.mark.parametrize("name", ["failures.jsonl", "failures.csv"])
def test_nanosecond_timestamps_in_a_record_keep_every_digit(tmp_path: Path, name: str) -> None:
    stamps = {
        "aware": pd.Timestamp("2024-03-05T14:22:31.123456789", tz="UTC"),
        "naive": pd.Timestamp("2024-03-05T14:22:31.000000001"),
        "micro": dt.datetime(2024, 3, 5, 14, 22, 31, 5),
    }
    failure = RowFailure(1, "orders.parquet", "mapping", "r", "e", record=stamps)
    write_report(tmp_path / name, [failure])
    [back] = read_report(tmp_path / name)
    assert back.record == stamps
    assert back.record["aware"].nanosecond == 789
    assert type(back.record["micro"]) is dt.datetime


def test_a_jsonl_report_is_one_object_a_line_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    write_report(path, FAILURES)
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    objects = [json.loads(line) for line in lines[:-1]]
    assert [list(o) for o in objects] == [list(REPORT_FIELDS)] * 3
    assert objects[0]["record"]["sku"] == "00123"
    assert objects[1]["row"] is None
    assert objects[2]["record"]["when"] == {"$datetime": "2024-03-05T14:22:31.123456+00:00"}
    assert objects[2]["event"]["event_data"]["orderAmount"] == 100


def test_a_csv_report_has_a_header_and_json_cells(tmp_path: Path) -> None:
    path = tmp_path / "failures.csv"
    write_report(path, FAILURES[:1])
    write_report(path, FAILURES[1:])  # appending does not repeat the header
    text = path.read_text(encoding="utf-8")
    assert text.startswith(",".join(REPORT_FIELDS) + "\n")
    assert text.count("row,source,stage") == 1
    assert list(read_report(path)) == FAILURES


@pytest.mark.parametrize("name", ["failures.jsonl", "failures.csv"])
def test_a_report_is_readable_by_its_owner_only(
    tmp_path: Path, name: str, private_umask: None
) -> None:
    path = tmp_path / name
    write_report(path, FAILURES)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["failures.jsonl", "failures.csv"])
def test_secrets_never_reach_the_report(tmp_path: Path, name: str) -> None:
    leaky = RowFailure(
        row=1,
        source="orders.csv",
        stage="send",
        reason="http 401",
        error=f"http 401: invalid key {SECRET}",
        record={"note": f"pasted {SECRET} here"},
        event={"event_data": {"comment": SECRET}},
        status=401,
    )
    path = tmp_path / name
    write_report(path, [leaky], secrets=(SECRET, ""))
    text = path.read_text(encoding="utf-8")
    assert SECRET not in text
    assert text.count("[redacted]") == 3
    [back] = read_report(path)
    assert back.error == "http 401: invalid key [redacted]"
    assert back.record == {"note": "pasted [redacted] here"}


def test_a_torn_last_line_is_an_error_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    write_report(path, FAILURES)
    whole = path.read_bytes()
    path.write_bytes(whole + whole.split(b"\n")[0][:40])  # a crash in the middle of a line
    with pytest.raises(ReportError) as caught:
        list(read_report(path))
    assert str(caught.value).startswith(f"{path}, line 4: not JSON (")
    assert list(read_report(path, allow_torn_tail=True)) == FAILURES


def test_only_the_last_line_may_be_torn(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    good = path.with_name("good.jsonl")
    write_report(good, FAILURES)
    first, *rest = good.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(first[:30] + "\n" + "".join(rest), encoding="utf-8")
    with pytest.raises(ReportError, match=r"line 1: not JSON"):
        list(read_report(path, allow_torn_tail=True))


def test_a_complete_report_loses_nothing_when_torn_tails_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    write_report(path, FAILURES)
    assert list(read_report(path, allow_torn_tail=True)) == FAILURES


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"row": 1}\n', "line 1: expected an object with row, record and event; found dict."),
        ("[1, 2]\n", "line 1: expected an object with row, record and event; found list."),
        ("\n", "line 1: empty line; expected one JSON object."),
    ],
)
def test_a_jsonl_file_that_is_not_a_report_fails(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "failures.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ReportError) as caught:
        list(read_report(path))
    assert str(caught.value) == f"{path}, {message}"


def test_a_csv_file_that_is_not_a_report_fails(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("row,source\n1,x\n", encoding="utf-8")
    with pytest.raises(ReportError) as caught:
        list(read_report(path))
    assert str(caught.value) == (
        f"{path}: not a backfill report; the columns ['attempts', 'error', 'event', 'reason', "
        "'record', 'stage', 'status'] are missing."
    )


def test_a_missing_report_fails(tmp_path: Path) -> None:
    with pytest.raises(ReportError) as caught:
        list(read_report(tmp_path / "nope.jsonl"))
    assert str(caught.value) == f"{tmp_path / 'nope.jsonl'}: no such report file."


# --- names, exact lines, CSV cells ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("Sample - Superstore.xlsx", "Sample - Superstore.xlsx"),
        ("data/2024/orders.csv", "orders.csv"),
        ("C:\\exports\\orders.csv", "orders.csv"),
        ("data/orders-*.csv", "orders"),
        ("data/orders_2024?.csv", "orders_2024"),
        ("exports/*.csv", "exports"),
        ("*.csv", "source"),
        ("exports/", "exports"),
        ("exports/.", "exports"),
        ("s3://bucket/exports/", "exports"),
        (".", "source"),
        ("or<ders>.csv", "or_ders_.csv"),
        ("orders. ", "orders"),
        ("exports/INBOX/", "INBOX"),
        ("data/INBOX-*.csv", "INBOX"),
        ("exports//.", "exports"),
        ("data/...", "source"),
        ("data/..", "source"),  # the folder above: no name to give it
    ],
)
def test_the_default_report_is_named_after_the_source_as_its_user_knows_it(
    source: str, name: str
) -> None:
    assert report_name(source) == f"{name}.failures.jsonl"
    assert report_name(source, ".sandbox") == f"{name}.sandbox.failures.jsonl"


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("orders.csv", "orders.csv"),
        ("Sample - Superstore.xlsx", "Sample - Superstore.xlsx"),
        ("data/2024/orders-*.csv", "orders-*.csv"),
        ("C:\\exports\\orders.csv", "orders.csv"),
        ("exports/", "exports"),
        ("exports/INBOX/", "INBOX"),
        ("/", "source"),
    ],
)
def test_a_source_is_shown_by_its_last_part(source: str, shown: str) -> None:
    assert source_last_part(source) == shown


def test_a_jsonl_line_is_compact_json_with_text_as_written(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    record = {"name": "café", "total": 49.9, "at": dt.time(9, 30), "took": dt.timedelta(1)}
    failure = RowFailure(3, "orders.csv", "mapping", "bad", "bad: x", record=record)
    write_report(path, [failure])
    assert path.read_text(encoding="utf-8") == (
        '{"row":3,"source":"orders.csv","stage":"mapping","reason":"bad","error":"bad: x",'
        '"status":null,"attempts":0,"record":{"name":"café","total":49.9,'
        '"at":{"$time":"09:30:00"},"took":"1 day, 0:00:00"},"event":null}\n'
    )
    [back] = read_report(path)
    assert back.record == {**record, "took": "1 day, 0:00:00"}  # a duration reads as text


def test_a_csv_report_ends_its_lines_with_a_newline_only(tmp_path: Path) -> None:
    path = tmp_path / "failures.csv"
    write_report(path, FAILURES[:2])
    assert b"\r\n" not in path.read_bytes()


def test_a_secret_as_short_as_the_shortest_key_is_still_redacted(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    leaky = RowFailure(1, "orders.csv", "send", "http 401", "key abcd1234 refused", record={})
    write_report(path, [leaky], secrets=("abcd1234", "abc1234"))
    assert [f.error for f in read_report(path)] == ["key [redacted] refused"]


def test_empty_csv_cells_read_as_no_value(tmp_path: Path) -> None:
    path = tmp_path / "failures.csv"
    path.write_text(",".join(REPORT_FIELDS) + "\n,orders.csv,read,r,e,,,,\n", encoding="utf-8")
    [failure] = read_report(path)
    assert (failure.row, failure.status, failure.attempts) == (None, None, 0)
    assert failure.record == {} and failure.event is None


def test_an_unreadable_csv_cell_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "failures.csv"
    good = "1,orders.csv,read,r,e,,0,{},null"
    path.write_text(
        ",".join(REPORT_FIELDS) + f"\n{good}\n{good}\nx,orders.csv,read,r,e,,0,{{}},null\n",
        encoding="utf-8",
    )
    with pytest.raises(ReportError) as refused:
        list(read_report(path))
    assert str(refused.value) == (
        f"{path}, line 4: unreadable cell (invalid literal for int() with base 10: 'x')."
    )


def test_a_report_line_from_an_older_backfill_reads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    path.write_text('{"row":1,"record":{},"error":"bad: x"}\n{"row":2,"record":{}}\n')
    first, second = read_report(path)
    assert (first.source, first.stage, first.reason, first.error) == (
        "",
        "mapping",
        "bad: x",
        "bad: x",
    )
    assert (second.source, second.stage, second.reason, second.error) == ("", "mapping", "", "")


def test_a_broken_line_before_the_last_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    path.write_text('{"row":1,"record":{}}\n{"row":\n{"row":3,"record":{}}\n')
    with pytest.raises(ReportError) as refused:
        list(read_report(path, allow_torn_tail=True))
    assert str(refused.value).startswith(f"{path}, line 2: not JSON (")
