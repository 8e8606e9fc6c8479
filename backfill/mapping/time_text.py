"""Times as shops write them: one grammar for the text of every export seen in the wild.

    2024-11-14T14:56:46.795Z          ISO with T or a space, fractions to the nanosecond
    2021-05-13 11:01:12 +0200         an offset Z, +02, +0200 or +02:00, a space before or not
    2024-11-14 14:56:46 UTC           UTC or GMT, alone or before an offset (GMT+2)
    05/13/2021 11:01 AM, 13.05.2021   day/month dates (`dates:` says which comes first)
    May 13, 2021 11:01:12 AM          English month names, a weekday in front or not
    Thu, 13 May 2021 11:01:12 +0000   (RFC 2822, as e-mail and some exports write it)

All of it is read by one regular expression run by Arrow over a whole column; the numbers
are then checked (a 13th month or a 31st of February is no time) and made into wall-clock
milliseconds with integer arithmetic, exact to the millisecond (finer digits are floored).
A value keeps its own offset; `times` places the values without one in the mapping's zone.
`HAS_OFFSET` is the rule "this text carries an offset", for the audit and init alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backfill.mapping.convert import true_mask

DATE_ORDERS = ("day-first", "month-first")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
MONTH_NAMES = (
    *("january", "february", "march", "april", "may", "june", "july", "august"),
    *("september", "october", "november", "december"),
)
DAY_MS = 86_400_000

_ORDINAL = r"(?:st|nd|rd|th)?"
_DATE = (
    r"(?:(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})"
    r"|(?P<a>\d{1,2})[-/.](?P<b>\d{1,2})[-/.](?P<yy>\d{4}|\d{2})"
    rf"|(?P<mon1>[A-Za-z]{{3,9}})\.?\s+(?P<d1>\d{{1,2}}){_ORDINAL},?\s+(?P<y1>\d{{4}})"
    rf"|(?P<d2>\d{{1,2}}){_ORDINAL}[\s-]+(?P<mon2>[A-Za-z]{{3,9}})\.?,?[\s-]+(?P<y2>\d{{4}}))"
)
_TIME = (
    r"(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<F>\d{1,9}))?)?"
    r"(?:\s*(?P<P>[AaPp])\.?[Mm]\.?)?"
)
_ZONE = r"(?P<Z>[Zz]|(?:UTC|GMT)?\s*(?P<zs>[+-])(?P<zh>\d{1,2})(?::?(?P<zm>\d{2}))?|UTC|GMT)"
_WEEKDAY = r"(?:[A-Za-z]{3,9},?\s+)?"
GRAMMAR = rf"^\s*{_WEEKDAY}{_DATE}(?:(?:[Tt]|\s+|,\s*){_TIME}(?:\s*{_ZONE})?)?\s*$"
# The rule "this text carries an offset": a time of day, then a zone, at the end.
HAS_OFFSET = (
    r":\d{2}(?:[.,]\d+)?(?:\s*[AaPp]\.?[Mm]\.?)?\s*"
    r"(?:[Zz]|(?:UTC|GMT)?\s*[+-]\d{1,2}(?::?\d{2})?|UTC|GMT)\s*$"
)
NEEDS_ORDER = (
    "is a day/month date that reads either way: say which comes first with "
    "timestamp.dates: day-first or month-first"
)


Digits = Callable[[str], np.ndarray]  # a group's digits as int64, -1 where it took no part
Words = Callable[[str], pa.Array]  # a group's text, "" where it took no part


@dataclass(frozen=True)
class TimeText:
    """A column of text read as times: wall-clock ms (as if in UTC) and each value's offset."""

    wall_ms: np.ndarray  # int64
    offset_ms: np.ndarray  # int64, east of UTC, where has_offset
    has_offset: np.ndarray
    date_only: np.ndarray  # no time of day: the day's first instant in the zone
    read: np.ndarray  # the value fits the grammar and its numbers are a real time
    needs_order: np.ndarray  # a day/month date, and no `dates:` to say which is which

    def instants(self) -> np.ndarray:
        """UTC ms of the values with an offset (the others' wall clock, unchanged)."""
        return np.where(self.has_offset, self.wall_ms - self.offset_ms, self.wall_ms)


def has_offset(text: pa.Array) -> np.ndarray:
    """Which values carry their own offset: the audit's and init's test, and this parser's."""
    return true_mask(pc.match_substring_regex(text, HAS_OFFSET))


