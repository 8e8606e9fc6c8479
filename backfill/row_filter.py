"""Which rows a mapping's `filter` keeps.

The filter is pandas query syntax, and pandas stays the judge of what it means. But nearly
every real filter compares columns with constants ("status == 'paid'"), and pandas needs a
DataFrame and an interpreter pass per chunk for that. Such filters are compiled once to Arrow
kernels, which give the same answer (nulls included) without pandas; anything else, and any
chunk whose column types do not fit the comparison, is evaluated by pandas as written.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from backfill.errors import MappingError
from backfill.mapping import BACKTICKED, filter_columns

ArrowMask = Callable[[pa.Table], pa.Array]


class _Unfit(Exception):
    """The compiled filter cannot judge this chunk (a column's type does not fit)."""


class _NotCompilable(Exception):
    """The expression is more than Arrow kernels can run: pandas evaluates it."""


class RowFilter:
    """A mapping's filter, ready to apply to chunk after chunk."""

    def __init__(self, expression: str | None, origin: str, source_name: str) -> None:
        self.expression = expression
        self.origin = origin
        self.source_name = source_name
        self.columns = filter_columns(expression) if expression else []
        self.compiled = compile_filter(expression) if expression else None

    def keep(self, table: pa.Table, rows: np.ndarray) -> np.ndarray:
        """True for each row the filter keeps."""
        if not self.expression or table.num_rows == 0:
            return np.ones(table.num_rows, dtype=bool)
        if self.compiled is not None:
            try:
                return _to_numpy(self.compiled(table))
            except (_Unfit, pa.ArrowException):  # e.g. 300 against an int8 column
                pass
        return self.keep_by_pandas(table, rows)

    def keep_by_pandas(self, table: pa.Table, rows: np.ndarray) -> np.ndarray:
        frame = table.select(self.columns).to_pandas()
        try:
            result = frame.eval(self.expression, engine="python")
        except Exception as exc:  # pandas raises many kinds; all mean the same to the user
            raise MappingError(
                f"{self.origin}: filter: {self.expression!r} failed on rows "
                f"{rows[0]}-{rows[-1]} of {self.source_name}: {exc}. Columns of a CSV are "
                "text: compare with quotes, or convert, e.g. total.astype('float') > 10."
            ) from None
        is_boolean = isinstance(result, pd.Series) and (
            result.dtype.kind == "b"
            or str(result.dtype) == "boolean"
            or (  # object holds booleans with None; pandas 3's text ("str") is object too
                result.dtype.kind == "O"
                and pd.api.types.infer_dtype(result, skipna=True) in ("boolean", "empty")
            )
        )
        if not is_boolean:
            raise MappingError(
                f"{self.origin}: filter: {self.expression!r} must be true or false for "
                f"each row; it gave {getattr(result, 'dtype', type(result).__name__)}."
            )
        return result.fillna(False).to_numpy(dtype=bool)


def _to_numpy(mask: pa.Array) -> np.ndarray:
    return mask.to_numpy(zero_copy_only=False).astype(bool, copy=False)


# --- compiling -----------------------------------------------------------------------------

# Comparison -> (Arrow kernel, what a missing value gives): pandas says NaN != x is True and
# every other comparison with NaN is False.
_COMPARISONS: dict[type[ast.cmpop], tuple[Callable[..., Any], bool]] = {
    ast.Eq: (pc.equal, False),
    ast.NotEq: (pc.not_equal, True),
    ast.Lt: (pc.less, False),
    ast.LtE: (pc.less_equal, False),
    ast.Gt: (pc.greater, False),
    ast.GtE: (pc.greater_equal, False),
}
_MIRRORED: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.Eq,
    ast.NotEq: ast.NotEq,
    ast.Lt: ast.Gt,
    ast.LtE: ast.GtE,
    ast.Gt: ast.Lt,
    ast.GtE: ast.LtE,
}


