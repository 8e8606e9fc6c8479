"""Exact, vectorised conversions from source columns to Torque's three types and epoch ms.

Each converter takes a whole column of a chunk and returns a `Converted`: the values (made
into Python objects only when events are built, so `validate` never pays for that) and the
rows that failed, each with a reason that groups well ("not a number") and a message that
shows the value. Nothing here loops over cells in Python, except over the few failing rows
and the distinct values of a column where only Python can decide (base58 decoding).

Exactness rules: an integer stays an integer; a float is never used on the way to a
timestamp (text and floats go through decimal digits); micro- and nanoseconds are floored.
"""

from __future__ import annotations

import re
import time
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from backfill.mapping.pubkey import PUBKEY_BYTES, base58_span, pubkey_problem

FieldType = Literal["string", "number", "boolean"]
TimestampUnit = Literal["auto", "s", "ms", "us", "ns", "iso"]

MAX_SAFE_INTEGER = 2**53  # JavaScript numbers (Torque's) hold integers exactly up to here
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
MS_PER_UNIT: dict[str, tuple[int, int]] = {  # unit -> (multiply, floor-divide) to reach ms
    "s": (1000, 1),
    "ms": (1, 1),
    "us": (1, 1000),
    "ns": (1, 1_000_000),
}
FUTURE_SLACK_MS = 24 * 3600 * 1000
_INT64_MAX = 2**63 - 1
_INT_TEXT = r"^[+-]?[0-9]+$"
_FLOAT_TEXT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DECIMAL_TEXT = r"^-?([0-9]+\.[0-9]+|[0-9]{19,})$"  # with a fraction, or too long for int64
_HAS_OFFSET = r"[Tt ][0-9:.,]+([zZ]|[+-][0-9]{2}(:?[0-9]{2})?)$"  # after a time: not 2024-11-14


@dataclass(frozen=True)
class Problem:
    """Rows of a chunk that failed one check, with what to tell the user."""

    mask: np.ndarray
    reason: str
    describe: Callable[[Any], str] = field(default=lambda value: f"found {value!r}")


@dataclass
class Converted:
    """One column converted: values for the good rows, problems for the bad ones."""

    materialize: Callable[[], list[Any]]
    missing: np.ndarray
    problems: list[Problem] = field(default_factory=list)
    values: np.ndarray | None = None  # the values as one array, where they are (epoch ms)


