"""Time in parts, for `backfill init`: a column of times of day beside a date column, and
a column of each row's time zone (PayPal's `Date`, `Time` and `TimeZone`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from backfill.look.column_kinds import scalar
from backfill.mapping.time_columns import iana_zone, zone_offset

_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}([.,]\d+)?)?(\s*[AaPp]\.?[Mm]\.?)?$")
_ZONE_NAME = re.compile(r"time ?zone|^tz$|^zone$", re.I)


def time_of_day_column(table: pa.Table, taken: set[str]) -> str | None:
    """The first column whose sampled values are all times of day (`01:00:32`, `9:05 PM`)."""
    for name in table.column_names:
        if name not in taken and _all_match(table, name, _TIME_OF_DAY.match):
            return name
    return None


def zone_column(table: pa.Table, taken: set[str]) -> str | None:
    """A column named like a time zone whose values are all zones backfill knows."""
    for name in table.column_names:
        if name in taken or not _ZONE_NAME.search(name):
            continue
        if _all_match(table, name, lambda v: zone_offset(v) is not None or iana_zone(v)):
            return name
    return None


def _all_match(table: pa.Table, name: str, test: object) -> bool:
    column = table.column(name)
    if not pa.types.is_string(column.type):
        return False
    values = [v.strip() for v in column.to_pylist() if v and v.strip()]
    return bool(values) and all(test(v) for v in values)  # type: ignore[operator]


def zone_values(table: pa.Table, name: str) -> str:
    """A few of the column's zones, for the draft's comment."""
    values = sorted({v.strip() for v in table.column(name).to_pylist() if v and v.strip()})
    return ", ".join(values[:4]) + (", ..." if len(values) > 4 else "")


@dataclass(frozen=True)
class TimeParts:
    """The columns init adds to the timestamp: a time of day, each row's zone."""

    time_column: str | None = None
    zone_column: str | None = None
    zones: str = ""

    @classmethod
    def find(cls, table: pa.Table, date_only: bool, taken: set[str]) -> TimeParts:
        """A time of day only beside a date without one; a zone column in any case."""
        clock = time_of_day_column(table, taken) if date_only else None
        zone = zone_column(table, taken | {clock} if clock else taken)
        return cls(clock, zone, zone_values(table, zone) if zone else "")

    @property
    def columns(self) -> set[str]:
        return {c for c in (self.time_column, self.zone_column) if c is not None}

    def lines(self, date_format: str | None) -> list[str]:
        """The timestamp's lines for these columns (after `column:`)."""
        lines = []
        if self.time_column is not None:
            lines.append(
                f"  time_column: {scalar(self.time_column)}   # times of day: joined to the "
                "date, and read together"
            )
        if self.zone_column is not None:
            lines.append(
                f"  timezone_column: {scalar(self.zone_column)}   # each row's zone "
                f"({self.zones}): an abbreviation is its fixed offset, an IANA name its rules"
            )
        order = _DATE_ORDERS.get((date_format or "")[:5])
        if self.time_column is not None and order is not None:
            lines.append(f"  dates: {order}   # as the date column writes them ({date_format})")
        return lines

    def keeps_format(self) -> bool:
        """A date's strptime format no longer fits once the time of day is joined to it."""
        return self.time_column is None


_DATE_ORDERS = {"%m/%d": "month-first", "%d/%m": "day-first", "%d.%m": "day-first"}
