"""A chunk of rows in, events and row failures out: what would be sent for each row, and
why a row is in the failure report when it cannot be sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import examples, make_pubkey
from hypothesis import given, settings
from hypothesis import strategies as st

from backfill.errors import MappingError
from backfill.mapping.envelopes import APIS
from backfill.mapping.events import EventMapper, MappedChunk, RowFailure
from backfill.mapping.pubkey import b58encode
from backfill.mapping.spec import Mapping, mapping_from_dict
from backfill.mapping.times import OUT_OF_RANGE
from backfill.read.source import numbered, read_source

NOW_MS = 1_900_000_000_000
KEY = make_pubkey(1)
OTHER_KEY = make_pubkey(2)
KEY_OF_33_BYTES = b58encode(b"\x01" * 33)
STAMP = "1731596206795"
MISSING = "is missing (add default: or optional: true to the field to allow that)"


def mapping(event_data: dict[str, Any], **top: Any) -> Mapping:
    data = {
        "event_name": "STORE_ORDER",
        "timestamp": top.pop("timestamp", "created_at"),
        "user": {"pubKey": "wallet"},
        "event_data": event_data,
        **top,
    }
    return mapping_from_dict(data, origin="map.yaml")


def map_table(the_mapping: Mapping, columns: dict[str, Any]) -> MappedChunk:
    table = pa.table(columns)
    the_mapping.check_columns(table.column_names, "orders.csv")
    mapper = EventMapper(the_mapping, "orders.csv", now_ms=NOW_MS)
    return mapper.map_chunk(numbered(0, table))


def map_file(path: Path, the_mapping: Mapping, chunk_rows: int = 1000) -> list[MappedChunk]:
    source = read_source(path)
    the_mapping.check_columns(source.columns, source.name)
    mapper = EventMapper(the_mapping, source.name, now_ms=NOW_MS)
    return [mapper.map_chunk(chunk) for chunk in source.chunks(chunk_rows)]


def bodies(chunk: MappedChunk) -> dict[int, dict[str, Any]]:
    return {row: event.as_dict() for row, event in chunk.events()}


def rows(**columns: list[Any]) -> dict[str, Any]:
    """Columns for a table, with a valid timestamp and wallet unless given."""
    count = len(next(iter(columns.values())))
    return {"created_at": [STAMP] * count, "wallet": [KEY] * count, **columns}


# --- events --------------------------------------------------------------------------------


def test_a_csv_row_becomes_the_documented_event_body(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "created_at,wallet,sku,total,tier,quantity\n"
        f"2024-11-14T14:56:46.795Z,{KEY},00123,100,premium,2\n"
        f"{STAMP},{KEY},item_123,49.90,basic,1\n",
        encoding="utf-8",
    )
    the_mapping = mapping(
        {
            "itemId": "sku",
            "orderAmount": {"column": "total", "type": "number"},
            "isPremiumUser": {
                "column": "tier",
                "type": "boolean",
                "true": ["premium"],
                "false": ["basic"],
            },
            "quantity": {"column": "quantity", "type": "number"},
            "channel": {"value": "backfill"},
        }
    )
    [chunk] = map_file(path, the_mapping)
    assert chunk.failures == []
    events = bodies(chunk)
    assert json.dumps(events[0]) == (
        '{"timestamp": 1731596206795, "user": {"pubKey": "' + KEY + '"}, '
        '"event_name": "STORE_ORDER", "event_data": {"itemId": "00123", "orderAmount": 100, '
        '"isPremiumUser": true, "quantity": 2, "channel": "backfill"}}'
    )
    assert events[1]["event_data"] == {
        "itemId": "item_123",
        "orderAmount": 49.9,
        "isPremiumUser": False,
        "quantity": 1,
        "channel": "backfill",
    }
    assert events[1]["timestamp"] == 1731596206795


def test_leading_zeros_stay_text_for_string_and_short_form_fields(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(f"created_at,wallet,sku\n{STAMP},{KEY},00123\n", encoding="utf-8")
    the_mapping = mapping({"short": "sku", "typed": {"column": "sku", "type": "string"}})
    [chunk] = map_file(path, the_mapping)
    assert bodies(chunk)[0]["event_data"] == {"short": "00123", "typed": "00123"}


def test_parquet_columns_give_short_form_fields_their_own_type() -> None:
    chunk = map_table(
        mapping({"quantity": "quantity", "total": "total", "premium": "premium", "sku": "sku"}),
        rows(
            quantity=pa.array([100], pa.int64()),
            total=pa.array([49.9], pa.float64()),
            premium=pa.array([True]),
            sku=pa.array(["00123"]),
        ),
    )
    data = bodies(chunk)[0]["event_data"]
    assert json.dumps(data) == '{"quantity": 100, "total": 49.9, "premium": true, "sku": "00123"}'


def test_parquet_columns_can_be_sent_as_another_type() -> None:
    chunk = map_table(
        mapping(
            {
                "quantity": {"column": "quantity", "type": "string"},
                "premium": {"column": "premium", "type": "string"},
                "count": {"column": "count_text", "type": "number"},
            }
        ),
        rows(
            quantity=pa.array([100], pa.int64()),
            premium=pa.array([True]),
            count_text=pa.array(["7"]),
        ),
    )
    assert bodies(chunk)[0]["event_data"] == {"quantity": "100", "premium": "true", "count": 7}


def test_timestamp_and_datetime_columns_map_exactly() -> None:
    table = rows(
        created_at=pa.array([1_731_596_206_795_999], pa.timestamp("us", "America/New_York"))
    )
    chunk = map_table(mapping({"c": {"value": 1}}), table)
    assert bodies(chunk)[0]["timestamp"] == 1_731_596_206_795


def test_constants_are_the_same_for_every_row() -> None:
    chunk = map_table(
        mapping({"channel": {"value": "web"}, "rate": {"value": 2.5}, "vip": {"value": True}}),
        rows(created_at=[STAMP, STAMP]),
    )
    assert [event["event_data"] for event in bodies(chunk).values()] == [
        {"channel": "web", "rate": 2.5, "vip": True}
    ] * 2


# --- request bodies ------------------------------------------------------------------------

text_values = st.one_of(st.none(), st.text(max_size=12))
number_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=examples(150), deadline=None)
@given(
    table_rows=st.lists(
        st.tuples(text_values, number_values, st.sampled_from(["premium", "basic", "", "Gold"])),
        min_size=1,
        max_size=6,
    ),
    api_name=st.sampled_from(sorted(APIS)),
)
def test_bodies_written_column_by_column_equal_json_dumps_of_each_event(
    table_rows: list[tuple[str | None, int | float | None, str]], api_name: str
) -> None:
    # Every kind of value and omission, in every envelope: unicode, quotes and control
    # characters, big integers, float reprs, booleans, optional and default fields, constants.
    texts, numbers, tiers = (list(column) for column in zip(*table_rows))
    number_column = pa.array(
        [None if n is None else float(n) for n in numbers]
        if any(isinstance(n, float) for n in numbers)
        else numbers,
        pa.float64() if any(isinstance(n, float) for n in numbers) else pa.int64(),
    )
    the_mapping = mapping(
        {
            "note": {"column": "note", "type": "string", "optional": True},
            "amount": {"column": "amount", "type": "number", "default": 0},
            "amountText": {"column": "amount_text", "type": "number", "optional": True},
            "premium": {
                "column": "tier",
                "type": "boolean",
                "true": ["premium", "gold"],
                "false": ["basic"],
                "optional": True,
            },
            "channel": {"value": 'web \u00e9"\\'},
            "weight": {"value": 2.5},
        }
    )
    chunk = map_table(
        the_mapping,
        rows(
            note=pa.array(texts, pa.string()),
            amount=number_column,
            amount_text=[None if n is None else repr(n) for n in numbers],
            tier=tiers,
        ),
    )
    api = APIS[api_name]
    written = dict(chunk.bodies(api))
    assert chunk._encode is not None  # the columnar path, not the fallback
    assert written == {row: api.encode(event) for row, event in chunk.events()}
    assert len(written) == len(chunk.event_rows)


# --- timestamps from files ----------------------------------------------------------------

INSTANT = 1_731_596_206_795  # 2024-11-14T14:56:46.795Z
EPOCHS = {  # unit -> the instant in that unit, with digits below the millisecond
    "s": (1_731_596_206, 1_731_596_206_000),
    "ms": (1_731_596_206_795, INSTANT),
    "us": (1_731_596_206_795_999, INSTANT),
    "ns": (1_731_596_206_795_999_999, INSTANT),
}
FILE_TIMESTAMPS = [  # (values written to the file, timestamp mapping, expected ms)
    *[
        pytest.param(
            pa.array([raw], pa.int64()),
            {"column": "created_at", "unit": unit},
            ms,
            id=f"int-{unit}",
        )
        for unit, (raw, ms) in EPOCHS.items()
    ],
    *[
        pytest.param(pa.array([raw], pa.int64()), "created_at", ms, id=f"int-auto-{unit}")
        for unit, (raw, ms) in EPOCHS.items()
    ],
    *[
        pytest.param([str(raw)], {"column": "created_at", "unit": unit}, ms, id=f"text-{unit}")
        for unit, (raw, ms) in EPOCHS.items()
    ],
    *[
        pytest.param([str(raw)], "created_at", ms, id=f"text-auto-{unit}")
        for unit, (raw, ms) in EPOCHS.items()
    ],
    pytest.param(["1731596206.795"], "created_at", INSTANT, id="decimal-seconds"),
    pytest.param(["2024-11-14T14:56:46.795Z"], "created_at", INSTANT, id="iso-z"),
    pytest.param(["2024-11-14T09:56:46.795999-05:00"], "created_at", INSTANT, id="iso-offset"),
    pytest.param(
        ["2024-11-14 15:56:46.795"],
        {"column": "created_at", "timezone": "Europe/Berlin"},
        INSTANT,
        id="naive-berlin-winter",
    ),
    pytest.param(
        ["2024-07-01 12:00:00"],
        {"column": "created_at", "timezone": "Europe/Berlin"},
        1_719_828_000_000,
        id="naive-berlin-summer",
    ),
    *[
        pytest.param(
            pa.array([raw], pa.timestamp(unit, tz)), "created_at", ms, id=f"timestamp-{unit}-{tz}"
        )
        for unit, (raw, ms) in EPOCHS.items()
        for tz in (None, "UTC", "America/New_York")
    ],
    pytest.param(
        pa.array([EPOCHS["us"][0] + 3_600_000_000], pa.timestamp("us")),
        {"column": "created_at", "timezone": "Europe/Berlin"},
        INSTANT,
        id="naive-timestamp-berlin",
    ),
    pytest.param(pa.array([20_041], pa.date32()), "created_at", 1_731_542_400_000, id="date32"),
]


def write_orders(tmp_path: Path, kind: str, created_at: Any) -> Path:
    """A one-row orders file (CSV: the values as text) with a valid wallet."""
    if kind == "csv":
        texts = created_at.to_pylist() if isinstance(created_at, pa.Array) else created_at
        path = tmp_path / "orders.csv"
        path.write_text(f"created_at,wallet\n{texts[0]},{KEY}\n", encoding="utf-8")
        return path
    path = tmp_path / "orders.parquet"
    pq.write_table(pa.table({"created_at": created_at, "wallet": [KEY]}), path)
    return path


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize(("values", "timestamp", "expected"), FILE_TIMESTAMPS)
def test_timestamps_from_csv_and_parquet_files_are_exact_milliseconds(
    tmp_path: Path, kind: str, values: Any, timestamp: Any, expected: int
) -> None:
    if kind == "csv" and isinstance(values, pa.Array) and not pa.types.is_integer(values.type):
        values = [value.isoformat() for value in values.to_pylist()]  # as a CSV would hold it
    path = write_orders(tmp_path, kind, values)
    [chunk] = map_file(path, mapping({"c": {"value": 1}}, timestamp=timestamp))
    assert chunk.failures == []
    assert bodies(chunk)[0]["timestamp"] == expected


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_local_time_the_clocks_skipped_fails_its_row(tmp_path: Path, kind: str) -> None:
    values = (
        pa.array(["2024-03-31 02:30:00"])
        if kind == "csv"
        else pa.array([1_711_852_200_000_000], pa.timestamp("us"))
    )
    path = write_orders(tmp_path, kind, values)
    timestamp = {"column": "created_at", "timezone": "Europe/Berlin"}
    [chunk] = map_file(path, mapping({"c": {"value": 1}}, timestamp=timestamp))
    assert [(f.row, f.reason) for f in chunk.failures] == [
        (0, f"{TIMESTAMP} does not exist in time zone Europe/Berlin (clocks skipped it)")
    ]


# --- row failures --------------------------------------------------------------------------

FIELD = "event_data.amount (column 'total')"
PUBKEY = "user.pubKey (column 'wallet')"
TIMESTAMP = "timestamp (column 'created_at')"


@pytest.mark.parametrize(
    ("column", "bad", "reason", "error"),
    [
        ("total", "", f"{FIELD} {MISSING}", f"{FIELD} {MISSING}: found ''"),
        ("total", None, f"{FIELD} {MISSING}", f"{FIELD} {MISSING}: found None"),
        ("total", "N/A", f"{FIELD} is not a number", f"{FIELD} is not a number: found 'N/A'"),
        ("total", "14,95", f"{FIELD} is not a number", f"{FIELD} is not a number: found '14,95'"),
        (
            "total",
            "NaN",
            f"{FIELD} is not a number",
            f"{FIELD} is not a number: found 'NaN'",
        ),
        (
            "total",
            "9007199254740993",
            f"{FIELD} is an integer beyond 2^53, which Torque cannot hold exactly; "
            "map it as a string",
            f"{FIELD} is an integer beyond 2^53, which Torque cannot hold exactly; "
            "map it as a string: found '9007199254740993'",
        ),
        (
            "tier",
            "platinum",
            "event_data.premium (column 'tier') is not a boolean (expected one of premium, "
            "gold, basic)",
            "event_data.premium (column 'tier') is not a boolean (expected one of premium, "
            "gold, basic): found 'platinum'",
        ),
        (
            "wallet",
            "0" + KEY[1:],
            f"{PUBKEY} is not a Solana public key",
            f"{PUBKEY} is not a Solana public key: found {'0' + KEY[1:]!r}: "
            "'0' is not in the base58 alphabet (no 0, O, I or l)",
        ),
        (
            "wallet",
            KEY[:20],
            f"{PUBKEY} is not a Solana public key",
            f"{PUBKEY} is not a Solana public key: found {KEY[:20]!r}: "
            "expected 32 to 44 base58 characters, found 20",
        ),
        (
            "wallet",
            KEY_OF_33_BYTES,
            f"{PUBKEY} is not a Solana public key",
            f"{PUBKEY} is not a Solana public key: found {KEY_OF_33_BYTES!r}: "
            "decodes to 33 bytes, expected 32",
        ),
        ("wallet", "", f"{PUBKEY} is missing", f"{PUBKEY} is missing: found ''"),
        (
            "created_at",
            "31/02/2024",
            f"{TIMESTAMP} is not a timestamp (expected ISO-8601 or epoch digits)",
            f"{TIMESTAMP} is not a timestamp (expected ISO-8601 or epoch digits): "
            "found '31/02/2024'",
        ),
        (
            "created_at",
            "1960-01-01T00:00:00Z",
            f"{TIMESTAMP} {OUT_OF_RANGE}",
            f"{TIMESTAMP} {OUT_OF_RANGE}: found '1960-01-01T00:00:00Z'",
        ),
        ("created_at", "", f"{TIMESTAMP} is missing", f"{TIMESTAMP} is missing: found ''"),
    ],
)
def test_each_kind_of_bad_value_fails_its_row_with_a_reason_and_the_record(
    column: str, bad: Any, reason: str, error: str
) -> None:
    the_mapping = mapping(
        {
            "amount": {"column": "total", "type": "number"},
            "premium": {
                "column": "tier",
                "type": "boolean",
                "true": ["premium", "gold"],
                "false": ["basic"],
            },
        }
    )
    good = {"created_at": STAMP, "wallet": KEY, "total": "49.90", "tier": "gold"}
    records = [good, {**good, column: bad}, good]
    chunk = map_table(the_mapping, {name: [r[name] for r in records] for name in good})
    assert chunk.failures == [
        RowFailure(
            row=1,
            source="orders.csv",
            stage="mapping",
            reason=reason,
            error=error,
            record=records[1],
            event=None,
            status=None,
            attempts=0,
        )
    ]
    assert sorted(bodies(chunk)) == [0, 2]
    assert chunk.event_rows.tolist() == [0, 2]
    assert chunk.record(1) == records[1]


def test_every_problem_of_a_row_is_in_its_failure() -> None:
    the_mapping = mapping({"amount": {"column": "total", "type": "number"}})
    chunk = map_table(the_mapping, {"created_at": ["soon"], "wallet": [""], "total": ["x"]})
    [failure] = chunk.failures
    assert failure.reason == "; ".join(
        [
            f"{TIMESTAMP} is not a timestamp (expected ISO-8601 or epoch digits)",
            f"{PUBKEY} is missing",
            f"{FIELD} is not a number",
        ]
    )
    assert failure.error.count("found") == 3


def test_a_boolean_column_mapped_as_number_fails_the_row() -> None:
    the_mapping = mapping({"amount": {"column": "total", "type": "number"}})
    chunk = map_table(the_mapping, rows(total=pa.array([True, None])))
    assert [(f.row, f.reason) for f in chunk.failures] == [
        (0, f"{FIELD} is a boolean, not a number"),
        (1, f"{FIELD} {MISSING}"),
    ]


def test_an_integer_column_beyond_2_53_fails_the_row() -> None:
    the_mapping = mapping({"amount": "total"})
    chunk = map_table(the_mapping, rows(total=pa.array([2**53, 2**53 + 1], pa.int64())))
    assert bodies(chunk)[0]["event_data"] == {"amount": 2**53}
    assert [(f.row, f.record) for f in chunk.failures] == [
        (1, {"created_at": STAMP, "wallet": KEY, "total": 2**53 + 1})
    ]


@pytest.mark.parametrize(
    ("spec", "cells", "expected"),
    [
        ({"column": "total", "type": "number", "default": 0}, ["", "5"], [0, 5]),
        ({"column": "total", "type": "number", "default": 1.5}, [None, "2.5"], [1.5, 2.5]),
        ({"column": "total", "type": "string", "default": "n/a"}, ["", "x"], ["n/a", "x"]),
        ({"column": "total", "type": "boolean", "default": False}, ["", "yes"], [False, True]),
    ],
)
def test_a_default_stands_in_for_a_missing_value(
    spec: dict[str, Any], cells: list[Any], expected: list[Any]
) -> None:
    chunk = map_table(mapping({"amount": spec}), rows(total=cells))
    assert chunk.failures == []
    values = [event["event_data"]["amount"] for event in bodies(chunk).values()]
    assert values == expected
    assert [type(v) for v in values] == [type(v) for v in expected]


def test_a_default_does_not_hide_a_bad_value() -> None:
    spec = {"column": "total", "type": "number", "default": 0}
    chunk = map_table(mapping({"amount": spec}), rows(total=["N/A"]))
    assert [f.reason for f in chunk.failures] == [f"{FIELD} is not a number"]


def test_an_optional_missing_value_is_left_out_of_event_data() -> None:
    the_mapping = mapping(
        {"coupon": {"column": "coupon", "optional": True}, "channel": {"value": "web"}}
    )
    chunk = map_table(the_mapping, rows(coupon=["", None, "GM5"]))
    assert chunk.failures == []
    assert [event["event_data"] for event in bodies(chunk).values()] == [
        {"channel": "web"},
        {"channel": "web"},
        {"coupon": "GM5", "channel": "web"},
    ]


# --- filter --------------------------------------------------------------------------------


def test_rows_the_filter_rejects_are_counted_as_filtered_not_failed() -> None:
    the_mapping = mapping(
        {"amount": {"column": "total", "type": "number"}}, filter="status == 'paid'"
    )
    chunk = map_table(
        the_mapping,
        rows(status=["paid", "refunded", "paid", "pending"], total=["1", "N/A", "N/A", "2"]),
    )
    assert chunk.read == 4
    assert chunk.filtered == 2
    assert chunk.filtered_rows.tolist() == [1, 3]
    assert [f.row for f in chunk.failures] == [2]  # row 1 is bad too, but filtered first
    assert sorted(bodies(chunk)) == [0]


def test_a_filter_can_name_columns_with_spaces_in_backticks() -> None:
    the_mapping = mapping(
        {"c": "Country/Region"},
        filter="`Order Status` == 'paid' and `Country/Region` != 'FR'",
    )
    chunk = map_table(
        the_mapping,
        rows(**{"Order Status": ["paid", "paid", "void"], "Country/Region": ["DE", "FR", "DE"]}),
    )
    assert chunk.filtered_rows.tolist() == [1, 2]
    assert [event["event_data"] for event in bodies(chunk).values()] == [{"c": "DE"}]


def test_a_filter_can_compare_text_columns_as_numbers() -> None:
    the_mapping = mapping({"t": "total"}, filter="number(total) >= 10")
    chunk = map_table(the_mapping, rows(total=["9.99", "10", "120.5"]))
    assert chunk.filtered_rows.tolist() == [0]


def test_a_filter_comparing_a_text_column_with_a_number_is_a_mapping_error() -> None:
    the_mapping = mapping({"t": "total"}, filter="total > 10")
    with pytest.raises(MappingError) as caught:
        map_table(the_mapping, rows(total=["5", "20"]))
    assert str(caught.value) == (
        "map.yaml: filter: `total > 10` compares column 'total' (text in orders.csv) with 10; "
        "to compare it as a number write number(total)."
    )


def test_a_filter_that_is_not_true_or_false_is_a_mapping_error() -> None:
    the_mapping = mapping({"t": "total"}, filter="status")
    with pytest.raises(MappingError) as caught:
        map_table(the_mapping, rows(total=["5", "20"], status=["paid", "void"]))
    assert str(caught.value).startswith(
        "map.yaml: filter: `status` alone is a condition only for a true/false column; "
    )


def test_a_filter_on_a_parquet_column_uses_its_type() -> None:
    the_mapping = mapping({"q": "quantity"}, filter="quantity >= 2 and paid")
    chunk = map_table(
        the_mapping,
        rows(quantity=pa.array([1, 2, 3, None], pa.int64()), paid=[True, True, False, True]),
    )
    assert chunk.filtered_rows.tolist() == [0, 2, 3]
    assert bodies(chunk)[1]["event_data"] == {"q": 2}


# --- read failures -------------------------------------------------------------------------


def test_a_ragged_csv_line_is_a_read_failure_and_the_run_continues(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        f"created_at,wallet,sku\n{STAMP},{KEY},a\n{STAMP},{KEY},b,extra\n{STAMP},{KEY},c\n",
        encoding="utf-8",
    )
    [chunk] = map_file(path, mapping({"sku": "sku"}))
    assert chunk.read == 3
    assert [event["event_data"] for event in bodies(chunk).values()] == [{"sku": "a"}, {"sku": "c"}]
    assert chunk.event_rows.tolist() == [0, 2]  # the rows after a bad line keep their numbers
    line = f"{STAMP},{KEY},b,extra"
    assert chunk.failures == [
        RowFailure(
            row=1,
            source=str(path),
            stage="read",
            reason="CSV line skipped: expected 3 columns, found 4",
            error=f"CSV line skipped: expected 3 columns, found 4: {line!r}",
            record={"_line": line},
        )
    ]


# --- streaming -----------------------------------------------------------------------------

STREAM_ROWS = 1200


def mixed_orders(tmp_path: Path) -> tuple[Path, Path]:
    """The same orders as CSV (several reader blocks) and as Parquet (several row groups):
    good rows, bad values, filtered rows, quoted newlines, and ragged lines in the CSV."""
    header = ["created_at", "wallet", "sku", "total", "status", "note"]
    records: list[list[str]] = []
    for number in range(STREAM_ROWS):
        created = str(1_700_000_000_000 + number * 1_000_003)
        wallet = KEY if number % 3 else OTHER_KEY
        total = f"{number}.{number % 100:02d}"
        if number % 11 == 0:
            total = "N/A"
        if number % 17 == 0:
            wallet = wallet[:30]
        if number % 23 == 0:
            created = "someday"
        status = "refunded" if number % 7 == 0 else "paid"
        note = f"line\n{number}" if number % 13 == 0 else "x" * (150 + number % 90)
        records.append([created, wallet, f"{number:05d}", total, status, note])
    lines = [",".join(header)]
    for number, record in enumerate(records):
        lines.append(",".join(f'"{cell}"' if "\n" in cell else cell for cell in record))
        if number in RAGGED_AFTER:
            lines.append("ragged,line")
    csv_path = tmp_path / "orders.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parquet_path = tmp_path / "orders.parquet"
    columns = {name: [record[i] for record in records] for i, name in enumerate(header)}
    pq.write_table(pa.table(columns), parquet_path, row_group_size=250)
    return csv_path, parquet_path


RAGGED_AFTER = (5, 600, 1100)


def csv_row(number: int) -> int:
    """The CSV's row of order `number`: the ragged lines before it are records too."""
    return number + sum(1 for after in RAGGED_AFTER if after < number)


