"""Epoch milliseconds, exact, from every kind of time value a source holds.

Integers and decimal text are epochs (their unit named or told by their magnitude); text is
ISO-8601 or the mapping's `format`; datetime columns are instants when aware and wall-clock
times when naive. Values with an offset are instants; `timezone` places the naive ones.

Exactness rules: a float is never used on the way to a timestamp (text and floats go
through decimal digits); micro- and nanoseconds are floored.
"""

from __future__ import annotations

import re
import time
import zoneinfo
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from backfill.mapping.convert import Converted, Problem, missing_mask, true_mask
from backfill.mapping.epochs import (
    EPOCH_TIERS,
    MS_PER_UNIT,
    decimal_epochs,
    epoch_floats,
    epoch_integers,
    scale_to_ms,
)
from backfill.mapping.time_text import DAY_MS, HAS_OFFSET, NEEDS_ORDER, read_times

__all__ = ["EPOCH_TIERS", "HAS_OFFSET", "TimestampRule", "to_epoch_ms", "wall_to_utc"]

TimestampUnit = Literal["auto", "s", "ms", "us", "ns", "iso", "excel"]
TIMESTAMP_UNITS: tuple[TimestampUnit, ...] = ("auto", "s", "ms", "us", "ns", "iso", "excel")

FUTURE_SLACK_MS = 24 * 3600 * 1000
EARLIEST_MS = 31_536_000_000  # 1971-01-01: a value in 1970 is a count or a row number
OUT_OF_RANGE = (
    "is before 1971 or after now: a backfill replays past orders (a time in 1970 is a count "
    "or row number read as seconds); check the column, unit or format"
)
EXCEL_EPOCH_MS = -2_209_161_600_000  # 1899-12-30: Excel's day 0 (past its 1900 leap-day bug)
EXCEL_LAST_DAY = 2_958_466  # 9999-12-31, the last day Excel shows
_DECIMAL_TEXT = r"^-?([0-9]+\.[0-9]+|[0-9]{19,})$"  # with a fraction, or too long for int64


@dataclass(frozen=True)
class TimestampRule:
    """How a column's values become instants. `timezone` places values without an offset
    (a value's own offset always wins); `dates` orders day/month dates such as 05/06/2021."""

    unit: TimestampUnit = "auto"
    format: str | None = None
    timezone: str = "UTC"
    dates: str | None = None  # "day-first" or "month-first"


def to_epoch_ms(column: pa.Array, rule: TimestampRule, now_ms: int | None = None) -> Converted:
    """Epoch milliseconds, exact, from integers, decimal text, ISO text or datetime columns."""
    missing = missing_mask(column)
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        ms, gap = _datetime_column_ms(column, rule.timezone)
        problems = [_gap_problem(gap & ~missing, rule.timezone)]
    elif rule.unit == "excel":
        ms, problems = _excel_serials(column, ~missing, rule.timezone)
    elif pa.types.is_integer(kind):
        ms, problems = epoch_integers(pc.cast(column, pa.int64()), ~missing, rule.unit)
    elif pa.types.is_floating(kind):
        ms, problems = epoch_floats(column, ~missing, rule.unit)
    elif pa.types.is_decimal(kind):
        ms, problems = _timestamp_text(pc.cast(column, pa.string()), missing, rule)
    else:
        text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
        ms, problems = _timestamp_text(text, missing, rule)
    bad = np.zeros(len(column), bool)
    for problem in problems:
        bad |= problem.mask
    problems.append(_range_problem(ms, ~missing & ~bad, now_ms))
    return Converted(ms.tolist, missing, problems, values=ms)


def _range_problem(ms: np.ndarray, usable: np.ndarray, now_ms: int | None) -> Problem:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    early = usable & (ms < EARLIEST_MS)
    late = usable & (ms > now_ms + FUTURE_SLACK_MS)
    return Problem(early | late, OUT_OF_RANGE)


