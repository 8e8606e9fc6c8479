"""Exact conversions: epoch milliseconds from every kind of time value, and Torque's types.

Every expected value here is computed by hand or with exact integer arithmetic, never with
floats, so an off-by-one millisecond or an `int` that turned into a `float` fails a test.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from conftest import examples
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from backfill.mapping.convert import (
    Converted,
    Problem,
    PubkeyChecker,
    to_boolean,
    to_number,
    to_string,
    true_mask,
    type_of_column,
)
from backfill.mapping.pubkey import BASE58_ALPHABET, b58encode, decoded_length, pubkey_problem
from backfill.mapping.times import (
    EARLIEST_MS,
    FUTURE_SLACK_MS,
    OUT_OF_RANGE,
    TimestampRule,
    to_epoch_ms,
)

NOW_MS = 1_900_000_000_000  # 2030-03-17: a fixed "now", so the tests do not age
INSTANT_MS = 1_731_596_206_795  # 2024-11-14T14:56:46.795Z, the example in Torque's docs
NOT_A_TIMESTAMP = "is not a timestamp (expected ISO-8601 or epoch digits)"
NOT_A_NUMBER = "is not a number"
BEYOND_2_53 = "is an integer beyond 2^53, which Torque cannot hold exactly; map it as a string"
NOT_FINITE = "is not a finite number"
PROPERTY = settings(max_examples=examples(200), deadline=None)


def epoch_ms(values: Any, rule: TimestampRule | None = None, now_ms: int = NOW_MS) -> Converted:
    array = values if isinstance(values, pa.Array) else pa.array(values)
    return to_epoch_ms(array, rule or TimestampRule(), now_ms)


def problems(converted: Converted) -> dict[int, list[str]]:
    """Row position -> the reasons it failed (rows that pass are absent)."""
    found: dict[int, list[str]] = {}
    for problem in converted.problems:
        for position in problem.mask.nonzero()[0].tolist():
            found.setdefault(position, []).append(problem.reason)
    return found


def good_values(converted: Converted) -> list[Any]:
    assert problems(converted) == {}, problems(converted)
    assert not converted.missing.any()
    return converted.materialize()


def floor_ms(moment: dt.datetime) -> int:
    """Exact floored ms of an aware datetime, with integer arithmetic only."""
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros // 1000


# --- epoch numbers -------------------------------------------------------------------------

EPOCHS = [  # (raw value, unit, exact floored ms)
    (1_731_596_206, "s", 1_731_596_206_000),
    (1_731_596_206_795, "ms", INSTANT_MS),
    (1_731_596_206_795_999, "us", INSTANT_MS),
    (1_731_596_206_795_999_999, "ns", INSTANT_MS),
]


@pytest.mark.parametrize("unit_in_mapping", ["explicit", "auto"])
@pytest.mark.parametrize(("raw", "unit", "expected"), EPOCHS)
def test_epoch_integers_become_exact_milliseconds(
    raw: int, unit: str, expected: int, unit_in_mapping: str
) -> None:
    rule = TimestampRule(unit=unit if unit_in_mapping == "explicit" else "auto")
    assert good_values(epoch_ms(pa.array([raw], pa.int64()), rule)) == [expected]


@pytest.mark.parametrize("unit_in_mapping", ["explicit", "auto"])
@pytest.mark.parametrize(("raw", "unit", "expected"), EPOCHS)
def test_epoch_digits_as_text_become_exact_milliseconds(
    raw: int, unit: str, expected: int, unit_in_mapping: str
) -> None:
    rule = TimestampRule(unit=unit if unit_in_mapping == "explicit" else "auto")
    assert good_values(epoch_ms([str(raw), f" {raw} "], rule)) == [expected, expected]


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("1731596206.795", "auto", INSTANT_MS),
        ("1731596206.795", "s", INSTANT_MS),
        ("1731596206.7959999", "s", INSTANT_MS),
        ("1731596206.0001", "s", 1_731_596_206_000),
        ("1731596206795.9", "auto", INSTANT_MS),
        ("1731596206795.9", "ms", INSTANT_MS),
        ("1731596206795999.9", "us", INSTANT_MS),
        ("1731596206795999999.9", "ns", INSTANT_MS),
        ("1731596206795999999.9", "auto", INSTANT_MS),
    ],
)
def test_decimal_epoch_text_is_floored_to_the_millisecond(
    text: str, unit: str, expected: int
) -> None:
    assert good_values(epoch_ms([text], TimestampRule(unit=unit))) == [expected]


@pytest.mark.parametrize(
    ("values", "unit", "expected"),
    [
        ([-1, -999, -1000, -1001, -1500, 1500], "us", [-1, -1, -1, -2, -2, 1]),
        ([-1, -999_999, -1_000_000, -1_000_001, 1_999_999], "ns", [-1, -1, -1, -2, 1]),
    ],
)
def test_micro_and_nanoseconds_are_floored_including_negative_values(
    values: list[int], unit: str, expected: list[int]
) -> None:
    for array in (
        pa.array(values, pa.int64()),
        pa.array([str(v) for v in values]),
        pa.array(values, pa.timestamp(unit)),
        pa.array(values, pa.timestamp(unit, "UTC")),
    ):
        converted = epoch_ms(array, TimestampRule(unit=unit))
        assert converted.materialize() == expected, array.type
        negative = [position for position, ms in enumerate(expected) if ms < EARLIEST_MS]
        assert sorted(problems(converted)) == negative
        assert all(problems(converted)[p] == [OUT_OF_RANGE] for p in negative)


@pytest.mark.parametrize("epoch_first", [True, False])
def test_a_text_column_mixing_epochs_and_iso_text_maps_both_in_either_order(
    epoch_first: bool,
) -> None:
    values = ["1731596206795", "1731596206.795", " 2024-11-14T14:56:46.795Z"]
    values = values if epoch_first else values[::-1]
    assert good_values(epoch_ms(values)) == [INSTANT_MS] * 3


def test_epoch_seconds_too_large_for_milliseconds_fail_instead_of_wrapping() -> None:
    # 18446744073709552 s * 1000 wraps around int64 to 384 ms (1970) if not guarded.
    for array in (pa.array([18_446_744_073_709_552]), pa.array(["18446744073709552"])):
        converted = epoch_ms(array, TimestampRule(unit="s"))
        assert problems(converted) == {0: [OUT_OF_RANGE]}
    converted = epoch_ms(["99999999999999999999.5"], TimestampRule(unit="s"))
    assert problems(converted) == {0: [OUT_OF_RANGE]}


# --- ISO text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-11-14T14:56:46.795Z", INSTANT_MS),
        ("2024-11-14T14:56:46.795+00:00", INSTANT_MS),
        ("2024-11-14T15:56:46.795+01:00", INSTANT_MS),
        ("2024-11-14T09:56:46.795-05:00", INSTANT_MS),
        ("2024-11-14T20:26:46.795+05:30", INSTANT_MS),
        ("2024-11-14T20:26:46.795+0530", INSTANT_MS),
        ("2024-11-14T14:56:46.795999Z", INSTANT_MS),
        ("2024-11-14T14:56:46.795999999Z", INSTANT_MS),
        ("2024-11-14 14:56:46.795+00:00", INSTANT_MS),
        ("2024-11-14T14:56:46Z", 1_731_596_206_000),
    ],
)
def test_iso_text_with_an_offset_is_the_exact_instant(text: str, expected: int) -> None:
    # The mapping's time zone must not matter when the text carries its own offset.
    for timezone in ("UTC", "Europe/Berlin", "America/New_York"):
        assert good_values(epoch_ms([text], TimestampRule(timezone=timezone))) == [expected]


@pytest.mark.parametrize(
    ("text", "timezone", "expected_utc"),
    [
        ("2024-11-14 14:56:46.795", "UTC", "2024-11-14T14:56:46.795"),
        ("2024-11-14T14:56:46.795", "UTC", "2024-11-14T14:56:46.795"),
        ("2024-01-15 12:00:00", "Europe/Berlin", "2024-01-15T11:00:00"),  # CET, +01:00
        ("2024-07-15 12:00:00", "Europe/Berlin", "2024-07-15T10:00:00"),  # CEST, +02:00
        ("2024-03-31 03:00:00", "Europe/Berlin", "2024-03-31T01:00:00"),  # first summer hour
        ("2024-07-15 12:00:00", "America/New_York", "2024-07-15T16:00:00"),
        ("2024-11-14", "Europe/Berlin", "2024-11-13T23:00:00"),
    ],
)
def test_naive_iso_text_takes_the_mappings_timezone_with_dst(
    text: str, timezone: str, expected_utc: str
) -> None:
    expected = floor_ms(dt.datetime.fromisoformat(expected_utc).replace(tzinfo=dt.timezone.utc))
    assert good_values(epoch_ms([text], TimestampRule(timezone=timezone))) == [expected]


def test_ambiguous_local_time_takes_the_first_instant() -> None:
    # 02:30 happens twice in Berlin on 2024-10-27: first at +02:00 (00:30Z), then at +01:00.
    converted = epoch_ms(["2024-10-27 02:30:00"], TimestampRule(timezone="Europe/Berlin"))
    assert good_values(converted) == [
        floor_ms(dt.datetime(2024, 10, 27, 0, 30, tzinfo=dt.timezone.utc))
    ]


def test_nonexistent_local_time_fails() -> None:
    # Clocks in Berlin jump from 02:00 to 03:00 on 2024-03-31: 02:30 never happened.
    text = ["2024-03-31 02:30:00", "2024-03-31 01:59:59"]
    naive = pa.array([dt.datetime(2024, 3, 31, 2, 30), dt.datetime(2024, 3, 31, 1, 59, 59)])
    gap = "does not exist in time zone Europe/Berlin (clocks skipped it)"
    for values in (text, naive):
        converted = epoch_ms(values, TimestampRule(timezone="Europe/Berlin"))
        assert problems(converted) == {0: [gap]}
        assert converted.materialize()[1] == floor_ms(
            dt.datetime(2024, 3, 31, 0, 59, 59, tzinfo=dt.timezone.utc)
        )


@pytest.mark.parametrize(
    "text", ["yesterday", "31/02/2024", "2024-02-30 09:15:00", "2024-13-01", "12:00", "1.2.3"]
)
def test_unparseable_timestamp_text_fails(text: str) -> None:
    converted = epoch_ms(["2024-11-14T14:56:46.795Z", text])
    assert problems(converted) == {1: [NOT_A_TIMESTAMP]}
    assert converted.materialize()[0] == INSTANT_MS


def test_text_that_does_not_fit_the_unit_fails() -> None:
    epoch_unit = epoch_ms(["2024-11-14T14:56:46Z", "1731596206"], TimestampRule(unit="s"))
    assert problems(epoch_unit) == {0: ["is not epoch digits (the mapping's unit is s)"]}
    iso_unit = epoch_ms(["2024-11-14T14:56:46Z", "1731596206"], TimestampRule(unit="iso"))
    assert problems(iso_unit) == {1: ["is epoch digits, but the mapping's unit is iso"]}
    integers = epoch_ms(pa.array([1731596206]), TimestampRule(unit="iso"))
    assert problems(integers) == {0: ["is a number, but the mapping's unit is iso (text)"]}


def test_format_reads_text_in_that_format_and_timezone() -> None:
    rule = TimestampRule(format="%d/%m/%Y %H:%M", timezone="Europe/Berlin")
    converted = epoch_ms(["14/11/2024 16:06", "2024-11-14T15:06:00Z"], rule)
    assert converted.materialize()[0] == floor_ms(
        dt.datetime(2024, 11, 14, 15, 6, tzinfo=dt.timezone.utc)
    )
    expected_reason = "is not a timestamp (expected text in the format '%d/%m/%Y %H:%M')"
    assert problems(converted) == {1: [expected_reason]}


@pytest.mark.parametrize(
    ("values", "failing"),
    [
        (["1970-12-31T23:59:59.999Z", "1971-01-01T00:00:00Z"], [0]),
        (["1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z"], [0, 1]),
        (pa.array([EARLIEST_MS // 1000 - 1, EARLIEST_MS // 1000], pa.int64()), [0]),
        ([str(EARLIEST_MS // 1000 - 1), str(EARLIEST_MS // 1000)], [0]),
        (["-1", "0", "101"], [0, 1, 2]),  # a row number read as seconds is in 1970
        ([str(NOW_MS + FUTURE_SLACK_MS + 1), str(NOW_MS + FUTURE_SLACK_MS)], [0]),
        (["2100-01-01T00:00:00Z", "2030-01-01T00:00:00Z"], [0]),
        (pa.array([dt.date(1970, 12, 31), dt.date(1971, 1, 1)], pa.date32()), [0]),
        (pa.array([dt.datetime(2200, 1, 1), dt.datetime(2024, 1, 1)], pa.timestamp("s")), [0]),
    ],
)
def test_values_before_1970_or_in_the_future_fail(values: Any, failing: list[int]) -> None:
    converted = epoch_ms(values)
    assert problems(converted) == {position: [OUT_OF_RANGE] for position in failing}


def test_empty_and_null_timestamps_are_missing_not_failed() -> None:
    converted = epoch_ms(["", None, "  ", "2024-11-14T14:56:46.795Z"])
    assert converted.missing.tolist() == [True, True, False, False]
    assert problems(converted) == {2: [NOT_A_TIMESTAMP]}


# --- datetime columns (Parquet) ------------------------------------------------------------

TIMESTAMP_RAW = {  # the same instant, 2024-11-14T14:56:46.795999999Z, in each unit
    "s": (1_731_596_206, 1_731_596_206_000),
    "ms": (1_731_596_206_795, INSTANT_MS),
    "us": (1_731_596_206_795_999, INSTANT_MS),
    "ns": (1_731_596_206_795_999_999, INSTANT_MS),
}


@pytest.mark.parametrize("tz", [None, "UTC", "America/New_York", "Asia/Kolkata"])
@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_parquet_timestamp_columns_of_every_unit_and_zone_are_exact(
    unit: str, tz: str | None
) -> None:
    raw, expected = TIMESTAMP_RAW[unit]
    column = pa.array([raw, None], pa.timestamp(unit, tz))
    converted = epoch_ms(column)
    assert problems(converted) == {}
    assert converted.missing.tolist() == [False, True]
    assert converted.materialize()[0] == expected


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_naive_timestamp_columns_take_the_mappings_timezone(unit: str) -> None:
    raw, expected_utc = TIMESTAMP_RAW[unit]  # wall clock 14:56:46 in Berlin is 13:56:46Z
    naive = epoch_ms(pa.array([raw], pa.timestamp(unit)), TimestampRule(timezone="Europe/Berlin"))
    assert good_values(naive) == [expected_utc - 3_600_000]
    aware = pa.array([raw], pa.timestamp(unit, "UTC"))
    assert good_values(epoch_ms(aware, TimestampRule(timezone="Europe/Berlin"))) == [expected_utc]


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [("UTC", 1_731_542_400_000), ("Europe/Berlin", 1_731_538_800_000)],
)
def test_date_columns_become_local_midnight(timezone: str, expected: int) -> None:
    for date_type in (pa.date32(), pa.date64()):
        column = pa.array([dt.date(2024, 11, 14)], date_type)
        assert good_values(epoch_ms(column, TimestampRule(timezone=timezone))) == [expected]


# --- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100", 100),
        ("49.90", 49.9),
        ("-3", -3),
        ("+4", 4),
        (" 7 ", 7),
        ("00123", 123),
        ("1e3", 1000.0),
        ("1E-2", 0.01),
        (".5", 0.5),
        ("5.", 5.0),
        ("+4.5", 4.5),
        ("100.0", 100.0),
        ("9007199254740992", 2**53),
        ("-9007199254740992", -(2**53)),
    ],
)
def test_number_text_is_parsed_and_integers_stay_int(text: str, expected: int | float) -> None:
    [value] = good_values(to_number(pa.array([text])))
    assert value == expected
    assert type(value) is type(expected)
    assert json.dumps(value) == json.dumps(expected)


def test_integer_text_is_sent_without_a_decimal_point() -> None:
    values = good_values(to_number(pa.array(["100", "49.90", "7"])))
    assert json.dumps(values) == "[100, 49.9, 7]"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("abc", NOT_A_NUMBER),
        ("N/A", NOT_A_NUMBER),
        ("14,95", NOT_A_NUMBER),
        ("0x10", NOT_A_NUMBER),
        ("1_000", NOT_A_NUMBER),
        ("1 000", NOT_A_NUMBER),
        ("NaN", NOT_A_NUMBER),
        ("nan", NOT_A_NUMBER),
        ("inf", NOT_A_NUMBER),
        ("-Infinity", NOT_A_NUMBER),
        ("1e400", NOT_FINITE),
        ("9007199254740993", BEYOND_2_53),
        ("-9007199254740993", BEYOND_2_53),
        ("123456789012345678901234", BEYOND_2_53),
    ],
)
def test_text_that_is_not_an_exact_finite_number_fails(text: str, reason: str) -> None:
    converted = to_number(pa.array(["1", text]))
    assert problems(converted) == {1: [reason]}


def test_integer_columns_stay_int_and_fail_beyond_2_53() -> None:
    column = pa.array([100, 2**53, -(2**53), 2**53 + 1, -(2**53) - 1, None], pa.int64())
    converted = to_number(column)
    assert problems(converted) == {3: [BEYOND_2_53], 4: [BEYOND_2_53]}
    assert converted.missing.tolist() == [False] * 5 + [True]
    values = converted.materialize()
    assert values[:3] == [100, 2**53, -(2**53)]
    assert all(type(v) is int for v in values[:3])
    assert json.dumps(values[0]) == "100"
    assert problems(to_number(pa.array([2**63 + 5], pa.uint64()))) == {0: [BEYOND_2_53]}
    assert good_values(to_number(pa.array([7], pa.int8()))) == [7]


def test_float_columns_keep_floats_and_fail_nan_and_infinity() -> None:
    column = pa.array([49.9, 100.0, math.nan, math.inf, -math.inf], pa.float64())
    converted = to_number(column)
    assert problems(converted) == {3: [NOT_FINITE], 4: [NOT_FINITE]}
    assert converted.missing.tolist() == [False, False, True, False, False]  # NaN is no value
    assert converted.materialize()[:2] == [49.9, 100.0]


def test_boolean_column_mapped_as_number_fails() -> None:
    converted = to_number(pa.array([True, False, None]))
    assert problems(converted) == {
        0: ["is a boolean, not a number"],
        1: ["is a boolean, not a number"],
    }


@pytest.mark.parametrize(
    ("column_type", "expected"),
    [
        (pa.int64(), "number"),
        (pa.int32(), "number"),
        (pa.uint8(), "number"),
        (pa.float32(), "number"),
        (pa.float64(), "number"),
        (pa.decimal128(10, 2), "number"),
        (pa.bool_(), "boolean"),
        (pa.string(), "string"),
        (pa.large_string(), "string"),
        (pa.timestamp("us"), "string"),
    ],
)
def test_short_form_takes_its_type_from_the_column(column_type: pa.DataType, expected: str) -> None:
    assert type_of_column(column_type) == expected


# --- booleans ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        (" true ", True),
        ("1", True),
        ("yes", True),
        ("YES", True),
        ("Yes", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("No", False),
        ("NO", False),
    ],
)
def test_boolean_words_are_read_case_insensitively(text: str, expected: bool) -> None:
    assert good_values(to_boolean(pa.array([text]))) == [expected]


@pytest.mark.parametrize("text", ["maybe", "2", "y", "n", "on", "t", "-1", "truee"])
def test_words_outside_the_boolean_lists_fail(text: str) -> None:
    converted = to_boolean(pa.array(["true", text]))
    reason = "is not a boolean (expected one of true, 1, yes, false, 0, no)"
    assert problems(converted) == {1: [reason]}


def test_true_and_false_lists_replace_the_defaults_case_insensitively() -> None:
    words = ["Premium", "GOLD", "gold", "basic", "BASIC", "platinum", "true", "1"]
    converted = to_boolean(pa.array(words), ["premium", "Gold"], ["basic"])
    reason = "is not a boolean (expected one of premium, gold, basic)"
    assert problems(converted) == {5: [reason], 6: [reason], 7: [reason]}
    assert converted.materialize()[:5] == [True, True, True, False, False]


def test_boolean_columns_stay_booleans_and_accept_word_lists() -> None:
    assert good_values(to_boolean(pa.array([True, False]))) == [True, False]
    inverted = to_boolean(pa.array([True, False]), ["false"], ["true"])
    assert good_values(inverted) == [False, True]


def test_empty_boolean_cells_are_missing() -> None:
    converted = to_boolean(pa.array(["", None, "yes"]))
    assert converted.missing.tolist() == [True, True, False]
    assert problems(converted) == {}


# --- strings -------------------------------------------------------------------------------


def test_strings_keep_leading_zeros_and_other_columns_become_text() -> None:
    assert good_values(to_string(pa.array(["00123", " a b "]))) == ["00123", " a b "]
    assert good_values(to_string(pa.array([123, -4], pa.int64()))) == ["123", "-4"]
    assert good_values(to_string(pa.array([True, False]))) == ["true", "false"]
    stamp = pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6000)], pa.timestamp("us"))
    assert good_values(to_string(stamp)) == ["2024-01-02T03:04:05.006000"]
    assert to_string(pa.array(["", None])).missing.tolist() == [True, True]


# --- public keys ---------------------------------------------------------------------------

KEY = b58encode(bytes(range(1, 33)))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (KEY, None),
        (b58encode(bytes(32)), None),  # 32 zero bytes: all ones
        (b58encode(b"\x00" + bytes(range(1, 32))), None),  # leading zero byte: leading 1
        (b58encode(bytes(31) + b"\x01"), None),  # 31 zero bytes, then a 1: "1" * 31 + "2"
        ("0" + KEY[1:], "'0' is not in the base58 alphabet (no 0, O, I or l)"),
        ("O" + KEY[1:], "'O' is not in the base58 alphabet (no 0, O, I or l)"),
        ("I" + KEY[1:], "'I' is not in the base58 alphabet (no 0, O, I or l)"),
        (KEY[:-1] + "l", "'l' is not in the base58 alphabet (no 0, O, I or l)"),
        (KEY[:31], "expected 32 to 44 base58 characters, found 31"),
        (KEY + "1234", "expected 32 to 44 base58 characters, found 47"),
        ("2" * 45, "expected 32 to 44 base58 characters, found 45"),
        ("0O" + KEY[2:], "'0O' is not in the base58 alphabet (no 0, O, I or l)"),
        ("1" * 32 + "2", "decodes to 33 bytes, expected 32"),  # 32 zero bytes, then a 1
        (b58encode(b"\x01" * 33), "decodes to 33 bytes, expected 32"),
        (b58encode(b"\x01" * 31), "decodes to 31 bytes, expected 32"),
    ],
)
def test_pubkeys_must_be_base58_of_32_bytes(value: str, problem: str | None) -> None:
    converted = PubkeyChecker().check(pa.array([value]))
    if problem is None:
        assert good_values(converted) == [value]
    else:
        assert problems(converted) == {0: ["is not a Solana public key"]}
        failing = [p for p in converted.problems if p.mask.any()]
        assert failing[0].describe(value) == f"found {value!r}: {problem}"


@PROPERTY
@given(
    ones=st.integers(min_value=0, max_value=40),
    digits=st.text(alphabet=BASE58_ALPHABET, min_size=0, max_size=44),
)
def test_pubkey_length_check_agrees_with_decoding_the_key(ones: int, digits: str) -> None:
    text = ("1" * ones + digits.lstrip("1"))[:44] or "1"  # empty is missing, not malformed
    converted = PubkeyChecker().check(pa.array([text]))
    expected = 32 <= len(text) <= 44 and decoded_length(text) == 32
    assert (not problems(converted)) == expected


@PROPERTY
@given(raw=st.binary(min_size=28, max_size=34))
def test_every_encoded_32_byte_value_is_a_pubkey_and_no_other_length_is(raw: bytes) -> None:
    text = b58encode(raw)
    converted = PubkeyChecker().check(pa.array([text]))
    assert (not problems(converted)) == (len(raw) == 32 and 32 <= len(text) <= 44)


@PROPERTY
@given(raw=st.binary(min_size=0, max_size=64))
def test_decoding_base58_gives_back_the_number_of_bytes_encoded(raw: bytes) -> None:
    """The reference every key check above is measured against: it must itself be right."""
    assert decoded_length(b58encode(raw)) == len(raw)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\xff" * 32, None),  # the largest 32-byte key
        (b"\x01" + bytes(31), None),
        (b"\x01" + bytes(32), "decodes to 33 bytes, expected 32"),  # the smallest 33-byte one
        (b"\xff" * 31, "decodes to 31 bytes, expected 32"),
        (bytes(32), None),  # 32 zero bytes: 32 ones, the shortest key
    ],
)
def test_the_keys_at_the_edges_of_32_bytes(raw: bytes, problem: str | None) -> None:
    assert pubkey_problem(b58encode(raw)) == problem
    assert decoded_length(b58encode(raw) + "0") is None  # not base58


@pytest.mark.parametrize(("value", "found"), [(12345, "int"), (None, "NoneType"), (b"1", "bytes")])
def test_a_key_that_is_not_text_is_named_by_its_type(value: object, found: str) -> None:
    assert pubkey_problem(value) == f"expected base58 text, found {found}"


# --- properties ----------------------------------------------------------------------------

UNIT_SCALE = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}  # per second


@PROPERTY
@given(
    ms=st.integers(min_value=-NOW_MS, max_value=NOW_MS),
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    fraction=st.integers(min_value=0, max_value=999_999),
    as_text=st.booleans(),
)
def test_any_epoch_in_any_unit_is_floored_exactly(
    ms: int, unit: str, fraction: int, as_text: bool
) -> None:
    per_ms = UNIT_SCALE[unit] // 1000 if unit != "s" else None
    raw = ms // 1000 if per_ms is None else ms * per_ms + fraction % per_ms
    expected = raw * 1000 if per_ms is None else raw // per_ms  # Python's // floors
    converted = epoch_ms(
        [str(raw)] if as_text else pa.array([raw], pa.int64()), TimestampRule(unit=unit)
    )
    assert converted.materialize() == [expected]
    assert problems(converted) == ({0: [OUT_OF_RANGE]} if expected < EARLIEST_MS else {})


@PROPERTY
@given(
    ms=st.integers(min_value=10**11, max_value=NOW_MS),  # auto tells units apart from 1973 on
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    as_text=st.booleans(),
)
def test_auto_unit_recognises_any_epoch_since_1973(ms: int, unit: str, as_text: bool) -> None:
    raw = ms * UNIT_SCALE[unit] // 1000
    expected = raw * 1000 // UNIT_SCALE[unit]
    column = [str(raw)] if as_text else pa.array([raw], pa.int64())
    assert good_values(epoch_ms(column)) == [expected]


MS_PER = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}
FAR_FUTURE_MS = 2**62  # a "now" that keeps the range check out of the way of exactness


def decimal_epoch_ms(value: Decimal, unit: str) -> int:
    """docs/mapping.md's rule, in exact decimal arithmetic: auto picks the unit by magnitude."""
    if unit == "auto":
        tiers = ((10**11, "s"), (10**14, "ms"), (10**17, "us"))
        unit = next((name for limit, name in tiers if abs(value) < limit), "ns")
    multiply, divide = MS_PER[unit]
    return math.floor(value * multiply / divide)


