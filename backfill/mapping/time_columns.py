"""A timestamp from more than one column: a date and a time of day (`time_column`), and a
zone per row (`timezone_column`), as PayPal writes `Date`, `Time` and `TimeZone`.

The date and the time are joined with a space and read by the one parser of times
(`times.to_epoch_ms`). A zone column holds, per row, an IANA name (`America/Los_Angeles`:
the wall clock placed in that zone, clock changes included), an abbreviation platforms
write (`PST`, `PDT`, `CET`, `CEST`, `GMT`, `UTC`...: each its fixed offset), or an offset
(`+02:00`, `UTC-8`). A value's own offset still wins. A zone that is none of these fails
its row, naming the zone. Rows are grouped by their zone: a few conversions per chunk.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backfill.mapping.convert import Converted, Problem, as_array, missing_mask, true_mask
from backfill.mapping.time_text import HAS_OFFSET
from backfill.mapping.times import OUT_OF_RANGE, TimestampRule, to_epoch_ms

# Minutes east of UTC. Ambiguous abbreviations take the reading of the platforms that
# write them (CST: US Central, as PayPal and Shopify in the US do; IST: India).
ZONE_ABBREVIATIONS: dict[str, int] = {
    "UTC": 0, "GMT": 0, "Z": 0, "UT": 0, "WET": 0, "WEST": 60, "BST": 60, "IST": 330,
    "CET": 60, "CEST": 120, "MET": 60, "MEST": 120, "EET": 120, "EEST": 180, "MSK": 180,
    "EST": -300, "EDT": -240, "CST": -360, "CDT": -300, "MST": -420, "MDT": -360,
    "PST": -480, "PDT": -420, "AKST": -540, "AKDT": -480, "HST": -600, "AST": -240,
    "ADT": -180, "NST": -210, "NDT": -150, "JST": 540, "KST": 540, "HKT": 480, "SGT": 480,
    "AWST": 480, "ACST": 570, "ACDT": 630, "AEST": 600, "AEDT": 660, "NZST": 720,
    "NZDT": 780,
}  # fmt: skip
_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.I)
UNKNOWN_ZONE = (
    "has a time zone that is neither an IANA name (America/Los_Angeles) nor an "
    "abbreviation backfill knows (PST, PDT, CET, CEST, GMT, UTC...)"
)


def zone_offset(zone: str) -> int | None:
    """Minutes east of UTC of an abbreviation or a written offset; None for anything else."""
    text = zone.strip()
    if text.upper() in ZONE_ABBREVIATIONS:
        return ZONE_ABBREVIATIONS[text.upper()]
    found = _OFFSET.match(text)
    if found is None:
        return None
    sign, hours, minutes = found.groups()
    total = int(hours) * 60 + int(minutes or 0)
    return -total if sign == "-" else total


def iana_zone(zone: str) -> str | None:
    """The IANA name, if `zone` is one (a file cannot make zoneinfo read a path)."""
    text = zone.strip()
    if not text or text.startswith(("/", ".")) or ".." in text or "\\" in text:
        return None
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
    return text


def timestamp_values(table: pa.Table, column: str, time_column: str | None) -> pa.Array:
    """The timestamp's text or values: the column, or date and time of day joined."""
    first = as_array(table.column(column))
    if time_column is None:
        return first
    date, clock = _text(first), _text(as_array(table.column(time_column)))
    return pc.binary_join_element_wise(date, clock, " ")


def timestamp_ms(
    table: pa.Table,
    column: str,
    rule: TimestampRule,
    now_ms: int,
    time_column: str | None = None,
    zone_column: str | None = None,
) -> Converted:
    """Epoch ms of every row, from one column or two, in one zone or a zone per row."""
    values = timestamp_values(table, column, time_column)
    if zone_column is None:
        return to_epoch_ms(values, rule, now_ms)
    zones = _text(as_array(table.column(zone_column)))
    return _zoned(values, zones, rule, now_ms)


def _zoned(values: pa.Array, zones: pa.Array, rule: TimestampRule, now_ms: int) -> Converted:
    ms = np.zeros(len(values), dtype=np.int64)
    missing = missing_mask(values)
    problems: list[Problem] = []
    out_of_range = np.zeros(len(values), dtype=bool)  # the range check stays last, as ever
    zone_missing = true_mask(pc.is_null(zones)) & ~missing
    problems.append(Problem(zone_missing, "has no time zone (its zone column is empty)"))
    for zone in pc.unique(zones.filter(pc.is_valid(zones))).to_pylist():
        rows = true_mask(pc.equal(zones, zone))
        part = values.filter(pa.array(rows))
        place = np.flatnonzero(rows)
        offset = zone_offset(zone)
        name = iana_zone(zone) if offset is None else "UTC"
        if name is None:
            problem = Problem(rows & ~missing, UNKNOWN_ZONE, _found_zone(zone))
            problems.append(problem)
            continue
        converted = to_epoch_ms(part, replace(rule, timezone=name), now_ms)
        got = np.asarray(converted.values, dtype=np.int64)
        if offset:
            naive = ~true_mask(pc.match_substring_regex(_text(part), HAS_OFFSET))
            got = got - np.where(naive, offset * 60_000, 0)
        ms[place] = got
        *checks, range_check = converted.problems
        out_of_range[place] = range_check.mask
        for problem in checks:
            mask = np.zeros(len(values), dtype=bool)
            mask[place] = problem.mask
            problems.append(replace(problem, mask=mask))
    problems.append(Problem(out_of_range, OUT_OF_RANGE))
    return Converted(ms.tolist, missing, problems, values=ms)


def _found_zone(zone: str) -> Callable[[Any], str]:
    return lambda _value: f"found time zone {zone!r}"


def _text(array: pa.Array) -> pa.Array:
    """Trimmed text, null where empty."""
    if not pa.types.is_string(array.type):
        array = pc.cast(array, pa.string())
    text = pc.utf8_trim_whitespace(array)
    empty = pc.fill_null(pc.equal(pc.utf8_length(text), 0), True)
    return pc.if_else(empty, pa.scalar(None, pa.string()), text)
