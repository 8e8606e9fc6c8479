"""Which sampled columns hold times, in which unit or format, for `backfill init`.

A column is a timestamp candidate when nearly all of its sampled values convert with the
very rule the draft will write (`convert.to_epoch_ms`) and land after 2000: row numbers,
quantities and zip codes convert too, as epoch seconds in 1970, and are not times. Text
such as `03/01/19` is tried under the formats its shape allows; between day-first and
month-first the one under which every sampled value parses wins, and when both do, the
draft says so and picks the one that keeps the file's order of rows in time.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backfill.mapping.convert import Converted, missing_mask
from backfill.mapping.times import EPOCH_TIERS, HAS_OFFSET, TimestampRule, to_epoch_ms

PARSE_SHARE = 0.98
YEAR_2000_MS = 946_684_800_000
DAY_MS = 86_400_000
_UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
_SHAPE = re.compile(
    r"^(\d{1,4})([/.\-])(\d{1,2})\2(\d{1,4})"
    r"(?:([ T])(\d{1,2}):(\d{2})(:\d{2})?(\.\d+)?(\s*)([AaPp][Mm])?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_OFFSET = re.compile(HAS_OFFSET)
_EPOCH = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
SPARSE_SHARE = 0.9  # of the best-filled time column's fill rate: below it, not chosen
# Names in the order the draft prefers them, when fill rates are alike: the order's own time
# first (`created`, `order date`, `placed`, a plain `date`), then `paid`, then the rest.
_BEST_NAME = re.compile(
    r"created|placed|purchase|timestamp|^ts$|order(ed)?[ _-]?(date|time|at)|^(date|time)$|"
    r"(sale|transaction|order)[ _-]?date|^date[ _-]?(time|created)$",
    re.I,
)
_PAID_NAME = re.compile(r"paid|payment", re.I)
_TIME_NAME = re.compile(r"date|time|_at$| at$|when", re.I)
_LATER_NAME = re.compile(
    r"ship|deliver|update|modif|birth|expir|due|refund|return|cancel|fulfil|closed", re.I
)


@dataclass
class TimestampGuess:
    column: str
    unit: str
    format: str | None
    why: str
    unit_why: str
    format_why: str
    timezone_why: str
    summary: str
    date_only: bool
    score: tuple[int, int, int]
    filled: int = 0  # sampled rows with a value
    rows: int = 0
    sparse: bool = False  # empty on many more rows than the best-filled time column

    @property
    def empty_words(self) -> str:
        return f"empty on {self.rows - self.filled:,} of {self.rows:,} sampled rows"


def guess_timestamps(table: pa.Table, now_ms: int | None = None) -> list[TimestampGuess]:
    """Every column that reads as times, the likeliest order-time column first."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    guesses = []
    for position, name in enumerate(table.column_names):
        column = table.column(name).combine_chunks()
        guess = _guess_column(name, column, now_ms, position)
        if guess is not None:
            guesses.append(guess)
    best_fill = max((g.filled for g in guesses), default=0)
    for guess in guesses:
        guess.sparse = guess.filled < SPARSE_SHARE * best_fill
    return sorted(guesses, key=lambda g: (not g.sparse, *g.score), reverse=True)


def _guess_column(name: str, column: pa.Array, now_ms: int, position: int) -> TimestampGuess | None:
    present = ~missing_mask(column)
    if not present.any():
        return None
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return _finish(name, column, present, "auto", None, now_ms, position, f"a {kind} column")
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return _epoch_guess(name, column, present, now_ms, position)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return None
    text = pc.utf8_trim_whitespace(column)
    values = [v for v in text.to_pylist() if v]
    if all(_EPOCH.match(v) for v in values):
        return _epoch_guess(name, text, present, now_ms, position)
    auto = _finish(name, text, present, "auto", None, now_ms, position, "ISO-8601 text")
    if auto is not None:
        return auto
    return _format_guess(name, text, present, values, now_ms, position)


def failed_rows(converted: Converted) -> np.ndarray:
    """The rows with any problem (missing values aside)."""
    failed = np.zeros(len(converted.missing), dtype=bool)
    for problem in converted.problems:
        failed |= problem.mask
    return failed