def expect_epochs(converted: Converted, expected: list[int], now_ms: int) -> None:
    """Rows in range map to exactly `expected`; rows out of range fail as out of range."""
    in_range = [EARLIEST_MS <= ms <= now_ms + FUTURE_SLACK_MS for ms in expected]
    found = problems(converted)
    assert found == {i: [OUT_OF_RANGE] for i, ok in enumerate(in_range) if not ok}
    values = converted.materialize()
    assert [v for v, ok in zip(values, in_range) if ok] == [
        e for e, ok in zip(expected, in_range) if ok
    ]


float_epochs = st.one_of(
    st.floats(min_value=0, max_value=2e18, allow_nan=False),
    st.integers(min_value=0, max_value=2**53).map(float),
    st.decimals(min_value=0, max_value=NOW_MS // 1000, places=3).map(float),  # s.mmm
    st.floats(min_value=-1e12, max_value=0, allow_nan=False),
)


@PROPERTY
@given(
    values=st.lists(st.one_of(float_epochs, st.none(), st.just(math.nan)), min_size=1, max_size=6),
    unit=st.sampled_from(["auto", "s", "ms", "us", "ns"]),
)
def test_float_epochs_are_their_shortest_decimal_exactly_in_every_unit(
    values: list[float | None], unit: str
) -> None:
    converted = epoch_ms(pa.array(values, pa.float64()), TimestampRule(unit=unit), FAR_FUTURE_MS)
    gaps = [v is None or math.isnan(v) for v in values]
    assert converted.missing.tolist() == gaps
    present = [i for i, gap in enumerate(gaps) if not gap]
    expected = [decimal_epoch_ms(Decimal(repr(values[i])), unit) for i in present]
    kept = Converted(
        lambda: [converted.materialize()[i] for i in present],
        converted.missing[present],
        [Problem(p.mask[present], p.reason) for p in converted.problems],
    )
    expect_epochs(kept, expected, FAR_FUTURE_MS)


@PROPERTY
@given(
    number=st.integers(min_value=-(2**53), max_value=2**53),
    unit=st.sampled_from(["auto", "s", "ms", "us", "ns"]),
)
def test_an_integral_float_within_2_53_maps_like_the_same_integer(number: int, unit: str) -> None:
    rule = TimestampRule(unit=unit)
    as_float = epoch_ms(pa.array([float(number)], pa.float64()), rule, FAR_FUTURE_MS)
    as_int = epoch_ms(pa.array([number], pa.int64()), rule, FAR_FUTURE_MS)
    assert as_float.materialize() == as_int.materialize()
    assert problems(as_float) == problems(as_int)


@PROPERTY
@given(
    text=st.from_regex(r"-?[0-9]{1,20}\.[0-9]{1,12}", fullmatch=True),
    unit=st.sampled_from(["auto", "s", "ms", "us", "ns"]),
)
def test_decimal_epoch_text_is_exact_in_every_unit(text: str, unit: str) -> None:
    converted = epoch_ms([text], TimestampRule(unit=unit), NOW_MS)
    expected = decimal_epoch_ms(Decimal(text), unit)
    expected = min(max(expected, -(2**63 - 1)), 2**63 - 1)
    expect_epochs(converted, [expected], NOW_MS)


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (1731596206.795, "s", INSTANT_MS),  # 1731596206.7949998 in binary: the digits count
        (1731596206.795, "auto", INSTANT_MS),
        (1731596206795.0, "ms", INSTANT_MS),
        (1731596206795.0, "auto", INSTANT_MS),
        (1731596206795999.0, "us", INSTANT_MS),
        (1731596206795999.0, "auto", INSTANT_MS),
        (1.731596206795e18, "ns", INSTANT_MS),
        (1.731596206795e18, "auto", INSTANT_MS),
        (1731596206.0001, "s", 1_731_596_206_000),
    ],
)
def test_float_epochs_of_the_issue_map_exactly(value: float, unit: str, expected: int) -> None:
    converted = epoch_ms(pa.array([value, None, math.nan], pa.float64()), TimestampRule(unit=unit))
    assert converted.materialize()[0] == expected
    assert converted.missing.tolist() == [False, True, True]
    assert problems(converted) == {}