STREAM_MAPPING = mapping(
    {
        "itemId": "sku",
        "amount": {"column": "total", "type": "number"},
        "note": {"column": "note", "optional": True},
    },
    filter="status == 'paid'",
)


def outcome(chunks: list[MappedChunk]) -> dict[str, Any]:
    return {
        "read": sum(chunk.read for chunk in chunks),
        "filtered": [row for chunk in chunks for row in chunk.filtered_rows.tolist()],
        "events": [(row, e.as_dict()) for chunk in chunks for row, e in chunk.events()],
        "failures": [
            (f.row, f.stage, f.reason, f.error, f.record) for c in chunks for f in c.failures
        ],
    }


@pytest.fixture(scope="module")
def mixed_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    csv_path, parquet_path = mixed_orders(tmp_path_factory.mktemp("stream"))
    return {"csv": csv_path, "parquet": parquet_path}


@pytest.fixture(scope="module")
def whole_outcomes(mixed_files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {
        kind: outcome(map_file(path, STREAM_MAPPING, 10**6)) for kind, path in mixed_files.items()
    }


def test_the_mixed_file_read_whole_has_every_kind_of_outcome(
    whole_outcomes: dict[str, dict[str, Any]],
) -> None:
    csv, parquet = whole_outcomes["csv"], whole_outcomes["parquet"]
    assert csv["read"] == STREAM_ROWS + 3
    assert parquet["read"] == STREAM_ROWS
    assert len(csv["filtered"]) == len(range(0, STREAM_ROWS, 7))
    as_csv_rows = {number: csv_row(number) for number in range(STREAM_ROWS)}
    parquet_failures = [(as_csv_rows[f[0]], *f[1:]) for f in parquet["failures"]]
    assert [f for f in csv["failures"] if f[1] != "read"] == parquet_failures != []
    assert [(f[0], f[1]) for f in csv["failures"] if f[1] == "read"] == [
        (6, "read"),
        (602, "read"),
        (1103, "read"),
    ]
    assert csv["events"] == [(as_csv_rows[row], event) for row, event in parquet["events"]]
    assert len(csv["events"]) > STREAM_ROWS // 2


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_reading_in_chunks_gives_the_same_events_failures_and_row_numbers(
    mixed_files: dict[str, Path],
    whole_outcomes: dict[str, dict[str, Any]],
    kind: str,
    chunk_rows: int,
) -> None:
    chunks = map_file(mixed_files[kind], STREAM_MAPPING, chunk_rows)
    assert len(chunks) > 1
    assert all(len(chunk.rows) <= chunk_rows for chunk in chunks)
    chunked, whole = outcome(chunks), whole_outcomes[kind]
    key = lambda failure: (failure[0] is None, failure[0] or 0, failure[3])  # noqa: E731
    assert sorted(chunked.pop("failures"), key=key) == sorted(whole["failures"], key=key)
    assert chunked == {name: value for name, value in whole.items() if name != "failures"}
