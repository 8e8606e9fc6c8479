"""The mapping's filter pushed down to Parquet: a row group none of whose rows can pass is
not read.

A group is ruled out only when its footer's statistics (min, max, null count) prove it, for
the filter exactly as `row_filter` evaluates it: comparisons of a column with a literal
(`==`, `<`, `<=`, `>`, `>=`), `in [...]`, and `and`/`or` of those, on text columns with text
literals and number columns with numbers (integer columns with integer literals only, as
Arrow would otherwise compare them as floats). Anything else (`!=`, `not`, functions, tests,
dates, booleans, decimals, nested columns, a group without statistics) proves nothing, and
the group is read and filtered as usual. A missing value never passes these comparisons, so
a group whose values are all missing is ruled out by any of them. A hive partition folder
(`status=refunded/`) is a text column with one value in every row of its files: a filter on
it rules out all their groups.

The rows of a group ruled out still count as filtered, under their own numbers: the footer
knows each group's row count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from backfill.mapping import filter_tree as tree
from backfill.mapping.filter_language import parse_filter
from backfill.read.formats import RowGroupTest

_FLIPPED = {"==": "==", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_EXACT_FLOAT = 2**53  # integer literals up to this compare with floats as Arrow does
_NONE_PASS: dict[str, Callable[[Any, Any, Any], bool]] = {  # (low, high, literal) -> no value
    "==": lambda low, high, value: value < low or value > high,
    "<": lambda low, high, value: low >= value,
    "<=": lambda low, high, value: low > value,
    ">": lambda low, high, value: high <= value,
    ">=": lambda low, high, value: high < value,
}


class _Range:
    """What a row group's statistics say of one column's values."""

    def __init__(self, data_type: pa.DataType, stats: Any, num_rows: int) -> None:
        self.type = data_type
        self.all_missing = bool(
            stats is not None and stats.has_null_count and stats.null_count == num_rows
        )
        self.known, self.low, self.high = False, None, None
        if stats is not None and stats.has_min_max:
            try:
                self.low, self.high = stats.min, stats.max
                self.known = True
            except (ValueError, TypeError, pa.ArrowException):  # e.g. text cut mid-character
                pass

    @classmethod
    def constant(cls, value: str | None) -> _Range:
        """A text column with one value in every row (a hive partition folder's)."""
        column = cls(pa.string(), None, 0)
        column.all_missing = value is None
        column.known, column.low, column.high = value is not None, value, value
        return column

    def rules_out(self, op: str, literal: tree.Constant) -> bool:
        """No value of the column compares `op` with the literal."""
        if not _comparable(self.type, literal.value):
            return False
        if self.all_missing:
            return True
        if not self.known or not _comparable(self.type, self.low, self.high):
            return False
        return _NONE_PASS[op](self.low, self.high, literal.value)


def group_test(expression: str | None) -> RowGroupTest | None:
    """A test for `ParquetReader.chunks`, or None when the filter is one it cannot use."""
    if not expression:
        return None
    predicate = parse_filter(expression)
    if not _usable(predicate):
        return None

    literals = list(_literals(predicate))
    names = {column.name for column in tree.columns_of(predicate)}

    def none_pass(
        schema: pa.Schema, group: pq.RowGroupMetaData, constants: Mapping[str, str | None]
    ) -> bool:
        if any(pa.types.is_nested(field.type) for field in schema):
            return False  # then the group's column chunks are not one per field
        if _may_fail(literals, [schema.field(name).type for name in names if name in schema.names]):
            return False
        ranges = {name: _Range.constant(value) for name, value in constants.items()}
        for index, field in enumerate(schema):
            if index < group.num_columns and group.column(index).path_in_schema == field.name:
                stats = group.column(index).statistics
                ranges[field.name] = _Range(field.type, stats, group.num_rows)
        return _rules_out(predicate, ranges)

    return none_pass


def _may_fail(literals: list[Any], types: list[pa.DataType]) -> bool:
    """Whether evaluating the filter could fail on some values (Arrow's checked casts: a
    large integer against a float): a group ruled out unread would hide that error."""
    types = [t.value_type if pa.types.is_dictionary(t) else t for t in types]
    if any(type(v) is int and abs(v) > _EXACT_FLOAT for v in literals):
        return True
    if any(pa.types.is_uint64(t) for t in types):
        return True
    has_float = any(type(v) is float for v in literals)
    return has_float and any(pa.types.is_integer(t) for t in types)


def _literals(node: tree.Predicate | tree.Value) -> Iterator[Any]:
    if isinstance(node, tree.Constant):
        yield node.value
    elif isinstance(node, tree.Function):
        yield from _literals(node.argument)
    elif isinstance(node, tree.Comparison):
        yield from _literals(node.left)
        yield from _literals(node.right)
    elif isinstance(node, tree.Membership):
        yield from _literals(node.value)
        yield from (choice.value for choice in node.choices)
    elif isinstance(node, tree.Not):
        yield from _literals(node.operand)
    elif isinstance(node, tree.Logic):
        for operand in node.operands:
            yield from _literals(operand)


def _usable(node: tree.Predicate) -> bool:
    if isinstance(node, tree.Logic):
        return any(_usable(operand) for operand in node.operands)
    return isinstance(node, (tree.Comparison, tree.Membership))


def _rules_out(node: tree.Predicate, ranges: dict[str, _Range]) -> bool:
    if isinstance(node, tree.Logic):
        proofs = (_rules_out(operand, ranges) for operand in node.operands)
        return any(proofs) if node.op == "and" else all(proofs)
    if isinstance(node, tree.Comparison):
        return _comparison(node, ranges)
    if (
        isinstance(node, tree.Membership)
        and not node.negated
        and isinstance(node.value, tree.Column)
    ):
        column = ranges.get(node.value.name)
        return column is not None and all(column.rules_out("==", c) for c in node.choices)
    return False


def _comparison(node: tree.Comparison, ranges: dict[str, _Range]) -> bool:
    if node.op not in _NONE_PASS:
        return False
    if isinstance(node.left, tree.Column) and isinstance(node.right, tree.Constant):
        name, op, literal = node.left.name, node.op, node.right
    elif isinstance(node.left, tree.Constant) and isinstance(node.right, tree.Column):
        name, op, literal = node.right.name, _FLIPPED[node.op], node.left
    else:
        return False
    column = ranges.get(name)
    return column is not None and column.rules_out(op, literal)


def _comparable(data_type: pa.DataType, *values: Any) -> bool:
    """Whether Python's order of these values is Arrow's order for this column type."""
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return all(isinstance(value, str) for value in values)  # code points: UTF-8's order
    if pa.types.is_integer(data_type):
        return all(type(value) is int for value in values)
    if pa.types.is_float32(data_type) or pa.types.is_float64(data_type):
        return all(
            type(value) is float or (type(value) is int and abs(value) <= _EXACT_FLOAT)
            for value in values
        )
    return False