def test_a_float32_epoch_is_its_own_shortest_digits() -> None:
    # float32 holds 1731596206 as 1731596160, whose shortest float32 digits are 1.7315962e9
    converted = epoch_ms(pa.array([1731596206.0, 1_000_000.0], pa.float32()), TimestampRule("s"))
    assert converted.materialize() == [1_731_596_200_000, 1_000_000_000]


def test_float_epochs_that_are_not_finite_or_meant_as_iso_fail() -> None:
    converted = epoch_ms(pa.array([math.inf, -math.inf, 1731596206795.0]))
    assert problems(converted) == {0: [NOT_FINITE], 1: [NOT_FINITE]}
    converted = epoch_ms(pa.array([1731596206795.0]), TimestampRule(unit="iso"))
    assert problems(converted) == {0: ["is a number, but the mapping's unit is iso (text)"]}


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
aware_datetimes = st.datetimes(
    min_value=dt.datetime(1971, 1, 2), max_value=dt.datetime(2029, 12, 31), timezones=offsets
)


@PROPERTY
@given(
    moments=st.lists(aware_datetimes, min_size=1, max_size=4),
    separator=st.sampled_from(["T", " "]),
    zulu=st.booleans(),
)
def test_iso_text_of_any_aware_datetime_is_the_exact_floored_instant(
    moments: list[dt.datetime], separator: str, zulu: bool
) -> None:
    texts = []
    for moment in moments:
        text = moment.isoformat(sep=separator)
        texts.append(text.replace("+00:00", "Z") if zulu else text)
    converted = epoch_ms(texts, TimestampRule(timezone="America/New_York"))
    assert good_values(converted) == [floor_ms(moment) for moment in moments], texts