def _datetime_column_ms(column: pa.Array, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Datetime columns (Excel's date cells among them): aware ones are instants already;
    naive ones are wall clock time, a date the first instant of its day."""
    kind = column.type
    dates = pa.types.is_date(kind)
    if dates:
        column = pc.cast(column, pa.timestamp("s"))
        kind = column.type
    raw = pc.fill_null(pc.cast(column, pa.int64()), 0).to_numpy()
    ms = scale_to_ms(raw, kind.unit)
    if kind.tz is not None:
        return ms, np.zeros(len(column), dtype=bool)
    day_start = np.ones(len(ms), dtype=bool) if dates else None
    return wall_to_utc(ms, timezone, day_start)


def wall_to_utc(
    wall_ms: np.ndarray, timezone: str, day_start: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """UTC ms of wall-clock ms in `timezone`, and which wall times the zone skipped.

    A repeated hour takes its first (summer) instant; a skipped time is a gap, so that the
    row fails instead of silently moving, except the start of a day (`day_start`: a date
    without a time), which is the day's first instant: 2017-10-15 in Sao Paulo began at
    01:00. Values beyond pandas' range (years 1678 to 2261) stay as they are: the range
    check fails them."""
    gap = np.zeros(len(wall_ms), dtype=bool)
    if timezone == "UTC" or not len(wall_ms):
        return wall_ms, gap
    inside = (wall_ms > _PANDAS_MIN_MS) & (wall_ms < _PANDAS_MAX_MS)
    local = pd.DatetimeIndex(wall_ms[inside].astype("datetime64[ms]"))
    zone = zoneinfo.ZoneInfo(timezone)
    first = np.ones(len(local), dtype=bool)
    placed = local.tz_localize(zone, ambiguous=first, nonexistent="NaT")
    skipped = np.asarray(placed.isna())
    utc = placed.as_unit("ms").asi8.copy()
    if day_start is not None and skipped.any():
        starts = skipped & day_start[inside]
        if starts.any():
            moved = local[starts].tz_localize(
                zone, ambiguous=first[starts], nonexistent="shift_forward"
            )
            utc[starts] = moved.as_unit("ms").asi8
            skipped &= ~starts
    out = wall_ms.copy()
    out[inside] = np.where(skipped, 0, utc)
    gap[inside] = skipped
    return out, gap


_PANDAS_MIN_MS = -9_000_000_000_000  # 1684: inside pandas' nanosecond range, with room
_PANDAS_MAX_MS = 9_000_000_000_000  # 2255


def _gap_problem(gap: np.ndarray, timezone: str) -> Problem:
    return Problem(gap, f"does not exist in time zone {timezone} (clocks skipped it)")


def _excel_serials(
    column: pa.Array, present: np.ndarray, timezone: str
) -> tuple[np.ndarray, list[Problem]]:
    """Excel serials: days since 1899-12-30, the fraction the time of day, wall clock time
    (as a date cell shows it). Excel keeps a time as a fraction of a day in a double: it is
    rounded to the nearest millisecond."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        number = present.copy()
        values = pc.cast(column, pa.float64(), safe=False)
    else:
        text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
        number = present & true_mask(pc.match_substring_regex(text, r"^[0-9]+(\.[0-9]*)?$"))
        values = pc.cast(pc.if_else(pa.array(number), text, "0"), pa.float64())
    days = pc.fill_null(values, 0).to_numpy(zero_copy_only=False)
    usable = number & np.isfinite(days) & (days >= 0) & (days <= EXCEL_LAST_DAY)
    days = np.where(usable, days, 0.0)
    wall = np.round(days * DAY_MS).astype(np.int64) + EXCEL_EPOCH_MS
    ms, gap = wall_to_utc(wall, timezone, day_start=days == np.floor(days))
    problems = [
        Problem(present & ~usable, "is not an Excel serial (days since 1899-12-30)"),
        _gap_problem(gap & usable, timezone),
    ]
    return ms, problems


def _timestamp_text(
    text: pa.Array, missing: np.ndarray, rule: TimestampRule
) -> tuple[np.ndarray, list[Problem]]:
    ms = np.zeros(len(text), dtype=np.int64)
    present = ~missing
    if rule.format is None and rule.unit in ("auto", "iso") and not _starts_as_epoch(text, present):
        # ISO text with offsets, or in UTC, all parsed by Arrow at once
        if not _arrow_iso_ms(text, present, "UTC", ms).any():
            return ms, []
        if rule.timezone == "UTC" and not _arrow_iso_ms(text, present, None, ms).any():
            return ms, []
    is_int = present & true_mask(pc.match_substring_regex(text, r"^-?[0-9]{1,18}$"))
    is_decimal = present & true_mask(pc.match_substring_regex(text, _DECIMAL_TEXT))
    is_iso = present & ~is_int & ~is_decimal
    if rule.format is not None:
        is_iso, is_int, is_decimal = present, np.zeros_like(present), np.zeros_like(present)
    problems: list[Problem] = []
    if is_int.any():
        ints = pc.cast(pc.if_else(pa.array(is_int), text, "0"), pa.int64())
        unit: TimestampUnit = "auto" if rule.unit == "iso" else rule.unit
        ms[is_int] = epoch_integers(ints, is_int, unit)[0][is_int]
        if rule.unit == "iso":
            problems.append(Problem(is_int, "is epoch digits, but the mapping's unit is iso"))
    if is_decimal.any():
        bad_decimal = decimal_epochs(text, is_decimal, rule.unit, ms)
        problems.append(Problem(bad_decimal, "is not an epoch number in the mapping's unit"))
    if is_iso.any():
        if rule.unit not in ("auto", "iso"):
            problems.append(
                Problem(is_iso, f"is not epoch digits (the mapping's unit is {rule.unit})")
            )
        else:
            problems.extend(_parse_datetimes(text, is_iso, rule, ms))
    return ms, problems


def _starts_as_epoch(text: pa.Array, present: np.ndarray) -> bool:
    """Whether the first value is epoch digits: then Arrow's ISO parser would fail on the
    column (slowly), so the per-kind path below takes it straight away."""
    first = np.flatnonzero(present)[:1]
    if not len(first):
        return False
    value = text[int(first[0])].as_py()
    return bool(_EPOCH_SHAPE.match(value))


_EPOCH_SHAPE = re.compile(r"-?[0-9]+(\.[0-9]+)?$")


def _parse_datetimes(
    text: pa.Array, rows: np.ndarray, rule: TimestampRule, out: np.ndarray
) -> list[Problem]:
    """Dates and times as shops write them (see `time_text`), or in the mapping's `format`:
    a value's own offset honoured, values without one placed in `timezone`."""
    if rule.format is not None:
        return _parse_formatted(text, rows, rule, out)
    positions = np.flatnonzero(rows)
    read = read_times(text.filter(pa.array(rows)), rule.dates)
    naive = read.read & ~read.has_offset
    ms = read.instants()
    ms[naive], gap = wall_to_utc(ms[naive], rule.timezone, read.date_only[naive])
    out[positions[read.read]] = ms[read.read]
    nonexistent = np.zeros(len(out), dtype=bool)
    nonexistent[positions[np.flatnonzero(naive)[gap]]] = True
    unparsed = np.zeros(len(out), dtype=bool)
    unparsed[positions[~read.read & ~read.needs_order]] = True
    needs_order = np.zeros(len(out), dtype=bool)
    needs_order[positions[read.needs_order]] = True
    return [
        Problem(unparsed, "is not a timestamp (expected ISO-8601 or epoch digits)"),
        Problem(needs_order, NEEDS_ORDER),
        _gap_problem(nonexistent, rule.timezone),
    ]


def _parse_formatted(
    text: pa.Array, rows: np.ndarray, rule: TimestampRule, out: np.ndarray
) -> list[Problem]:
    """Text in the mapping's strptime `format`, read by pandas; with %z or %Z it carries its
    offset, else it is placed in `timezone`."""
    how = str(rule.format)
    aware = rows if "%z" in how or "%Z" in how else np.zeros_like(rows)
    naive = rows & ~aware
    unparsed = np.zeros(len(out), dtype=bool)
    nonexistent = np.zeros(len(out), dtype=bool)
    series = pd.Series(text.to_pandas(), copy=False)
    if aware.any():
        parsed = pd.to_datetime(series[aware], format=how, utc=True, errors="coerce")
        unparsed[aware] = _store_ms(parsed, out, aware)
    if naive.any():
        parsed = pd.to_datetime(series[naive], format=how, errors="coerce")
        wall = np.zeros(len(out), dtype=np.int64)
        unparsed[naive] = _store_ms(parsed, wall, naive)
        out[naive], gap = wall_to_utc(wall[naive], rule.timezone)
        nonexistent[naive] = gap & ~unparsed[naive]
    return [
        Problem(unparsed, f"is not a timestamp (expected text in the format {how!r})"),
        _gap_problem(nonexistent, rule.timezone),
    ]


def _arrow_iso_ms(
    text: pa.Array, rows: np.ndarray, timezone: str | None, out: np.ndarray
) -> np.ndarray:
    """Parse `rows` with Arrow into `out` when it takes all of them; return the rows left
    for pandas (all of them when one value is beyond Arrow's stricter ISO-8601 grammar or
    the nanosecond range; where both parse a value, they agree)."""
    if not rows.any():
        return rows
    try:
        stamps = pc.cast(text.filter(pa.array(rows)), pa.timestamp("ns", timezone))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return rows
    out[rows] = stamps.cast(pa.int64()).to_numpy() // 1_000_000
    return np.zeros_like(rows)


def _store_ms(parsed: pd.Series, out: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Write parsed datetimes into `out` as floored ms; return which of `rows` did not parse."""
    nat = parsed.isna().to_numpy()
    unit = parsed.dt.unit
    raw = parsed.to_numpy(dtype="datetime64[" + unit + "]").astype(np.int64)
    multiply, divide = MS_PER_UNIT[unit]
    values = raw * multiply // divide
    values[nat] = 0
    out[rows] = values
    return nat
