"""A timestamp from a date and a time of day, in a zone named per row (PayPal's Date, Time
and TimeZone), exact against zoneinfo, across a clock change; unknown zones fail their row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from conftest import CliResult
from export_corpus import EPOCH

from backfill.mapping.time_columns import UNKNOWN_ZONE, timestamp_ms, zone_offset
from backfill.mapping.times import TimestampRule

Cli = Callable[..., CliResult]
NOW = 2_000_000_000_000
RULE = TimestampRule(dates="month-first")


def ms(text: str, zone: str) -> int:
    when = datetime.strptime(text, "%m/%d/%Y %H:%M:%S").replace(tzinfo=ZoneInfo(zone))
    return int((when - EPOCH).total_seconds() * 1000)


def _table(rows: list[tuple[str, str, str | None]]) -> pa.Table:
    dates, times, zones = zip(*rows)
    return pa.table({"Date": list(dates), "Time": list(times), "TimeZone": list(zones)})


def test_abbreviations_and_names_place_each_row_across_the_clock_change() -> None:
    rows = [
        ("3/12/2023", "01:59:59", "PST"),  # the last second before the change
        ("3/12/2023", "03:00:00", "PDT"),  # the first after it
        ("11/5/2023", "01:30:00", "PDT"),  # the repeated hour, first time
        ("11/5/2023", "01:30:00", "PST"),  # and second time: one hour later
        ("3/26/2023", "02:30:00", "Europe/Paris"),  # a wall time Paris skipped: fails
        ("7/1/2023", "12:00:00", "+05:30"),
    ]
    converted = timestamp_ms(_table(rows), "Date", RULE, NOW, "Time", "TimeZone")
    got = converted.materialize()
    la = "America/Los_Angeles"
    first_half_hour = ms("11/5/2023 01:30:00", la)
    assert got[:4] == [
        ms("3/12/2023 01:59:59", la),
        ms("3/12/2023 03:00:00", la),
        first_half_hour,
        first_half_hour + 3_600_000,
    ]
    assert got[1] - got[0] == 1000
    assert got[5] == ms("7/1/2023 12:00:00", "Asia/Kolkata")
    failing = [p for p in converted.problems if p.mask.any()]
    assert [(p.reason, p.mask.nonzero()[0].tolist()) for p in failing] == [
        ("does not exist in time zone Europe/Paris (clocks skipped it)", [4])
    ]


def test_an_unknown_or_empty_zone_fails_its_row_naming_the_zone() -> None:
    zones = ["XYZ", None, "../../etc/passwd", "UTC"]
    rows = [("3/1/2023", "10:00:00", zone) for zone in zones]
    converted = timestamp_ms(_table(rows), "Date", RULE, NOW, "Time", "TimeZone")
    failing = [(p.reason, p.mask.nonzero()[0].tolist(), p.describe(None))
               for p in converted.problems if p.mask.any()]  # fmt: skip
    assert sorted(failing) == [
        (UNKNOWN_ZONE, [0], "found time zone 'XYZ'"),
        (UNKNOWN_ZONE, [2], "found time zone '../../etc/passwd'"),
        ("has no time zone (its zone column is empty)", [1], "found None"),
    ]
    assert converted.materialize()[3] == ms("3/1/2023 10:00:00", "UTC")


@pytest.mark.parametrize(
    ("zone", "minutes"),
    [("PST", -480), ("pdt", -420), ("CEST", 120), ("GMT", 0), ("+02:00", 120), ("UTC-8", -480),
     ("-0330", -210), ("Mars", None), ("", None)],
)  # fmt: skip
def test_zone_offsets(zone: str, minutes: int | None) -> None:
    assert zone_offset(zone) == minutes


def test_a_value_with_its_own_offset_keeps_it() -> None:
    table = pa.table({"at": ["2023-03-01 10:00:00 +0100"], "zone": ["PST"]})
    converted = timestamp_ms(table, "at", TimestampRule(), NOW, None, "zone")
    assert converted.materialize() == [ms("3/1/2023 09:00:00", "UTC")]


def test_plan_does_not_call_zoned_times_naive(cli: Cli, tmp_path: Path) -> None:
    from export_corpus import write_fixture

    fixture = write_fixture("paypal", tmp_path)
    drafted = cli("init", tmp_path / fixture.file, "-o", tmp_path / "map.yaml")
    text = (tmp_path / "map.yaml").read_text(encoding="utf-8")
    assert drafted.code == 0 and "timezone_column: TimeZone" in text and "time_column: Time" in text
    planned = cli("plan", tmp_path / fixture.file, "-m", tmp_path / "map.yaml", "--json")
    codes = [w["code"] for w in planned.json()["warnings"]]
    assert "naive_values" not in codes and "all_midnight" not in codes