@PROPERTY
@given(
    moments=st.lists(
        st.datetimes(min_value=dt.datetime(1971, 1, 2), max_value=dt.datetime(2029, 12, 31)),
        min_size=1,
        max_size=4,
    ),
    separator=st.sampled_from(["T", " "]),
    spoiler=st.sampled_from([None, "2024-02-30 09:15:00", "2024-1-5 10:00"]),
)
def test_naive_iso_text_in_utc_is_exact_whichever_parser_takes_the_chunk(
    moments: list[dt.datetime], separator: str, spoiler: str | None
) -> None:
    # Arrow parses a chunk it fully understands; one value beyond its grammar hands the whole
    # chunk to pandas. Both must give the same instants.
    texts = [moment.isoformat(sep=separator) for moment in moments]
    if spoiler is not None:
        texts.append(spoiler)
    converted = epoch_ms(texts, TimestampRule(timezone="UTC"))
    expected = [floor_ms(moment.replace(tzinfo=dt.timezone.utc)) for moment in moments]
    assert converted.materialize()[: len(moments)] == expected, texts
    assert not any(problems(converted).get(i) for i in range(len(moments)))


@PROPERTY
@given(st.lists(st.integers(min_value=-(2**53), max_value=2**53), min_size=1, max_size=5))
def test_any_integer_within_2_53_as_text_is_the_same_int(numbers: list[int]) -> None:
    values = good_values(to_number(pa.array([str(n) for n in numbers])))
    assert values == numbers
    assert all(type(v) is int for v in values)