def _mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A pyarrow boolean result as a numpy mask, nulls counted as False."""
    filled = pc.fill_null(array, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return filled.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def as_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column


def missing_mask(column: pa.Array) -> np.ndarray:
    """Null, and for text also the empty string: both mean "no value" in an orders file."""
    missing = _mask(pc.is_null(column, nan_is_null=True))
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        missing |= _mask(pc.equal(pc.utf8_length(column), 0))
    return missing


def type_of_column(column_type: pa.DataType) -> FieldType:
    """The Torque type a short-form field takes from its column."""
    if pa.types.is_boolean(column_type):
        return "boolean"
    if pa.types.is_integer(column_type) or pa.types.is_floating(column_type):
        return "number"
    if pa.types.is_decimal(column_type):
        return "number"
    return "string"


# --- strings -------------------------------------------------------------------------------


def to_string(column: pa.Array) -> Converted:
    missing = missing_mask(column)
    kind = column.type
    if pa.types.is_boolean(kind):
        text = pc.if_else(column, "true", "false")
    elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        text = pa.array([None if v is None else v.isoformat() for v in column.to_pylist()])
    else:
        text = pc.cast(column, pa.string())
    return Converted(text.to_pylist, missing)


# --- numbers -------------------------------------------------------------------------------


def to_number(column: pa.Array, decimal: str = ".", thousands: str | None = None) -> Converted:
    """Numbers from numbers, or from text written with `decimal` and, optionally, digits
    grouped in threes by `thousands` ("1.234,50" with `,` and `.`); nothing else is guessed."""
    missing = missing_mask(column)
    kind = column.type
    if pa.types.is_integer(kind):
        return _integers(column, missing)
    if pa.types.is_floating(kind):
        return _floats(column, missing)
    if pa.types.is_boolean(kind):
        problem = Problem(~missing, "is a boolean, not a number")
        return Converted(lambda: [None] * len(column), missing, [problem])
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    if decimal != "." or thousands is not None:
        text = local_number_text(text, decimal, thousands)
    return _number_text(text, missing)


def local_number_text(text: pa.Array, decimal: str, thousands: str | None) -> pa.Array:
    """Numbers written the local way, rewritten the way `_number_text` reads them: `1234.50`.
    Text that is not a number written that way becomes text that is no number at all."""
    point = f"[{decimal}]"
    plain = rf"^[+-]?([0-9]+{point}?[0-9]*|{point}[0-9]+)([eE][+-]?[0-9]+)?$"
    valid = pc.match_substring_regex(text, plain)
    if thousands is not None:
        grouped = rf"^[+-]?[0-9]{{1,3}}([{thousands}][0-9]{{3}})+({point}[0-9]*)?$"
        valid = pc.or_(valid, pc.match_substring_regex(text, grouped))
        text = pc.replace_substring(text, thousands, "")
    if decimal != ".":
        text = pc.replace_substring(text, decimal, ".")
    return pc.if_else(pc.fill_null(valid, False), text, "not a number")


def _integers(column: pa.Array, missing: np.ndarray) -> Converted:
    values = pc.cast(column, pa.int64(), safe=False) if column.type != pa.uint64() else column
    limit = pa.scalar(MAX_SAFE_INTEGER, values.type)  # compared as integers: exact
    too_big = _mask(pc.greater(values, limit))
    if pa.types.is_signed_integer(values.type):
        too_big |= _mask(pc.less(values, -MAX_SAFE_INTEGER))
    problem = Problem(
        too_big & ~missing,
        "is an integer beyond 2^53, which Torque cannot hold exactly; map it as a string",
    )
    return Converted(column.to_pylist, missing, [problem])


def _floats(column: pa.Array, missing: np.ndarray) -> Converted:
    finite = _mask(pc.is_finite(column))
    problem = Problem(~finite & ~missing, "is not a finite number")
    return Converted(column.to_pylist, missing, [problem])


def _number_text(text: pa.Array, missing: np.ndarray) -> Converted:
    is_int = _mask(pc.match_substring_regex(text, _INT_TEXT)) & ~missing
    is_float = _mask(pc.match_substring_regex(text, _FLOAT_TEXT)) & ~missing & ~is_int
    fits_int64 = _mask(pc.less_equal(pc.utf8_length(text), 18))
    too_long = is_int & ~fits_int64
    is_int &= fits_int64
    unsigned = pc.utf8_ltrim(text, characters="+")  # Arrow's int cast refuses a leading +
    ints = pc.cast(pc.if_else(pa.array(is_int), unsigned, "0"), pa.int64())
    floats = pc.cast(pc.if_else(pa.array(is_float), text, "0"), pa.float64())
    too_big = too_long | (is_int & _mask(pc.greater(pc.abs(ints), MAX_SAFE_INTEGER)))
    not_finite = is_float & ~_mask(pc.is_finite(floats))
    not_number = ~missing & ~is_int & ~is_float & ~too_long

    def materialize() -> list[Any]:
        int_values = ints.to_pylist()
        if not is_float.any():
            return int_values
        float_values = floats.to_pylist()
        return [
            f if use_float else i for i, f, use_float in zip(int_values, float_values, is_float)
        ]

    return Converted(
        materialize,
        missing,
        [
            Problem(not_number, "is not a number"),
            Problem(
                too_big,
                "is an integer beyond 2^53, which Torque cannot hold exactly; map it as a string",
            ),
            Problem(not_finite, "is not a finite number"),
        ],
    )


# --- booleans ------------------------------------------------------------------------------


def to_boolean(
    column: pa.Array,
    true_values: Sequence[str] | None = None,
    false_values: Sequence[str] | None = None,
) -> Converted:
    missing = missing_mask(column)
    if pa.types.is_boolean(column.type) and true_values is None and false_values is None:
        return Converted(column.to_pylist, missing)
    trues = [str(v).lower() for v in (true_values if true_values is not None else TRUE_WORDS)]
    falses = [str(v).lower() for v in (false_values if false_values is not None else FALSE_WORDS)]
    if pa.types.is_boolean(column.type):
        text = pc.if_else(column, "true", "false")
    else:
        text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(column, pa.string())))
    is_true = _mask(pc.is_in(text, value_set=pa.array(trues, pa.string())))
    is_false = _mask(pc.is_in(text, value_set=pa.array(falses, pa.string())))
    expected = ", ".join(trues + falses)
    problem = Problem(
        ~missing & ~is_true & ~is_false,
        f"is not a boolean (expected one of {expected})",
    )
    return Converted(lambda: is_true.tolist(), missing, [problem])


# --- timestamps ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimestampRule:
    unit: TimestampUnit = "auto"
    format: str | None = None
    timezone: str = "UTC"


def to_epoch_ms(column: pa.Array, rule: TimestampRule, now_ms: int | None = None) -> Converted:
    """Epoch milliseconds, exact, from integers, decimal text, ISO text or datetime columns."""
    missing = missing_mask(column)
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        ms, gap = _datetime_column_ms(column, rule.timezone)
        problems = [_gap_problem(gap & ~missing, rule.timezone)]
    elif pa.types.is_integer(kind):
        ms, problems = _epoch_integers(pc.cast(column, pa.int64()), ~missing, rule.unit)
    elif pa.types.is_floating(kind):
        ms, problems = _epoch_floats(column, ~missing, rule.unit)
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
    early = usable & (ms < 0)
    late = usable & (ms > now_ms + FUTURE_SLACK_MS)
    return Problem(
        early | late,
        "is outside 1970 to now: a backfill replays past orders; check the unit or format",
    )


def _datetime_column_ms(column: pa.Array, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Datetime columns: aware ones are instants already; naive ones are wall clock time."""
    kind = column.type
    if pa.types.is_date(kind):
        column = pc.cast(column, pa.timestamp("s"))
        kind = column.type
    gap = np.zeros(len(column), dtype=bool)
    if kind.tz is None and timezone != "UTC":
        naive = pd.Series(column.to_pandas(), copy=False)
        was_nat = naive.isna().to_numpy()
        local = _localize(naive, timezone)
        gap = local.isna().to_numpy() & ~was_nat
        column = pa.array(local)
        kind = column.type
    raw = pc.fill_null(pc.cast(column, pa.int64()), 0).to_numpy()
    return _scale_to_ms(raw, kind.unit), gap