def _parsed(
    column: pa.Array, present: np.ndarray, rule: TimestampRule, now_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """(ms, ok) under `rule`: ok where the value converts and lies after 2000."""
    converted = to_epoch_ms(column, rule, now_ms)
    ms = np.array(converted.materialize(), dtype=np.int64)
    ok = present & ~failed_rows(converted) & (ms >= YEAR_2000_MS)
    return ms, ok


def _finish(
    name: str,
    column: pa.Array,
    present: np.ndarray,
    unit: str,
    fmt: str | None,
    now_ms: int,
    position: int,
    what: str,
) -> TimestampGuess | None:
    ms, ok = _parsed(column, present, TimestampRule(unit=unit, format=fmt), now_ms)  # type: ignore[arg-type]
    count, total = int(ok.sum()), int(present.sum())
    if count < PARSE_SHARE * total:
        return None
    date_only = bool((ms[ok] % DAY_MS == 0).all())
    why = f"{what}: {count:,} of {total:,} sampled values parse as times"
    if count < total:
        why += f" (the other {total - count:,} fail and go to the report)"
    return TimestampGuess(
        column=name,
        unit=unit,
        format=fmt,
        why=why,
        unit_why=_unit_why(unit, what),
        format_why="",
        timezone_why=_timezone_why(column, present),
        summary=fmt or (unit if unit != "auto" else what),
        date_only=date_only,
        score=(_name_score(name), int(not date_only), -position),
        filled=total,
        rows=len(column),
    )


def _epoch_guess(
    name: str, column: pa.Array, present: np.ndarray, now_ms: int, position: int
) -> TimestampGuess | None:
    digits = pc.cast(column, pa.string()).to_pylist()
    magnitudes = {_tier(abs(float(v))) for v, p in zip(digits, present) if p and v is not None}
    unit = magnitudes.pop() if len(magnitudes) == 1 else "auto"
    what = f"epoch {_UNIT_WORDS[unit]}" if unit != "auto" else "epoch numbers of mixed units"
    return _finish(name, column, present, unit, None, now_ms, position, what)


def _tier(magnitude: float) -> str:
    return next((unit for limit, unit in EPOCH_TIERS if magnitude < limit), "ns")


def _unit_why(unit: str, what: str) -> str:
    if unit in _UNIT_WORDS:
        return f"every sampled value is {_UNIT_WORDS[unit]} since 1970 (by its number of digits)"
    if what.startswith("epoch"):
        return "values of several magnitudes: auto tells seconds, ms, us and ns apart"
    return "auto reads ISO-8601 text, a format's text, datetime columns and epoch numbers"


def _timezone_why(column: pa.Array, present: np.ndarray) -> str:
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is not None:
            return f"the column is in {kind.tz}: timezone does not apply"
        return _naive_words("the values have no offset")
    if pa.types.is_date(kind) or not pa.types.is_string(kind):
        return (
            _naive_words("the values have no offset")
            if pa.types.is_date(kind)
            else "epoch numbers are UTC"
        )
    values = [v for v, p in zip(column.to_pylist(), present) if p]
    naive = [v for v in values if not _OFFSET.search(v) and not _EPOCH.match(v)]
    if not naive:
        return (
            "every sampled value carries its offset or is an epoch number: timezone does not apply"
        )
    if len(naive) == len(values):
        return _naive_words(f"no sampled value has an offset (e.g. {naive[0]!r})")
    return _naive_words(
        f"{len(naive):,} of {len(values):,} sampled values have no offset (e.g. {naive[0]!r})"
    )


def _naive_words(who: str) -> str:
    return (
        f"{who}: read as UTC. If these are the shop's local times, put its IANA zone here "
        "(e.g. America/New_York)"
    )


def _name_score(name: str) -> int:
    if _LATER_NAME.search(name):
        return 0
    if _BEST_NAME.search(name):
        return 4
    if _PAID_NAME.search(name):
        return 3
    return 2 if _TIME_NAME.search(name) else 1


# --- text in a format --------------------------------------------------------------------


def candidate_formats(value: str) -> list[str]:
    """The strptime formats a value's shape allows: day-first before month-first."""
    shape = _SHAPE.match(value)
    if shape is None:
        return []
    first, sep, _, last, tsep, _, _, seconds, fraction, space, ampm, offset = shape.groups()
    if len(first) == 4:
        dates = [f"%Y{sep}%m{sep}%d"]
    else:
        year = "%Y" if len(last) == 4 else "%y"
        dates = [f"%d{sep}%m{sep}{year}", f"%m{sep}%d{sep}{year}"]
    clock = ""
    if tsep is not None:
        hours = "%I" if ampm else "%H"
        clock = f"{tsep}{hours}:%M" + (":%S" if seconds else "") + (".%f" if fraction else "")
        clock += f"{space}%p" if ampm else ""
    zone = "%z" if offset else ""
    return [date + clock + zone for date in dates]


def _format_guess(
    name: str, text: pa.Array, present: np.ndarray, values: list[str], now_ms: int, position: int
) -> TimestampGuess | None:
    shapes = Counter(tuple(candidate_formats(v)) for v in values)
    formats = next((f for f, _ in shapes.most_common() if f), None)
    if not formats:
        return None
    results = []
    for fmt in formats:
        ms, ok = _parsed(text, present, TimestampRule(format=fmt), now_ms)
        results.append((int(ok.sum()), _in_order(ms[ok]), fmt))
    total = int(present.sum())
    best = max(results)
    if best[0] < PARSE_SHARE * total:
        return None
    guess = _finish(
        name, text, present, "auto", best[2], now_ms, position, f"dates such as {values[0]!r}"
    )
    if guess is None:
        return None
    guess.format_why = _format_why(best, results, total)
    return guess


def _in_order(ms: np.ndarray) -> float:
    """The share of consecutive sampled rows that do not go back in time."""
    return float((np.diff(ms) >= 0).mean()) if len(ms) > 1 else 0.0


def _format_why(
    best: tuple[int, float, str], results: list[tuple[int, float, str]], total: int
) -> str:
    rivals = [r for r in results if r[2] != best[2]]
    if not rivals:
        return "the only order of day, month and year these values allow"
    rival = rivals[0]
    order = "day first" if best[2].index("%d") < best[2].index("%m") else "month first"
    if rival[0] < best[0]:
        parsed = (
            "every sampled value parses" if best[0] == total else f"{best[0]:,} of {total:,} parse"
        )
        return f"{order}: {parsed} this way; {total - rival[0]:,} would not parse as {rival[2]!r}"
    return (
        f"AMBIGUOUS: every sampled value also parses as {rival[2]!r}. {order.capitalize()} was "
        f"chosen because it keeps more of the rows in time order ({best[1]:.0%} against "
        f"{rival[1]:.0%}); check a date you know"
    )