@PROPERTY
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=5))
def test_any_finite_float_repr_is_the_same_float(numbers: list[float]) -> None:
    values = good_values(to_number(pa.array([repr(n) for n in numbers])))
    assert values == numbers
    assert all(type(v) is float for v in values)
    assert [math.copysign(1, v) for v in values] == [math.copysign(1, n) for n in numbers]


def _random_case(word: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(word, flips + [False] * 99))


@PROPERTY
@given(
    picks=st.lists(
        st.tuples(
            st.sampled_from(["true", "1", "yes", "false", "0", "no"]),
            st.lists(st.booleans(), max_size=5),
            st.sampled_from(["", " ", "\t"]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_default_boolean_words_round_trip_in_any_case(
    picks: list[tuple[str, list[bool], str]],
) -> None:
    texts = [pad + _random_case(word, flips) + pad for word, flips, pad in picks]
    expected = [word in ("true", "1", "yes") for word, _, _ in picks]
    assert good_values(to_boolean(pa.array(texts))) == expected


@PROPERTY
@given(
    words=st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8),
        min_size=2,
        max_size=8,
        unique=True,
    ),
    split=st.integers(min_value=1),
    flips=st.lists(st.booleans(), max_size=8),
)
def test_custom_boolean_words_round_trip_in_any_case(
    words: list[str], split: int, flips: list[bool]
) -> None:
    cut = 1 + split % (len(words) - 1)
    trues, falses = words[:cut], words[cut:]
    texts = [_random_case(word, flips) for word in words]
    converted = to_boolean(pa.array(texts), trues, [w.upper() for w in falses])
    assert good_values(converted) == [True] * len(trues) + [False] * len(falses)


# --- numbers written the local way (decimal / thousands) -----------------------------------

LOCAL_STYLES = [(",", "."), (",", " "), (",", None), (".", ","), (".", "'"), (",", "\u202f")]


@pytest.mark.parametrize(
    ("text", "decimal", "thousands", "expected"),
    [
        ("1.234,50", ",", ".", 1234.5),
        ("1.234", ",", ".", 1234),
        ("12,50", ",", None, 12.5),
        ("-1 234 567,125", ",", " ", -1234567.125),
        ("1,234.5", ".", ",", 1234.5),
        ("1'000'000", ".", "'", 1000000),
        ("1234,5", ",", ".", 1234.5),  # grouping is optional
        (",5", ",", None, 0.5),
        ("9.007.199.254.740.992", ",", ".", 2**53),
        ("1,5e3", ",", None, 1500.0),
    ],
)
def test_numbers_written_the_local_way_are_exact_and_integers_stay_int(
    text: str, decimal: str, thousands: str | None, expected: int | float
) -> None:
    [value] = good_values(to_number(pa.array([text]), decimal, thousands))
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "decimal", "thousands", "reason"),
    [
        ("1.234,50", ",", None, NOT_A_NUMBER),  # a thousands mark the mapping does not name
        ("1234.5", ",", None, NOT_A_NUMBER),  # the other decimal mark: never guessed
        ("1.23,5", ",", ".", NOT_A_NUMBER),  # groups of three only
        ("1.2345,5", ",", ".", NOT_A_NUMBER),
        (".234,5", ",", ".", NOT_A_NUMBER),
        ("1,2,3", ",", ".", NOT_A_NUMBER),
        ("1.234.567.890.123.456.789", ",", ".", BEYOND_2_53),
        ("9.007.199.254.740.993", ",", ".", BEYOND_2_53),
    ],
)
def test_local_numbers_written_another_way_fail(
    text: str, decimal: str, thousands: str | None, reason: str
) -> None:
    converted = to_number(pa.array(["1", text]), decimal, thousands)
    assert problems(converted) == {1: [reason]}


