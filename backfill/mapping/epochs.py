"""Epochs: numbers of seconds, milliseconds, micro- or nanoseconds since 1970, exactly.

The unit is the mapping's, or told by the magnitude (`EPOCH_TIERS`: below 10^11 seconds,
10^14 milliseconds, 10^17 microseconds, else nanoseconds). Integers are scaled with integer
arithmetic; a float goes through its shortest decimal digits, a fraction through decimal
arithmetic, floored to the millisecond; nothing passes through a float on the way.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backfill.mapping.convert import Problem, true_mask

if TYPE_CHECKING:
    from backfill.mapping.times import TimestampUnit

MS_PER_UNIT: dict[str, tuple[int, int]] = {  # unit -> (multiply, floor-divide) to reach ms
    "s": (1000, 1),
    "ms": (1, 1),
    "us": (1, 1000),
    "ns": (1, 1_000_000),
}
EPOCH_TIERS = ((10**11, "s"), (10**14, "ms"), (10**17, "us"))  # magnitude below -> unit; ns
INT64_MAX = 2**63 - 1


def scale_to_ms(raw: np.ndarray, unit: str) -> np.ndarray:
    """Floored ms; seconds are clipped first, so that a huge value cannot wrap into range."""
    multiply, divide = MS_PER_UNIT[unit]
    if multiply > 1:
        raw = np.clip(raw, -INT64_MAX // multiply, INT64_MAX // multiply)
    return raw * multiply // divide


def epoch_integers(
    values: pa.Array, present: np.ndarray, unit: TimestampUnit
) -> tuple[np.ndarray, list[Problem]]:
    raw = pc.fill_null(values, 0).to_numpy()
    if unit in MS_PER_UNIT:
        return scale_to_ms(raw, unit), []
    if unit == "iso":
        return raw, [Problem(present, "is a number, but the mapping's unit is iso (text)")]
    magnitude = np.abs(np.maximum(raw, -INT64_MAX))  # abs(INT64_MIN) would stay negative
    return np.select(
        [magnitude < limit for limit, _ in EPOCH_TIERS],
        [raw * 1000, raw, raw // 1000],
        raw // 1_000_000,
    ), []


def epoch_floats(
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
        ms[integral] = epoch_integers(ints, integral, unit)[0][integral]
    fractional = present & finite & ~integral
    problems = [Problem(present & ~finite, "is not a finite number")]
    if fractional.any():
        digits = pc.cast(column, pa.string())  # shortest round-trip digits, maybe 1.5e+12
        bad = decimal_epochs(digits, fractional, unit, ms)
        problems.append(Problem(bad, "is not an epoch number in the mapping's unit"))
    return ms, problems


def decimal_epochs(
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
            chosen = next((name for limit, name in EPOCH_TIERS if magnitude < limit), "ns")
        multiply, divide = MS_PER_UNIT[chosen]
        ms = int((number * multiply / divide).to_integral_value(rounding="ROUND_FLOOR"))
        out[position] = min(max(ms, -INT64_MAX), INT64_MAX)  # fails the range check
    return bad


_PLAIN_DECIMAL = r"^(?P<whole>[0-9]{1,15})(?P<fraction>(?:\.[0-9]*)?)$"  # ".795" or ""


def _plain_decimal_ms(text: pa.Array, unit: TimestampUnit) -> tuple[np.ndarray, np.ndarray]:
    """Which values are plain positive decimals of at most 15 whole digits, and their floored
    ms, exactly, with integer arithmetic: whole * 1000 + the first three fraction digits."""
    parts = pc.extract_regex(text, _PLAIN_DECIMAL)
    plain = true_mask(pc.is_valid(parts))
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
        tier = np.select([whole < limit for limit, _ in EPOCH_TIERS], [1, 2, 3], 4)
    else:
        tier = np.full(len(whole), {"s": 1, "ms": 2, "us": 3, "ns": 4}[unit])
    ms = np.select(
        [tier == 1, tier == 2, tier == 3],
        [whole * 1000 + thousandths, whole, whole // 1000],
        whole // 1_000_000,
    )
    return plain, ms
