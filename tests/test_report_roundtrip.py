"""A failure report gives back exactly what went in: every value, with its type.

`rerun` maps rows again from the records stored in a report, so a record must survive
`ReportWriter` -> `read_report` unchanged (in both the `.jsonl` and the `.csv` form), and
`records_table` must turn the decoded records into an Arrow table holding the same values.
"""

from __future__ import annotations

import datetime as dt
import math
import string
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backfill.books.report import ReportWriter, read_report
from backfill.mapping.events import RowFailure
from backfill.pipeline.rerun import records_table

INT64 = 2**63 - 1
SUFFIXES = (".jsonl", ".csv")
SETTINGS = settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- values ------------------------------------------------------------------------------------

texts = st.one_of(
    st.text(),
    st.sampled_from(
        [
            "00123",
            "",
            " leading and trailing ",
            'a "quoted", comma, line\nbreak\r\nand tab\t',
            "old Mac line end\ralone",
            "Café ◎ 東京 🚀",
            "Korea, Republic of",
            "null",
            "1.0",
            "true",
            "{}",
            "[1]",
            "$float",
        ]
    ),
)
ints = st.one_of(
    st.integers(min_value=-INT64 - 1, max_value=INT64),
    st.sampled_from([0, -1, INT64, -INT64 - 1, 2**53 + 1]),
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 0.1, 1e308, 5e-324]),
)
offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
naive_datetimes = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 1, 1))
aware_datetimes = st.datetimes(
    min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 1, 1), timezones=offsets
)
dates = st.dates()
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None)
any_decimals = st.one_of(
    decimals, st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-0"), Decimal("1E+5")])
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    texts,
    naive_datetimes,
    aware_datetimes,
    dates,
    any_decimals,
    st.binary(),
)
# the report's own tags, as keys of plain dicts, must not be mistaken for tagged values
TAGS = ["$float", "$datetime", "$date", "$time", "$decimal", "$base64", "$dict"]
keys = st.one_of(st.text(max_size=8), st.sampled_from(TAGS))
nested = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=12,
)
column_names = st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(TAGS))
records = st.dictionaries(column_names, nested, max_size=8)