def test_local_marks_do_not_touch_number_columns() -> None:
    assert good_values(to_number(pa.array([1234, 5]), ",", ".")) == [1234, 5]
    assert good_values(to_number(pa.array([12.5]), ",", ".")) == [12.5]


def local_text(number: Decimal, decimal: str, thousands: str | None) -> str:
    """`number` as a person in that locale writes it: 1234567.5 -> 1.234.567,5."""
    sign, digits = ("-", str(-number)) if number < 0 else ("", str(number))
    whole, _, fraction = digits.partition(".")
    if thousands is not None:
        groups = [whole[max(i - 3, 0) : i] for i in range(len(whole), 0, -3)][::-1]
        whole = thousands.join(groups)
    return sign + whole + (decimal + fraction if fraction else "")


@PROPERTY
@given(
    number=st.decimals(min_value=-(10**12), max_value=10**12, places=3),
    style=st.sampled_from(LOCAL_STYLES),
    integral=st.booleans(),
)
def test_a_local_number_reads_as_the_same_number_written_plainly(
    number: Decimal, style: tuple[str, str | None], integral: bool
) -> None:
    if integral:
        number = number.to_integral_value()
    decimal, thousands = style
    local = local_text(number, decimal, thousands)
    [value] = good_values(to_number(pa.array([local]), decimal, thousands))
    [plain] = good_values(to_number(pa.array([str(number)])))
    assert value == plain and type(value) is type(plain), (local, str(number))
    assert (type(value) is int) == ("." not in str(number))