def compile_filter(expression: str) -> ArrowMask | None:
    """Arrow kernels for `expression`, or None when it is more than comparisons of columns
    with constants joined by and, or and not."""
    quoted: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        name = f"_backticked_{len(quoted)}_"
        quoted[name] = match.group(1)
        return name

    source = BACKTICKED.sub(placeholder, expression)
    try:
        tree = ast.parse(source, mode="eval")
        return _compile(tree.body, quoted)
    except (SyntaxError, _NotCompilable):
        return None


def _compile(node: ast.expr, quoted: dict[str, str]) -> ArrowMask:
    if isinstance(node, ast.BoolOp):
        parts = [_compile(value, quoted) for value in node.values]
        combine = pc.and_ if isinstance(node.op, ast.And) else pc.or_
        return lambda table: _fold(combine, [part(table) for part in parts])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
        inner = _compile(node.operand, quoted)
        return lambda table: pc.invert(inner(table))
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        return _compile_comparison(node.left, node.ops[0], node.comparators[0], quoted)
    column = _column_name(node, quoted)
    if column is not None:
        return lambda table: _boolean_column(table, column)
    raise _NotCompilable


def _fold(combine: Callable[..., Any], masks: list[pa.Array]) -> pa.Array:
    result = masks[0]
    for mask in masks[1:]:
        result = combine(result, mask)
    return result


def _compile_comparison(
    left: ast.expr, op: ast.cmpop, right: ast.expr, quoted: dict[str, str]
) -> ArrowMask:
    column = _column_name(left, quoted)
    if column is None and type(op) in _MIRRORED:  # 'paid' == status
        left, right, op = right, left, _MIRRORED[type(op)]()
        column = _column_name(left, quoted)
    if column is None:
        raise _NotCompilable
    if isinstance(op, (ast.In, ast.NotIn)):
        if not isinstance(right, (ast.List, ast.Tuple)):
            raise _NotCompilable
        values = [_constant(element) for element in right.elts]
        negate = isinstance(op, ast.NotIn)
        return lambda table: _membership(table, column, values, negate)
    if type(op) not in _COMPARISONS:
        raise _NotCompilable
    value = _constant(right)
    kernel, when_missing = _COMPARISONS[type(op)]
    if isinstance(value, str) and kernel not in (pc.equal, pc.not_equal):
        raise _NotCompilable  # pandas raises on text ordered against missing values
    return lambda table: pc.fill_null(
        kernel(_fitting_column(table, column, [value]), value), when_missing
    )


def _membership(table: pa.Table, column: str, values: list[Any], negate: bool) -> pa.Array:
    data = _fitting_column(table, column, values)
    found = pc.fill_null(pc.is_in(data, value_set=pa.array(values, type=data.type)), False)
    return pc.invert(found) if negate else found


def _column_name(node: ast.expr, quoted: dict[str, str]) -> str | None:
    if not isinstance(node, ast.Name) or node.id in ("True", "False", "None"):
        return None
    return quoted.get(node.id, node.id)


def _constant(node: ast.expr) -> str | int | float:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _constant(node.operand)
        if isinstance(value, str):
            raise _NotCompilable
        return -value
    if isinstance(node, ast.Constant) and type(node.value) in (str, int, float):
        return node.value
    raise _NotCompilable


def _fitting_column(table: pa.Table, column: str, values: list[Any]) -> pa.ChunkedArray:
    """The column, when its type compares with `values` as pandas would compare them."""
    data = table.column(column)
    kind = data.type
    if all(isinstance(value, str) for value in values):
        fits = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    else:
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        fits = numeric and all(isinstance(value, (int, float)) for value in values)
        fits = fits and all(abs(value) < 2**53 for value in values)  # exact either way
    if not fits:
        raise _Unfit
    return data


def _boolean_column(table: pa.Table, column: str) -> pa.ChunkedArray:
    data = table.column(column)
    if not pa.types.is_boolean(data.type) or data.null_count:
        raise _Unfit  # pandas turns a boolean column with gaps into objects: its rules apply
    return data