def same(left: Any, right: Any) -> bool:
    """Equal, with the same type all the way down: nan is nan, -0.0 is not 0.0, and
    Decimal('1.50') is not Decimal('1.5')."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        if math.isnan(left):
            return math.isnan(right)
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    if isinstance(left, Decimal):
        return str(left) == str(right)
    if isinstance(left, dt.datetime):
        return left == right and left.utcoffset() == right.utcoffset()
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    return bool(left == right)


def round_trip(path: Path, failures: list[RowFailure]) -> list[RowFailure]:
    path.unlink(missing_ok=True)
    with ReportWriter(path) as writer:
        for failure in failures:
            writer.write(failure)
    return list(read_report(path))


def failure(row: int | None, record: dict[str, Any], **extra: Any) -> RowFailure:
    return RowFailure(
        row=row,
        source="orders.csv",
        stage=extra.pop("stage", "mapping"),
        reason=extra.pop("reason", "event_data.orderAmount (column 'total') is not a number"),
        error=extra.pop("error", "event_data.orderAmount (column 'total') is not a number"),
        record=record,
        **extra,
    )


# --- the report --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
@SETTINGS
@given(batch=st.lists(records, min_size=1, max_size=5))
def test_every_record_value_survives_the_report_with_its_type(
    tmp_path: Path, suffix: str, batch: list[dict[str, Any]]
) -> None:
    written = [failure(row, record) for row, record in enumerate(batch)]
    read = round_trip(tmp_path / f"failures{suffix}", written)
    assert len(read) == len(written)
    for before, after in zip(written, read):
        assert after.row == before.row
        assert same(before.record, after.record), (before.record, after.record)


@pytest.mark.parametrize("suffix", SUFFIXES)
@SETTINGS
@given(
    row=st.one_of(st.none(), st.integers(min_value=0, max_value=INT64)),
    stage=st.sampled_from(["read", "mapping", "send"]),
    error=texts,
    status=st.one_of(st.none(), st.integers(min_value=100, max_value=599)),
    attempts=st.integers(min_value=0, max_value=100),
    event_data=st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.one_of(st.booleans(), st.text(), st.integers(-(2**53), 2**53), st.floats(-1e9, 1e9)),
        max_size=5,
    ),
)
def test_every_failure_field_survives_the_report(
    tmp_path: Path,
    suffix: str,
    row: int | None,
    stage: str,
    error: str,
    status: int | None,
    attempts: int,
    event_data: dict[str, Any],
) -> None:
    event = {
        "timestamp": 1709648551123,
        "user": {"pubKey": "3ooVv5ebAEi4UpQ26BPVXxyUv6GPnCB1VfSiNZKkR2Jd"},
        "event_name": "STORE_ORDER",
        "event_data": event_data,
    }
    written = failure(
        row,
        {"sku": "00123"},
        stage=stage,
        reason=error,
        error=error,
        event=event if stage == "send" else None,
        status=status,
        attempts=attempts,
    )
    (read,) = round_trip(tmp_path / f"failures{suffix}", [written])
    assert read == written


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_known_awkward_values_come_back_exactly(tmp_path: Path, suffix: str) -> None:
    utc_plus_530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
    record = {
        "sku": "00123",
        "name": 'Bundle: "Hoodie", Cap\n(save 10%)',
        "unicode": "Café ◎ 🚀",
        "big": INT64,
        "small": -INT64 - 1,
        "nan": math.nan,
        "inf": math.inf,
        "minus_inf": -math.inf,
        "minus_zero": -0.0,
        "flag": False,
        "missing": None,
        "naive": dt.datetime(2024, 3, 5, 14, 22, 31, 123456),
        "aware": dt.datetime(2024, 3, 5, 14, 22, 31, 123456, tzinfo=utc_plus_530),
        "utc": dt.datetime(2024, 3, 5, 14, 22, 31, 1, tzinfo=dt.timezone.utc),
        "day": dt.date(2024, 2, 29),
        "amount": Decimal("49.90"),
        "raw": b"\x00\xff\n,",
        "nested": {"items": [1, "00123", None, {"at": dt.date(2024, 1, 1)}]},
    }
    (read,) = round_trip(tmp_path / f"failures{suffix}", [failure(7, record)])
    assert same(record, read.record), read.record


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(
    "record",
    [
        {"$date": "2024-01-01"},
        {"meta": {"$base64": "AA=="}},
        {"meta": {"$float": "nan"}},
        {"meta": {"$dict": {"$decimal": "1.5"}}},
    ],
)
def test_dicts_that_look_like_tagged_values_stay_dicts(
    tmp_path: Path, suffix: str, record: dict[str, Any]
) -> None:
    (read,) = round_trip(tmp_path / f"failures{suffix}", [failure(1, record)])
    assert same(record, read.record), read.record


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_lone_carriage_return_in_a_message_keeps_the_row_whole(
    tmp_path: Path, suffix: str
) -> None:
    written = [
        failure(1, {"sku": "00123"}, error="HTTP 502\rBad Gateway", reason="gave up\r"),
        failure(2, {"sku": "00124"}),
    ]
    assert round_trip(tmp_path / f"failures{suffix}", written) == written


# --- back into a table -------------------------------------------------------------------------

# One type per column, as in a real source: Arrow infers each column's type from its values.
struct_values = st.fixed_dictionaries(
    {"a": st.one_of(st.none(), ints), "b": st.one_of(st.none(), texts)}
)
column_kinds = st.sampled_from(
    [
        ints,
        floats,
        texts,
        st.booleans(),
        naive_datetimes,
        aware_datetimes,
        dates,
        st.decimals(min_value=-(10**12), max_value=10**12, places=4),
        st.binary(),
        st.lists(ints, max_size=3),
        struct_values,
    ]
)


@st.composite
def typed_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(string.ascii_lowercase), min_size=1, max_size=5))
    columns = {name: draw(column_kinds) for name in dict.fromkeys(names)}
    count = draw(st.integers(min_value=1, max_value=6))
    return [
        {name: draw(st.one_of(st.none(), kind)) for name, kind in columns.items()}
        for _ in range(count)
    ]


def equal_value(left: Any, right: Any) -> bool:
    """Equal as values: a table may rescale a Decimal or move an aware time to its zone."""
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    if isinstance(left, float) and isinstance(right, float):
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(equal_value(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(equal_value, left, right))
    return type(left) is type(right) and bool(left == right)


@pytest.mark.parametrize("suffix", SUFFIXES)
@SETTINGS
@given(batch=typed_records())
def test_decoded_records_make_a_table_with_the_original_values(
    tmp_path: Path, suffix: str, batch: list[dict[str, Any]]
) -> None:
    read = round_trip(tmp_path / f"failures{suffix}", [failure(i, r) for i, r in enumerate(batch)])
    table = records_table(read)
    assert table.column_names == list(batch[0])
    rows = table.to_pylist()
    for original, row in zip(batch, rows):
        assert equal_value(original, row), (original, row)