@PROPERTY
@given(
    whole=st.integers(min_value=10, max_value=10**12),
    after=st.sampled_from([1, 2, 4, 5, 7, 8]),
    style=st.sampled_from([s for s in LOCAL_STYLES if s[1] is not None]),
)
def test_a_thousands_mark_out_of_place_is_not_a_number(
    whole: int, after: int, style: tuple[str, str]
) -> None:
    decimal, thousands = style
    digits = str(whole)
    assume(after < len(digits))  # a mark with a group of digits that is not three after it
    text = digits[:-after] + thousands + digits[-after:]
    assert problems(to_number(pa.array([text]), decimal, thousands)) == {0: [NOT_A_NUMBER]}


# --- what the mutation run (docs/mutation.md) showed untested --------------------------------


def test_a_chunked_check_result_with_nulls_is_one_mask_with_nulls_false() -> None:
    chunked = pa.chunked_array([[True, None], [False, True]])
    assert true_mask(chunked).tolist() == [True, False, False, True]


def test_a_timestamp_column_with_a_missing_value_is_text_with_a_gap() -> None:
    column = pa.array([dt.datetime(2024, 3, 5, 14, 22, 31), None], pa.timestamp("s"))
    converted = to_string(column)
    assert converted.materialize() == ["2024-03-05T14:22:31", None]
    assert converted.missing.tolist() == [False, True]


