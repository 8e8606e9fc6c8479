"""The mapping's filter: Arrow runs simple comparisons, and must agree with pandas on all."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backfill.errors import MappingError
from backfill.row_filter import RowFilter, compile_filter

WORDS = ["paid", "refunded", "Paid", "", "pending"]


def table_of(texts: list[str | None], numbers: list[int | None], reals: list[float | None]):
    return pa.table(
        {
            "status": pa.array(texts, pa.string()),
            "Order Status": pa.array(texts[::-1], pa.string()),
            "quantity": pa.array(numbers, pa.int64()),
            "total": pa.array(reals, pa.float64()),
            "paid": pa.array([i % 2 == 0 for i in range(len(texts))]),
        }
    )


def both_ways(expression: str, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    row_filter = RowFilter(expression, "map.yaml", "orders.parquet")
    rows = np.arange(table.num_rows)
    return row_filter.keep(table, rows), row_filter.keep_by_pandas(table, rows)


word = st.sampled_from(WORDS)
number = st.integers(min_value=-3, max_value=3)
comparison = st.one_of(
    st.builds(
        lambda column, op, value: f"{column} {op} {value!r}",
        st.sampled_from(["status", "`Order Status`"]),
        st.sampled_from(["==", "!="]),
        word,
    ),
    st.builds(lambda op, value: f"{value!r} {op} status", st.sampled_from(["==", "!="]), word),
    st.builds(
        lambda column, op, value: f"{column} {op} {value}",
        st.sampled_from(["quantity", "total"]),
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        st.one_of(number, st.sampled_from([1.5, -0.5])),
    ),
    st.builds(
        lambda column, op, values: f"{column} {op} {values!r}",
        st.sampled_from(["status", "quantity"]),
        st.sampled_from(["in", "not in"]),
        st.lists(word, max_size=3),
    ),
    st.just("paid"),
)
expressions = st.recursive(
    comparison,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
        st.builds(lambda a: f"~({a})", inner),
    ),
    max_leaves=4,
)


@settings(max_examples=300, deadline=None)
@given(
    expression=expressions,
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), word),
            st.one_of(st.none(), number),
            st.one_of(st.none(), st.sampled_from([math.nan, 1.5, -0.5, 0.0, 2.0])),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_arrow_and_pandas_keep_the_same_rows(
    expression: str, rows: list[tuple[str | None, int | None, float | None]]
) -> None:
    texts, numbers, reals = (list(column) for column in zip(*rows))
    table = table_of(texts, numbers, reals)
    by_arrow, by_pandas = both_ways(expression, table)
    assert by_arrow.tolist() == by_pandas.tolist(), expression


@pytest.mark.parametrize(
    "expression",
    [
        "status == 'paid'",
        "'paid' != status and quantity >= 2",
        "`Order Status` in ['paid', 'refunded'] or not paid",
        "total < -1.5",
    ],
)
def test_comparisons_of_columns_with_constants_run_without_pandas(expression: str) -> None:
    assert compile_filter(expression) is not None


@pytest.mark.parametrize(
    "expression",
    [
        "total.astype('float') > 10",
        "1 < quantity < 3",
        "status == other",
        "status.str.startswith('p')",
        "quantity + 1 > 2",
        "status == None",
    ],
)
def test_anything_else_is_left_to_pandas(expression: str) -> None:
    assert compile_filter(expression) is None


def test_a_column_whose_type_does_not_fit_is_left_to_pandas() -> None:
    # Text compared with a number: pandas decides (here, it refuses), not Arrow.
    table = pa.table({"total": pa.array(["5", "20"])})
    row_filter = RowFilter("total > 10", "map.yaml", "orders.csv")
    assert row_filter.compiled is not None
    with pytest.raises(MappingError, match=r"failed on rows 0-1 of orders\.csv"):
        row_filter.keep(table, np.arange(2))


def test_a_text_filter_on_a_csv_keeps_exactly_the_matching_rows() -> None:
    table = pa.table({"status": pa.array(["paid", None, "void", "paid", ""])})
    kept = RowFilter("status == 'paid'", "map.yaml", "orders.csv").keep(table, np.arange(5))
    assert kept.tolist() == [True, False, False, True, False]
