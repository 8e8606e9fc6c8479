"""The mapping's filter evaluated with Arrow: the documented semantics, against a reference
evaluator written in plain Python from the rules in docs/mapping.md."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from backfill.errors import MappingError
from backfill.mapping import filter_tree as tree
from backfill.mapping.filter_language import parse_filter
from backfill.mapping.row_filter import RowFilter

WORDS = ["paid", "refunded", "Paid", "", "pending", "pa", "é"]
NUMBER_TEXTS = ["5", "20", " 12 ", "-1.5", "1e3", "abc", "", "+3", ".5", "nan", "10"]


def table_of(rows: list[tuple[Any, ...]]) -> pa.Table:
    status, number_text, quantity, total, paid = (list(column) for column in zip(*rows))
    return pa.table(
        {
            "status": pa.array(status, pa.string()),
            "Order Status": pa.array(status[::-1], pa.string()),
            "amount": pa.array(number_text, pa.string()),
            "quantity": pa.array(quantity, pa.int64()),
            "total": pa.array(total, pa.float64()),
            "paid": pa.array(paid, pa.bool_()),
        }
    )


def kept(expression: str, table: pa.Table, source: str = "orders.parquet") -> list[bool]:
    row_filter = RowFilter(expression, "map.yaml", source)
    return row_filter.keep(table, np.arange(table.num_rows)).tolist()


# --- the reference: the rules of docs/mapping.md, row by row, in Python -------------------

_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def reference_value(node: tree.Value, row: dict[str, Any]) -> Any:
    if isinstance(node, tree.Column):
        return row[node.name]
    if isinstance(node, tree.Constant):
        return node.value
    value = reference_value(node.argument, row)
    if value is None:
        return None
    if node.name == "lower":
        return value.lower()
    if isinstance(value, str):
        text = value.strip()
        return float(text) if _NUMBER.fullmatch(text) else None
    return value


def reference(node: tree.Predicate, row: dict[str, Any]) -> bool:
    if isinstance(node, tree.Logic):
        results = [reference(operand, row) for operand in node.operands]
        return all(results) if node.op == "and" else any(results)
    if isinstance(node, tree.Not):
        return not reference(node.operand, row)
    if isinstance(node, tree.Truth):
        return row[node.column.name] is True
    if isinstance(node, tree.Comparison):
        left, right = reference_value(node.left, row), reference_value(node.right, row)
        if is_null(left) or is_null(right):
            return node.op == "!="
        return {
            "==": left == right,
            "!=": left != right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[node.op]
    if isinstance(node, tree.Membership):
        value = reference_value(node.value, row)
        if is_null(value):
            return node.negated
        return (value in [choice.value for choice in node.choices]) != node.negated
    assert isinstance(node, tree.Check)
    value = reference_value(node.value, row)
    if node.name in ("isna", "notna"):
        missing = is_null(value) or value == ""
        return missing if node.name == "isna" else not missing
    if value is None:
        return False
    assert node.pattern is not None
    if node.name == "startswith":
        return value.startswith(node.pattern)
    if node.name == "endswith":
        return value.endswith(node.pattern)
    return node.pattern in value


# --- generated filters ---------------------------------------------------------------------

word = st.sampled_from(WORDS)
number = st.one_of(st.integers(-3, 25), st.sampled_from([1.5, -0.5, 0.0, 1000.0, 0.5]))
operator = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
text_value = st.sampled_from(["status", "`Order Status`", "lower(status)", "amount"])
number_value = st.sampled_from(["quantity", "total", "number(amount)", "number(quantity)"])
any_value = st.one_of(text_value, number_value, st.just("paid"))
condition = st.one_of(
    st.builds(lambda v, op, w: f"{v} {op} {w!r}", text_value, operator, word),
    st.builds(lambda v, op, w: f"{w!r} {op} {v}", text_value, operator, word),
    st.builds(lambda v, op, n: f"{v} {op} {n!r}", number_value, operator, number),
    st.builds(lambda v, op, n: f"{n!r} {op} {v}", number_value, operator, number),
    st.builds(lambda a, op, b: f"{a} {op} {b}", number_value, operator, number_value),
    st.builds(lambda a, op, b: f"{a} {op} {b}", text_value, operator, text_value),
    st.builds(
        lambda v, neg, ws: f"{v} {'not in' if neg else 'in'} {ws!r}",
        text_value,
        st.booleans(),
        st.lists(word, max_size=3),
    ),
    st.builds(
        lambda v, neg, ns: f"{v} {'not in' if neg else 'in'} {ns!r}",
        number_value,
        st.booleans(),
        st.lists(number, max_size=3),
    ),
    st.builds(lambda f, v: f"{f}({v})", st.sampled_from(["isna", "notna"]), any_value),
    st.builds(
        lambda f, v, w: f"{f}({v}, {w!r})",
        st.sampled_from(["startswith", "endswith", "contains"]),
        text_value,
        word,
    ),
    st.sampled_from(["paid", "paid == True", "paid != false", "true == paid"]),
)
filters = st.recursive(
    condition,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"{a} or {b}", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
    ),
    max_leaves=5,
)
rows_of_table = st.lists(
    st.tuples(
        st.one_of(st.none(), word),
        st.one_of(st.none(), st.sampled_from(NUMBER_TEXTS)),
        st.one_of(st.none(), st.integers(-3, 25)),
        st.one_of(st.none(), st.sampled_from([math.nan, 1.5, -0.5, 0.0, 2.0, 20.0])),
        st.one_of(st.none(), st.booleans()),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=examples(400), deadline=None)
@given(expression=filters, rows=rows_of_table)
def test_arrow_keeps_exactly_the_rows_the_reference_rules_keep(
    expression: str, rows: list[tuple[Any, ...]]
) -> None:
    table = table_of(rows)
    predicate = parse_filter(expression)
    expected = [reference(predicate, row) for row in table.to_pylist()]
    assert kept(expression, table) == expected, expression


# --- the rules, one by one -----------------------------------------------------------------


def test_a_text_filter_on_a_csv_keeps_exactly_the_matching_rows() -> None:
    table = pa.table({"status": pa.array(["paid", None, "void", "paid", ""])})
    assert kept("status == 'paid'", table, "orders.csv") == [True, False, False, True, False]


def test_missing_values_fail_comparisons_except_not_equal_and_not_in() -> None:
    table = pa.table({"q": pa.array([1.0, None, math.nan])})
    assert kept("q == 1", table) == [True, False, False]
    assert kept("q != 1", table) == [False, True, True]
    assert kept("q < 5", table) == [True, False, False]
    assert kept("q in [1]", table) == [True, False, False]
    assert kept("q not in [1]", table) == [False, True, True]
    assert kept("not (q == 1)", table) == [False, True, True]


def test_isna_is_true_for_null_nan_and_empty_text() -> None:
    table = pa.table({"t": pa.array(["a", None, "", " "]), "n": pa.array([1.0, None, math.nan, 2])})
    assert kept("isna(t)", table) == [False, True, True, False]
    assert kept("notna(t)", table) == [True, False, False, True]
    assert kept("isna(n)", table) == [False, True, True, False]


def test_number_reads_text_as_a_number_and_anything_else_as_missing() -> None:
    table = pa.table({"total": pa.array(["9.99", " 10 ", "120.5", "N/A", "", None, "+11", "1e2"])})
    assert kept("number(total) > 10", table, "orders.csv") == [
        False,
        False,
        True,
        False,
        False,
        False,
        True,
        True,
    ]
    assert kept("isna(number(total))", table) == [False] * 3 + [True] * 3 + [False] * 2


def test_text_functions_look_into_text() -> None:
    table = pa.table({"sku": pa.array(["AB-1", "ab-2", "xAB", None])})
    assert kept("startswith(sku, 'AB')", table) == [True, False, False, False]
    assert kept("startswith(lower(sku), 'ab')", table) == [True, True, False, False]
    assert kept("endswith(sku, '2')", table) == [False, True, False, False]
    assert kept("contains(sku, 'AB')", table) == [True, False, True, False]
    assert kept("contains(sku, '.')", table) == [False] * 4  # a literal, not a pattern


def test_backticked_columns_and_boolean_literals_in_both_spellings() -> None:
    table = pa.table({"Order Status": ["paid", "void"], "true": [False, True], "ok": [True, None]})
    assert kept("`Order Status` == 'paid'", table) == [True, False]
    assert kept("`true` == true", table) == [False, True]
    assert kept("ok == True", table) == [True, False]
    assert kept("ok", table) == [True, False]
    assert kept("not ok", table) == [False, True]


def test_a_parquet_integer_column_compares_with_numbers_of_any_size() -> None:
    table = pa.table({"q": pa.array([1, 100, None], pa.int8())})
    assert kept("q < 300", table) == [True, True, False]
    assert kept("q >= 1.5", table) == [False, True, False]
    assert kept("q in [1, 2.5]", table) == [True, False, False]


def test_a_date_or_time_column_compares_with_iso_text() -> None:
    stamps = pa.array([0, 1_704_067_200_000_000, 1_704_070_800_000_000], pa.timestamp("us", "UTC"))
    table = pa.table({"at": stamps, "day": pa.array([0, 19723, 19724], pa.date32())})
    assert kept("at >= '2024-01-01'", table) == [False, True, True]
    assert kept("at > '2024-01-01T00:30:00Z'", table) == [False, False, True]
    assert kept("day == '2024-01-01'", table) == [False, True, False]
    assert kept("day in ['1970-01-01', '2024-01-02']", table) == [True, False, True]


def test_iso_text_without_an_offset_is_utc_for_a_column_with_a_time_zone() -> None:
    stamps = [0, 1_704_067_200_000, 1_704_070_800_000]  # 1970, 2024-01-01 00:00Z and 01:00Z
    table = pa.table({"at": pa.array(stamps, pa.timestamp("ms", "Europe/Berlin"))})
    assert kept("at >= '2024-01-01T00:30:00'", table) == [False, False, True]
    assert kept("at >= '2024-01-01T00:30:00+01:00'", table) == [False, True, True]


def test_a_dictionary_column_compares_as_its_values() -> None:
    table = pa.table({"status": pa.array(["paid", "void", None]).dictionary_encode()})
    assert kept("status == 'paid' or status in ['void']", table) == [True, True, False]


def test_a_column_without_any_value_is_missing_everywhere() -> None:
    table = pa.table({"c": pa.nulls(2)})
    assert kept("c == 'x'", table) == [False, False]
    assert kept("c != 3", table) == [True, True]
    assert kept("isna(c) and not c", table) == [True, True]


@pytest.mark.parametrize(
    ("expression", "column", "message"),
    [
        (
            "total > 10",
            pa.array(["5", "20"]),
            "map.yaml: filter: `total > 10` compares column 'total' (text in orders.csv) with "
            "10; to compare it as a number write number(total).",
        ),
        (
            "`total` in [1, 2]",
            pa.array(["5", "20"]),
            "map.yaml: filter: ``total` in [1, 2]` compares column 'total' (text in "
            "orders.csv) with a list of numbers; to compare it as a number write number(total).",
        ),
        (
            "total == '5'",
            pa.array([5, 20]),
            "map.yaml: filter: `total == '5'` compares column 'total' (a number in orders.csv) "
            "with '5'; write the value without quotes.",
        ),
        (
            "total",
            pa.array(["5", "20"]),
            "map.yaml: filter: `total` alone is a condition only for a true/false column; "
            "column 'total' (text in orders.csv) is text: compare it, e.g. total == 'paid'.",
        ),
        (
            "startswith(total, '5')",
            pa.array([5, 20]),
            "map.yaml: filter: `startswith(total, '5')`: startswith() looks into text; "
            "column 'total' (a number in orders.csv) is a number.",
        ),
        (
            "total < true",
            pa.array([True, False]),
            "map.yaml: filter: `total < true`: true/false compare only with == and !=.",
        ),
        (
            "total > 'soon'",
            pa.array([0], pa.timestamp("ms")),
            "map.yaml: filter: `total > 'soon'`: 'soon' is not a date or time like "
            "'2024-01-31' or '2024-01-31T12:00:00Z' for a column of type timestamp[ms].",
        ),
    ],
)
def test_a_comparison_that_does_not_fit_the_column_types_is_a_mapping_error(
    expression: str, column: pa.Array, message: str
) -> None:
    table = pa.table({"total": column})
    with pytest.raises(MappingError) as caught:
        kept(expression, table, "orders.csv")
    assert str(caught.value) == message


def test_the_types_are_checked_even_when_a_chunk_has_no_rows() -> None:
    with pytest.raises(MappingError, match="number\\(total\\)"):
        kept("total > 10", pa.table({"total": pa.array([], pa.string())}), "orders.csv")