def test_an_unsigned_integer_beyond_int64_is_beyond_2_53_too() -> None:
    converted = to_number(pa.array([2**64 - 1, 5], pa.uint64()))
    assert problems(converted) == {0: [BEYOND_2_53]}


def test_a_19_digit_integer_text_is_refused_as_beyond_2_53_not_a_crash() -> None:
    converted = to_number(pa.array(["9999999999999999999", "12"]))
    assert problems(converted) == {0: [BEYOND_2_53]}


def test_a_boolean_column_gives_no_numbers() -> None:
    converted = to_number(pa.array([True, None]))
    assert problems(converted) == {0: ["is a boolean, not a number"]}
    assert converted.materialize() == [None, None]


def test_scaled_numbers_keep_gaps_and_exact_digits_up_to_2_53() -> None:
    converted = to_number(pa.array([115, None, 2**53, 0.1]), scale=Decimal("1"))
    assert converted.missing.tolist() == [False, True, False, False]
    assert converted.materialize()[:3] == [115, None, 2**53]
    assert type(converted.materialize()[2]) is int
    tripled = to_number(pa.array([0.1]), scale=Decimal("3")).materialize()
    assert tripled == [0.3]  # the number's own digits times 3, not the double's 0.30000000000000004


def test_custom_words_apply_to_a_boolean_column_too() -> None:
    column = pa.array([True, False])
    assert problems(to_boolean(column, true_values=["yes"])) == {
        0: ["is not a boolean (expected one of yes, false, 0, no)"]
    }
    assert problems(to_boolean(column, false_values=["no"])) == {
        1: ["is not a boolean (expected one of true, 1, yes, no)"]
    }


def test_only_leading_ones_count_as_zero_bytes_in_a_key() -> None:
    keys = ["1" * 32, "X" * 32, "1" * 33, None]  # 32 zero bytes; 24 bytes; 33 bytes; missing
    converted = PubkeyChecker().check(pa.array(keys))
    assert problems(converted) == {
        1: ["is not a Solana public key"],
        2: ["is not a Solana public key"],
    }
    assert converted.missing.tolist() == [False, False, False, True]
