"""Times as shops write them: every form of real exports read by one parser, exactly.

Expected instants are computed with `datetime` and `zoneinfo`, never with backfill's code.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pyarrow as pa
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from backfill.mapping.convert import Converted
from backfill.mapping.time_text import NEEDS_ORDER, has_offset, read_times
from backfill.mapping.times import TimestampRule, to_epoch_ms

NOW_MS = 1_900_000_000_000
UTC = dt.timezone.utc
PROPERTY = settings(max_examples=examples(200), deadline=None)


def ms_of(moment: dt.datetime) -> int:
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def local_ms(zone: str, *parts: int) -> int:
    return ms_of(dt.datetime(*parts, tzinfo=zoneinfo.ZoneInfo(zone)))  # type: ignore[misc]


def converted(values: list[str | None], **rule: str) -> Converted:
    return to_epoch_ms(pa.array(values, pa.string()), TimestampRule(**rule), NOW_MS)  # type: ignore[arg-type]


def failures(result: Converted) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for problem in result.problems:
        for position in problem.mask.nonzero()[0].tolist():
            found.setdefault(position, []).append(problem.reason)
    return found


SHOPIFY_INSTANT = ms_of(dt.datetime(2021, 5, 13, 9, 1, 12, tzinfo=UTC))


@pytest.mark.parametrize(
    "text",
    [
        "2021-05-13 11:01:12 +0200",  # Shopify's order export
        "2021-05-13 11:01:12 +02:00",
        "2021-05-13 11:01:12 +02",
        "2021-05-13 11:01:12+0200",
        "2021-05-13T11:01:12+02:00",
        "2021-05-13T11:01:12.000+02:00",
        "2021-05-13 09:01:12 UTC",
        "2021-05-13 09:01:12 GMT",
        "2021-05-13 11:01:12 GMT+02:00",
        "2021-05-13 09:01:12Z",
        "2021-05-13t09:01:12z",
        "Thu, 13 May 2021 09:01:12 +0000",
        "May 13, 2021 4:01:12 AM -0500",
        "2021/05/13 11:01:12 +0200",
    ],
)
@pytest.mark.parametrize("timezone", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_a_value_with_an_offset_keeps_it_whatever_the_timezone(text: str, timezone: str) -> None:
    result = converted([text], timezone=timezone)
    assert failures(result) == {}
    assert result.materialize() == [SHOPIFY_INSTANT]


@pytest.mark.parametrize(
    ("text", "rule", "wall"),
    [
        ("2021-05-13 11:01:12", {}, (2021, 5, 13, 11, 1, 12)),
        ("2021-05-13T11:01:12.5", {}, (2021, 5, 13, 11, 1, 12, 500_000)),
        ("05/13/2021 11:01 AM", {"dates": "month-first"}, (2021, 5, 13, 11, 1)),
        ("05/13/2021 11:01 PM", {"dates": "month-first"}, (2021, 5, 13, 23, 1)),
        ("5/13/21 12:05 am", {"dates": "month-first"}, (2021, 5, 13, 0, 5)),
        ("12/05/2021 12:05 p.m.", {"dates": "month-first"}, (2021, 12, 5, 12, 5)),
        ("13/05/2021 23:01", {"dates": "day-first"}, (2021, 5, 13, 23, 1)),
        ("13.05.2021 23:01:12", {"dates": "day-first"}, (2021, 5, 13, 23, 1, 12)),
        ("13-05-2021", {"dates": "day-first"}, (2021, 5, 13)),
        ("May 13, 2021 11:01:12 PM", {}, (2021, 5, 13, 23, 1, 12)),
        ("13 May 2021 23:01", {}, (2021, 5, 13, 23, 1)),
        ("Sept. 3, 2021", {}, (2021, 9, 3)),
        ("2021-05-13", {}, (2021, 5, 13)),
    ],
)
@pytest.mark.parametrize("timezone", ["UTC", "Europe/Berlin", "America/Sao_Paulo"])
def test_a_naive_value_is_wall_clock_time_in_the_timezone(
    text: str, rule: dict[str, str], wall: tuple[int, ...], timezone: str
) -> None:
    result = converted([text], timezone=timezone, **rule)
    assert failures(result) == {}
    assert result.materialize() == [local_ms(timezone, *wall)]


def test_a_day_month_date_without_dates_fails_with_what_to_set() -> None:
    result = converted(["05/06/2021 10:00", "13/05/2021", "31/31/2021"])
    assert failures(result) == {
        0: [NEEDS_ORDER],
        1: [NEEDS_ORDER],
        2: ["is not a timestamp (expected ISO-8601 or epoch digits)"],
    }


@pytest.mark.parametrize(
    "text",
    ["13/05/2021 10:00", "2021-02-29", "2021-05-13 24:00", "2021-05-13 13:00 PM", "Smarch 3, 2021"],
)
def test_numbers_that_are_no_real_time_fail(text: str) -> None:
    result = converted([text], dates="month-first")
    assert list(failures(result)) == [0]


def test_a_date_whose_midnight_was_skipped_is_the_first_instant_of_that_day() -> None:
    # Brazil's clocks went from 2017-10-14 23:59:59 to 2017-10-15 01:00:00
    result = converted(["2017-10-15", "2017-10-15 00:30:00"], timezone="America/Sao_Paulo")
    first_instant = ms_of(dt.datetime(2017, 10, 15, 3, 0, tzinfo=UTC))
    assert result.materialize()[0] == first_instant
    assert failures(result) == {
        1: ["does not exist in time zone America/Sao_Paulo (clocks skipped it)"]
    }


def test_a_date_column_in_a_zone_that_skips_midnight_reads_as_that_day() -> None:
    days = pa.array([dt.date(2017, 10, 15), dt.date(2017, 10, 16)], pa.date32())
    result = to_epoch_ms(days, TimestampRule(timezone="America/Sao_Paulo"), NOW_MS)
    assert failures(result) == {}
    assert result.materialize() == [
        ms_of(dt.datetime(2017, 10, 15, 3, 0, tzinfo=UTC)),
        local_ms("America/Sao_Paulo", 2017, 10, 16),
    ]


@pytest.mark.parametrize(
    ("serial", "wall"),
    [
        (44329, (2021, 5, 13)),
        (44329.459166666667, (2021, 5, 13, 11, 1, 12)),
        ("44329.5", (2021, 5, 13, 12)),
        (25569, (1970, 1, 1)),
    ],
)
def test_excel_serials_are_days_since_1899_12_30_in_the_timezone(
    serial: float | str, wall: tuple[int, ...]
) -> None:
    column = pa.array([serial])
    for timezone in ("UTC", "Europe/Berlin"):
        result = to_epoch_ms(column, TimestampRule(unit="excel", timezone=timezone), NOW_MS)
        assert result.materialize() == [local_ms(timezone, *wall)]


def test_text_that_is_no_excel_serial_fails() -> None:
    result = to_epoch_ms(pa.array(["x", "-1"]), TimestampRule(unit="excel"), NOW_MS)
    reason = "is not an Excel serial (days since 1899-12-30)"
    assert failures(result) == {0: [reason], 1: [reason]}


def test_excel_date_cells_read_as_wall_clock_time(tmp_path: object) -> None:
    from pathlib import Path

    import openpyxl

    from backfill.read.source import read_source

    path = Path(str(tmp_path)) / "orders.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Order Date", "Order ID"])
    sheet.append([dt.datetime(2021, 5, 13, 11, 1, 12), "A-1"])
    book.save(path)
    table = next(iter(read_source(path).chunks())).table
    column = table.column("Order Date").combine_chunks()
    result = to_epoch_ms(column, TimestampRule(timezone="Europe/Berlin"), NOW_MS)
    assert result.materialize() == [local_ms("Europe/Berlin", 2021, 5, 13, 11, 1, 12)]


# --- properties -------------------------------------------------------------------------------

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2029, 12, 31), timezones=offsets
)


def shop_text(moment: dt.datetime, style: int) -> str:
    """The same instant as several exports write it."""
    offset = moment.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    clock = moment.strftime("%Y-%m-%d %H:%M:%S")
    return [
        f"{clock} {sign}{hours:02d}{rest:02d}",
        f"{clock}{sign}{hours:02d}:{rest:02d}",
        moment.isoformat(),
        moment.strftime("%a, %d %b %Y %H:%M:%S ") + f"{sign}{hours:02d}{rest:02d}",
        moment.strftime("%b %d, %Y %I:%M:%S %p ") + f"GMT{sign}{hours:02d}:{rest:02d}",
    ][style]


@PROPERTY
@given(
    moment=moments,
    style=st.integers(min_value=0, max_value=4),
    zone=st.sampled_from(["UTC", "America/Sao_Paulo", "Asia/Kathmandu", "Pacific/Chatham"]),
)
def test_every_written_form_of_an_instant_reads_as_that_instant(
    moment: dt.datetime, style: int, zone: str
) -> None:
    text = shop_text(moment, style)
    result = converted([text], timezone=zone)
    expected = ms_of(moment.replace(microsecond=moment.microsecond if style == 2 else 0))
    assert failures(result) == {}, text
    assert result.materialize() == [expected], text


@PROPERTY
@given(moment=moments, style=st.integers(min_value=0, max_value=4), naive=st.booleans())
def test_the_offset_rule_of_the_audit_is_the_parsers(
    moment: dt.datetime, style: int, naive: bool
) -> None:
    text = shop_text(moment.replace(tzinfo=None) if naive and style == 2 else moment, style)
    column = pa.array([text])
    assert has_offset(column).tolist() == read_times(column).has_offset.tolist(), text
