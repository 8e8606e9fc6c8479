"""Exact, vectorised conversions from source columns to Torque's three types (times: `times`).

Each converter takes a whole column of a chunk and returns a `Converted`: the values (made
into Python objects only when events are built, so `validate` never pays for that) and the
rows that failed, each with a reason that groups well ("not a number") and a message that
shows the value. Nothing here loops over cells in Python, except over the few failing rows
and the distinct values of a column where only Python can decide (base58 decoding).

Exactness rule: an integer stays an integer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backfill.mapping.pubkey import PUBKEY_BYTES, base58_span, pubkey_problem

FieldType = Literal["string", "number", "boolean"]

MAX_SAFE_INTEGER = 2**53  # JavaScript numbers (Torque's) hold integers exactly up to here
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
_INT_TEXT = r"^[+-]?[0-9]+$"
_FLOAT_TEXT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


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


def true_mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
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
    missing = true_mask(pc.is_null(column, nan_is_null=True))
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        missing |= true_mask(pc.equal(pc.utf8_length(column), 0))
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


def to_number(
    column: pa.Array,
    decimal: str = ".",
    thousands: str | None = None,
    scale: Decimal | None = None,
) -> Converted:
    """Numbers from numbers, or from text written with `decimal` and, optionally, digits
    grouped in threes by `thousands` ("1.234,50" with `,` and `.`); nothing else is guessed.
    With `scale`, each number times it (see `scaled`)."""
    converted = _to_number(column, decimal, thousands)
    return converted if scale is None else scaled(converted, scale)


def scaled(converted: Converted, scale: Decimal) -> Converted:
    """Each number times `scale`, in decimal arithmetic on the number's own digits: 115
    cents at 0.01 is 1.15, never 1.1500000000000001. The product is sent as the double
    nearest to it (whose shortest digits are the product's, up to 15 significant digits),
    an integer when it is whole. Worked out at once (a Python step per value): a product
    no double holds fails its row."""
    products = [_times(value, scale) for value in converted.materialize()]
    too_big = np.array([isinstance(p, float) and not math.isfinite(p) for p in products], bool)
    problem = Problem(too_big & ~converted.missing, "is beyond a double once scaled")
    return Converted(lambda: products, converted.missing, [*converted.problems, problem])


def _times(value: Any, scale: Decimal) -> Any:
    if value is None or isinstance(value, bool):
        return value
    product = Decimal(repr(value) if isinstance(value, float) else value) * scale
    if product == product.to_integral_value() and abs(product) <= MAX_SAFE_INTEGER:
        return int(product)
    return float(product)


def _to_number(column: pa.Array, decimal: str, thousands: str | None) -> Converted:
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
    too_big = true_mask(pc.greater(values, limit))
    if pa.types.is_signed_integer(values.type):
        too_big |= true_mask(pc.less(values, -MAX_SAFE_INTEGER))
    problem = Problem(
        too_big & ~missing,
        "is an integer beyond 2^53, which Torque cannot hold exactly; map it as a string",
    )
    return Converted(column.to_pylist, missing, [problem])


def _floats(column: pa.Array, missing: np.ndarray) -> Converted:
    finite = true_mask(pc.is_finite(column))
    problem = Problem(~finite & ~missing, "is not a finite number")
    return Converted(column.to_pylist, missing, [problem])


def _number_text(text: pa.Array, missing: np.ndarray) -> Converted:
    is_int = true_mask(pc.match_substring_regex(text, _INT_TEXT)) & ~missing
    is_float = true_mask(pc.match_substring_regex(text, _FLOAT_TEXT)) & ~missing & ~is_int
    fits_int64 = true_mask(pc.less_equal(pc.utf8_length(text), 18))
    too_long = is_int & ~fits_int64
    is_int &= fits_int64
    unsigned = pc.utf8_ltrim(text, characters="+")  # Arrow's int cast refuses a leading +
    ints = pc.cast(pc.if_else(pa.array(is_int), unsigned, "0"), pa.int64())
    floats = pc.cast(pc.if_else(pa.array(is_float), text, "0"), pa.float64())
    too_big = too_long | (is_int & true_mask(pc.greater(pc.abs(ints), MAX_SAFE_INTEGER)))
    not_finite = is_float & ~true_mask(pc.is_finite(floats))
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
    is_true = true_mask(pc.is_in(text, value_set=pa.array(trues, pa.string())))
    is_false = true_mask(pc.is_in(text, value_set=pa.array(falses, pa.string())))
    expected = ", ".join(trues + falses)
    problem = Problem(
        ~missing & ~is_true & ~is_false,
        f"is not a boolean (expected one of {expected})",
    )
    return Converted(lambda: is_true.tolist(), missing, [problem])


# --- public keys ---------------------------------------------------------------------------


class PubkeyChecker:
    """Base58 and 32-byte checks for a whole column, without decoding a single key."""

    def check(self, column: pa.Array) -> Converted:
        missing = missing_mask(column)
        text = pc.cast(column, pa.string())
        shaped = true_mask(pc.match_substring_regex(text, r"^[1-9A-HJ-NP-Za-km-z]{32,44}$"))
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
    at_least_low = (count > len(low)) | (
        (count == len(low)) & true_mask(pc.greater_equal(digits, low))
    )
    below_high = (count < len(high)) | ((count == len(high)) & true_mask(pc.less(digits, high)))
    return at_least_low & below_high


def describe_pubkey(value: Any) -> str:
    return f"found {value!r}: {pubkey_problem(value)}"