def _scale_to_ms(raw: np.ndarray, unit: str) -> np.ndarray:
    """Floored ms; seconds are clipped first, so that a huge value cannot wrap into range."""
    multiply, divide = MS_PER_UNIT[unit]
    if multiply > 1:
        raw = np.clip(raw, -_INT64_MAX // multiply, _INT64_MAX // multiply)
    return raw * multiply // divide


def _localize(naive: pd.Series, timezone: str) -> pd.Series:
    """Wall-clock times in `timezone`: a repeated hour takes its first (DST) instant, a
    skipped hour becomes NaT so that the row fails instead of silently moving."""
    return naive.dt.tz_localize(
        zoneinfo.ZoneInfo(timezone),
        ambiguous=np.ones(len(naive), dtype=bool),
        nonexistent="NaT",
    )


def _gap_problem(gap: np.ndarray, timezone: str) -> Problem:
    return Problem(gap, f"does not exist in time zone {timezone} (clocks skipped it)")


def _epoch_integers(
    values: pa.Array, present: np.ndarray, unit: TimestampUnit
) -> tuple[np.ndarray, list[Problem]]:
    raw = pc.fill_null(values, 0).to_numpy()
    if unit in MS_PER_UNIT:
        return _scale_to_ms(raw, unit), []
    if unit == "iso":
        return raw, [Problem(present, "is a number, but the mapping's unit is iso (text)")]
    magnitude = np.abs(np.maximum(raw, -_INT64_MAX))  # abs(INT64_MIN) would stay negative
    return np.select(
        [magnitude < 10**11, magnitude < 10**14, magnitude < 10**17],
        [raw * 1000, raw, raw // 1000],
        raw // 1_000_000,
    ), []


def _epoch_floats(
    column: pa.Array, present: np.ndarray, unit: TimestampUnit
) -> tuple[np.ndarray, list[Problem]]:
    """Float epochs (pandas writes an integer column with a gap as float64). A float's value
    is its shortest round-tripping decimal, `repr`'s digits: integral values below 2^53
    (2^24 for float32) are exact integers; the rest go through those digits, which Arrow's
    cast to text writes."""
    if unit == "iso":
        return np.zeros(len(column), dtype=np.int64), [
            Problem(present, "is a number, but the mapping's unit is iso (text)")
        ]
    values = pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(np.float64)
    finite = np.isfinite(values)
    exact_below = 2.0 ** (np.finfo(column.type.to_pandas_dtype()).nmant + 1)
    integral = present & finite & (np.abs(values) < exact_below) & (values == np.floor(values))
    ms = np.zeros(len(column), dtype=np.int64)
    if integral.any():
        ints = pa.array(np.where(integral, values, 0).astype(np.int64))
        ms[integral] = _epoch_integers(ints, integral, unit)[0][integral]
    fractional = present & finite & ~integral
    problems = [Problem(present & ~finite, "is not a finite number")]
    if fractional.any():
        digits = pc.cast(column, pa.string())  # shortest round-trip digits, maybe 1.5e+12
        bad = _decimal_epochs(digits, fractional, unit, ms)
        problems.append(Problem(bad, "is not an epoch number in the mapping's unit"))
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
    is_int = present & _mask(pc.match_substring_regex(text, r"^-?[0-9]{1,18}$"))
    is_decimal = present & _mask(pc.match_substring_regex(text, _DECIMAL_TEXT))
    is_iso = present & ~is_int & ~is_decimal
    if rule.format is not None:
        is_iso, is_int, is_decimal = present, np.zeros_like(present), np.zeros_like(present)
    problems: list[Problem] = []
    if is_int.any():
        ints = pc.cast(pc.if_else(pa.array(is_int), text, "0"), pa.int64())
        unit: TimestampUnit = "auto" if rule.unit == "iso" else rule.unit
        ms[is_int] = _epoch_integers(ints, is_int, unit)[0][is_int]
        if rule.unit == "iso":
            problems.append(Problem(is_int, "is epoch digits, but the mapping's unit is iso"))
    if is_decimal.any():
        bad_decimal = _decimal_epochs(text, is_decimal, rule.unit, ms)
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


def _decimal_epochs(
    text: pa.Array, rows: np.ndarray, unit: TimestampUnit, out: np.ndarray
) -> np.ndarray:
    """Epochs with a fraction ("1731596206.795"): exact decimal arithmetic, floored to the
    ms. Plain positive decimals are done by Arrow string kernels; the rest (a sign, an
    exponent, many digits) through Python's Decimal."""
    bad = np.zeros(len(out), dtype=bool)
    positions = np.flatnonzero(rows)
    subset = text.take(pa.array(positions))
    plain, plain_ms = _plain_decimal_ms(subset, unit)
    out[positions[plain]] = plain_ms[plain]
    positions = positions[~plain]
    values = subset.filter(pa.array(~plain)).to_pylist()
    for position, value in zip(positions, values):
        try:
            number = Decimal(value)
        except InvalidOperation:
            bad[position] = True
            continue
        chosen = unit
        if unit in ("auto", "iso"):
            magnitude = abs(number)
            chosen = next((name for limit, name in _AUTO_TIERS if magnitude < limit), "ns")
        multiply, divide = MS_PER_UNIT[chosen]
        ms = int((number * multiply / divide).to_integral_value(rounding="ROUND_FLOOR"))
        out[position] = min(max(ms, -_INT64_MAX), _INT64_MAX)  # fails the range check
    return bad


_PLAIN_DECIMAL = r"^(?P<whole>[0-9]{1,15})(?P<fraction>(?:\.[0-9]*)?)$"  # ".795" or ""
_AUTO_TIERS = ((10**11, "s"), (10**14, "ms"), (10**17, "us"))  # as _epoch_integers


def _plain_decimal_ms(text: pa.Array, unit: TimestampUnit) -> tuple[np.ndarray, np.ndarray]:
    """Which values are plain positive decimals of at most 15 whole digits, and their floored
    ms, exactly, with integer arithmetic: whole * 1000 + the first three fraction digits."""
    parts = pc.extract_regex(text, _PLAIN_DECIMAL)
    plain = _mask(pc.is_valid(parts))
    if not plain.any():
        return plain, np.zeros(len(text), dtype=np.int64)
    whole_text = pc.if_else(plain, pc.struct_field(parts, "whole"), "0")
    whole = pc.cast(whole_text, pa.int64()).to_numpy(zero_copy_only=False)
    fraction = pc.fill_null(pc.struct_field(parts, "fraction"), "")
    first_three = pc.utf8_slice_codeunits(pc.utf8_rpad(fraction, 4, "0"), 1, 4)
    thousandths = pc.cast(pc.if_else(plain, first_three, "0"), pa.int64()).to_numpy(
        zero_copy_only=False
    )
    if unit in ("auto", "iso"):
        tier = np.select([whole < limit for limit, _ in _AUTO_TIERS], [1, 2, 3], 4)
    else:
        tier = np.full(len(whole), {"s": 1, "ms": 2, "us": 3, "ns": 4}[unit])
    ms = np.select(
        [tier == 1, tier == 2, tier == 3],
        [whole * 1000 + thousandths, whole, whole // 1000],
        whole // 1_000_000,
    )
    return plain, ms


def _parse_datetimes(
    text: pa.Array, rows: np.ndarray, rule: TimestampRule, out: np.ndarray
) -> list[Problem]:
    """ISO-8601 (or `format`) text: offsets honoured, naive values placed in `timezone`."""
    if rule.format is None:  # RFC 3339 allows a lowercase t and z; pandas does not
        text = pc.utf8_upper(text)
    if rule.format is not None:
        aware = rows if "%z" in rule.format or "%Z" in rule.format else np.zeros_like(rows)
    else:
        aware = rows & _mask(pc.match_substring_regex(text, _HAS_OFFSET))
    naive = rows & ~aware
    how = rule.format or "ISO8601"
    unparsed = np.zeros(len(out), dtype=bool)
    nonexistent = np.zeros(len(out), dtype=bool)
    if rule.format is None:  # the common case, without pandas: Arrow's strict ISO parser
        aware = _arrow_iso_ms(text, aware, "UTC", out)
        if rule.timezone == "UTC":
            naive = _arrow_iso_ms(text, naive, None, out)
    if aware.any() or naive.any():
        series = pd.Series(text.to_pandas(), copy=False)
    if aware.any():
        parsed = pd.to_datetime(series[aware], format=how, utc=True, errors="coerce")
        unparsed[aware] = _store_ms(parsed, out, aware)
    if naive.any():
        parsed = pd.to_datetime(series[naive], format=how, errors="coerce")
        if rule.timezone != "UTC":
            was_nat = parsed.isna().to_numpy()
            parsed = _localize(parsed, rule.timezone)
            gap = parsed.isna().to_numpy() & ~was_nat
            nonexistent[np.flatnonzero(naive)[gap]] = True
        unparsed[naive] = _store_ms(parsed, out, naive)
        unparsed &= ~nonexistent
    expected = f"text in the format {rule.format!r}" if rule.format else "ISO-8601 or epoch digits"
    return [
        Problem(unparsed, f"is not a timestamp (expected {expected})"),
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


# --- public keys ---------------------------------------------------------------------------


class PubkeyChecker:
    """Base58 and 32-byte checks for a whole column, without decoding a single key."""

    def check(self, column: pa.Array) -> Converted:
        missing = missing_mask(column)
        text = pc.cast(column, pa.string())
        shaped = _mask(pc.match_substring_regex(text, r"^[1-9A-HJ-NP-Za-km-z]{32,44}$"))
        wrong_length = shaped & ~_decodes_to_bytes(text, PUBKEY_BYTES)
        return Converted(
            text.to_pylist,
            missing,
            [
                Problem(~missing & ~shaped, "is not a Solana public key", describe_pubkey),
                Problem(wrong_length, "is not a Solana public key", describe_pubkey),
            ],
        )


def _decodes_to_bytes(text: pa.Array, byte_count: int) -> np.ndarray:
    """Which base58 values decode to exactly `byte_count` bytes (for well-formed text).

    Each leading '1' is a zero byte; the digits after them must hold a number of the
    remaining bytes, which `base58_span` turns into two string comparisons."""
    digits = pc.utf8_ltrim(text, characters="1")
    digit_count = pc.fill_null(pc.utf8_length(digits), 0).to_numpy(zero_copy_only=False)
    leading = pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False) - digit_count
    result = np.zeros(len(text), dtype=bool)
    for ones in np.unique(leading).tolist():
        rows = leading == ones
        if ones > byte_count:
            continue
        low, high = base58_span(byte_count - ones)
        result[rows] = _in_span(digits.filter(pa.array(rows)), digit_count[rows], low, high)
    return result


def _in_span(digits: pa.Array, count: np.ndarray, low: str, high: str) -> np.ndarray:
    """low <= digits < high, as numbers: longer is larger, equal lengths compare as text."""
    at_least_low = (count > len(low)) | ((count == len(low)) & _mask(pc.greater_equal(digits, low)))
    below_high = (count < len(high)) | ((count == len(high)) & _mask(pc.less(digits, high)))
    return at_least_low & below_high


def describe_pubkey(value: Any) -> str:
    return f"found {value!r}: {pubkey_problem(value)}"