def read_times(text: pa.Array, dates: str | None = None) -> TimeText:
    """Every value of `text` read by the grammar; `dates` orders 05/06/2021-style dates."""
    parts = pc.extract_regex(text, GRAMMAR)
    matched = true_mask(pc.is_valid(parts))

    def field(name: str) -> np.ndarray:
        """A group's digits as int64, -1 where it took no part."""
        values = pc.fill_null(pc.struct_field(parts, name), "")
        filled = pc.if_else(pc.equal(values, ""), "-1", values)
        return pc.cast(filled, pa.int64()).to_numpy(zero_copy_only=False)

    def text_field(name: str) -> pa.Array:
        return pc.fill_null(pc.struct_field(parts, name), "")

    year, month, day, ordered, either_way = _dates(field, text_field, dates)
    hour, minute, second = field("H"), field("M"), field("S")
    date_only = matched & (hour < 0)
    hour, ok_hour = _hour(np.maximum(hour, 0), text_field("P"))
    minute, second = np.maximum(minute, 0), np.maximum(second, 0)
    valid = matched & ordered & _real_date(year, month, day) & ok_hour
    valid &= (minute < 60) & (second < 60)
    offset, ok_offset, with_offset = _offsets(field, text_field)
    valid &= ok_offset
    days = _days_from_civil(np.where(valid, year, 1970), np.where(valid, month, 1), day)
    clock = ((hour * 60 + minute) * 60 + second) * 1000 + _milliseconds(text_field("F"))
    wall = np.where(valid, days * DAY_MS + clock, 0)
    return TimeText(
        wall_ms=wall,
        offset_ms=np.where(valid & with_offset, offset, 0),
        has_offset=valid & with_offset,
        date_only=valid & date_only,
        read=valid,
        needs_order=matched & ~ordered & either_way,
    )


def _dates(
    field: Digits, text_field: Words, dates: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day from whichever date form matched; which rows are ordered (not a
    day/month date, or `dates` says which is which); which are a real date either way."""
    year, month, day = field("y"), field("m"), field("d")
    first, second, short_year = field("a"), field("b"), field("yy")
    numeric = short_year >= 0
    if dates == "day-first":
        day, month = np.where(numeric, first, day), np.where(numeric, second, month)
    elif dates == "month-first":
        day, month = np.where(numeric, second, day), np.where(numeric, first, month)
    ordered = ~numeric if dates not in DATE_ORDERS else np.ones(len(numeric), bool)
    written = short_year.copy()
    two_digits = numeric & (pc.utf8_length(text_field("yy")).to_numpy(zero_copy_only=False) == 2)
    written[two_digits] += np.where(written[two_digits] < 69, 2000, 1900)  # as strptime's %y
    year = np.where(numeric, written, year)
    either_way = _real_date(year, first, second) | _real_date(year, second, first)
    for name_group, day_group, year_group in (("mon1", "d1", "y1"), ("mon2", "d2", "y2")):
        named = field(year_group) >= 0
        if named.any():
            month = np.where(named, _month_numbers(text_field(name_group)), month)
            day = np.where(named, field(day_group), day)
            year = np.where(named, field(year_group), year)
    return year, month, day, ordered, either_way


def _month_numbers(names: pa.Array) -> np.ndarray:
    """1 to 12 for an English month name or its abbreviation ("Sept." too), else 0."""
    lower = pc.utf8_lower(names)
    distinct = pc.unique(lower).to_pylist()
    numbers = {name: _month_number(name) for name in distinct}
    return np.array([numbers[name] for name in lower.to_pylist()], dtype=np.int64)


def _month_number(name: str) -> int:
    for number, full in enumerate(MONTH_NAMES, start=1):
        if len(name) >= 3 and (full.startswith(name) or (name == "sept" and number == 9)):
            return number
    return 0


def _hour(hour: np.ndarray, meridiem: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """24-hour clock from a 12-hour one where AM or PM is written (12 AM is midnight)."""
    letter = pc.utf8_lower(meridiem).to_numpy(zero_copy_only=False)
    twelve = letter != ""
    ok = np.where(twelve, (hour >= 1) & (hour <= 12), hour < 24)
    hour = np.where(twelve, hour % 12 + np.where(letter == "p", 12, 0), hour)
    return hour, ok


def _offsets(field: Digits, text_field: Words) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The offset in ms east of UTC, which offsets are real (at most 14 hours, 59 minutes),
    and which rows carry one (Z, UTC and GMT are +00:00)."""
    zone = text_field("Z").to_numpy(zero_copy_only=False)
    hours, minutes = field("zh"), np.maximum(field("zm"), 0)
    sign = np.where(text_field("zs").to_numpy(zero_copy_only=False) == "-", -1, 1)
    signed = hours >= 0
    ok = ~signed | ((hours <= 14) & (minutes < 60))
    offset = np.where(signed, sign * (np.maximum(hours, 0) * 60 + minutes) * 60_000, 0)
    return offset, ok, zone != ""


def _milliseconds(fraction: pa.Array) -> np.ndarray:
    """The first three digits of a fraction of a second, right-padded: floored ms."""
    padded = pc.utf8_slice_codeunits(pc.utf8_rpad(fraction, 3, "0"), 0, 3)
    return pc.cast(padded, pa.int64()).to_numpy(zero_copy_only=False)


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _real_date(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    good_month = (month >= 1) & (month <= 12)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    length = _DAYS_IN_MONTH[np.where(good_month, month, 0)] + (leap & (month == 2))
    return good_month & (day >= 1) & (day <= length) & (year >= 1)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468
