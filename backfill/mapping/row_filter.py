"""Which rows a mapping's `filter` keeps: the filter language evaluated with Arrow kernels.

The expression is parsed and checked once (`filter_language`); here it is bound to the
types of the columns it reads, once per distinct set of types, and then run chunk after
chunk as Arrow compute calls. No user text ever reaches an interpreter.

Semantics (docs/mapping.md, "The filter language"):
- A missing value (null, NaN, or empty text) makes a comparison false, except `!=` and
  `not in`, which are true: a missing value differs from every value. `not`, `and` and `or`
  then work on plain true/false.
- Text compares with text, numbers with numbers, true/false with true/false; a date or time
  column compares with ISO-8601 text. Anything else (`total > 10` on a CSV, whose columns are
  text) is a `MappingError` naming the comparison, before any row of the chunk is used.
- `number(text)` reads decimal text (` 12`, `-1.5`, `1e3`) as a 64-bit float; text that is
  not a number is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backfill.errors import MappingError
from backfill.mapping import filter_tree as tree
from backfill.mapping.filter_language import parse_filter
from backfill.mapping.filter_values import (
    ArrowMask,
    Kind,
    as_text,
    common_number,
    kind_of,
    number_of,
    text_of,
    time_literal,
)

_COMPARE: dict[str, tuple[Callable[..., Any], bool]] = {  # kernel, what a missing value gives
    "==": (pc.equal, False),
    "!=": (pc.not_equal, True),
    "<": (pc.less, False),
    "<=": (pc.less_equal, False),
    ">": (pc.greater, False),
    ">=": (pc.greater_equal, False),
}


def parse_mapping_filter(expression: str, origin: str) -> tree.Predicate:
    """The filter's tree, or a `MappingError` naming the file and what is not allowed."""
    try:
        return parse_filter(expression)
    except tree.FilterError as exc:
        raise MappingError(f"{origin}: filter: {exc}") from None


class RowFilter:
    """A mapping's filter, ready to apply to chunk after chunk."""

    def __init__(self, expression: str | None, origin: str, source_name: str) -> None:
        self.expression = expression
        self.origin = origin
        self.source_name = source_name
        self.predicate = parse_mapping_filter(expression, origin) if expression else None
        self.columns = (
            list(dict.fromkeys(c.name for c in tree.columns_of(self.predicate)))
            if self.predicate
            else []
        )
        self._bound: dict[tuple[pa.DataType, ...], ArrowMask] = {}

    def keep(self, table: pa.Table, rows: np.ndarray) -> np.ndarray:
        """True for each row the filter keeps."""
        if self.predicate is None:
            return np.ones(table.num_rows, dtype=bool)
        evaluate = self.bind(table.schema)
        if table.num_rows == 0:
            return np.ones(0, dtype=bool)
        try:
            mask = evaluate(table)
        except pa.ArrowException as exc:
            raise MappingError(
                f"{self.origin}: filter: {self.expression!r} failed on rows "
                f"{rows[0]}-{rows[-1]} of {self.source_name}: {exc}"
            ) from None
        return _to_numpy(mask)

    def bind(self, schema: pa.Schema) -> ArrowMask:
        """The filter as Arrow calls for columns of these types; a `MappingError` when a
        comparison does not fit them."""
        types = tuple(schema.field(name).type for name in self.columns)
        if types not in self._bound:
            assert self.predicate is not None
            binder = _Binder(dict(zip(self.columns, types)), self.source_name)
            try:
                self._bound[types] = binder.predicate(self.predicate)
            except tree.FilterError as exc:
                raise MappingError(f"{self.origin}: filter: {exc}") from None
        return self._bound[types]


def _to_numpy(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return mask.to_numpy(zero_copy_only=False).astype(bool, copy=False)


_KIND_WORDS = {
    "text": "text",
    "number": "a number",
    "boolean": "true/false",
    "time": "a date or time",
    "null": "empty",
    "other": "neither text, number, true/false nor time",
}
_LIST_WORDS = {"text": "a list of text", "number": "a list of numbers", "boolean": "true/false"}


class _Bound:
    """A value bound to the data: its kind, its Arrow type, and how to compute it."""

    def __init__(
        self,
        kind: Kind,
        data_type: pa.DataType,
        compute: ArrowMask,
        what: str,
        constant: Any = None,
    ) -> None:
        self.kind = kind
        self.type = data_type
        self.compute = compute
        self.what = what  # for messages: "column 'total' (text in orders.csv)"
        self.constant = constant  # a literal's value, None for anything computed


class _Binder:
    """Turns the filter's tree into Arrow calls for known column types."""

    def __init__(self, types: dict[str, pa.DataType], source_name: str) -> None:
        self.types = types
        self.source_name = source_name

    def predicate(self, node: tree.Predicate) -> ArrowMask:
        if isinstance(node, tree.Logic):
            parts = [self.predicate(operand) for operand in node.operands]
            combine = pc.and_ if node.op == "and" else pc.or_
            return lambda table: _fold(combine, [part(table) for part in parts])
        if isinstance(node, tree.Not):
            inner = self.predicate(node.operand)
            return lambda table: pc.invert(inner(table))
        if isinstance(node, tree.Comparison):
            return self.comparison(node)
        if isinstance(node, tree.Membership):
            return self.membership(node)
        if isinstance(node, tree.Check):
            return self.check(node)
        return self.truth(node)

    def value(self, node: tree.Value) -> _Bound:
        if isinstance(node, tree.Column):
            data_type = self.types[node.name]
            kind = kind_of(data_type)
            name = node.name
            what = f"column {name!r} ({_KIND_WORDS[kind]} in {self.source_name})"
            if pa.types.is_dictionary(data_type):
                value_type = data_type.value_type
                return _Bound(kind, value_type, lambda t: pc.cast(t.column(name), value_type), what)
            return _Bound(kind, data_type, lambda t: t.column(name), what)
        if isinstance(node, tree.Constant):
            scalar = pa.scalar(node.value)
            return _Bound(node.kind, scalar.type, lambda t: scalar, node.text, node.value)
        return self.function(node)

    def function(self, node: tree.Function) -> _Bound:
        argument = self.value(node.argument)
        compute = argument.compute
        if argument.kind not in ("text", "null") and not (
            node.name == "number" and argument.kind == "number"
        ):
            raise tree.FilterError(
                f"`{node.text}`: {node.name}() takes text; {argument.what} is "
                f"{_KIND_WORDS[argument.kind]}."
            )
        if node.name == "lower":
            return _Bound(
                "text", pa.string(), lambda t: pc.utf8_lower(as_text(compute(t))), node.text
            )
        if argument.kind == "number":
            return _Bound("number", argument.type, compute, node.text)
        return _Bound("number", pa.float64(), lambda t: number_of(compute(t)), node.text)

    def comparison(self, node: tree.Comparison) -> ArrowMask:
        left, right = self.value(node.left), self.value(node.right)
        left, right = _fit(left, right, node.text), _fit(right, left, node.text)
        if left.kind != right.kind and "null" not in (left.kind, right.kind):
            raise tree.FilterError(_mismatch(node.text, left, right))
        if node.op not in ("==", "!=") and "boolean" in (left.kind, right.kind):
            raise tree.FilterError(f"`{node.text}`: true/false compare only with == and !=.")
        if "other" in (left.kind, right.kind):
            raise tree.FilterError(f"`{node.text}`: {_other(left, right).what} cannot be compared.")
        kernel, when_missing = _COMPARE[node.op]
        compute_left, compute_right = left.compute, right.compute
        null_side = left.kind == "null" or right.kind == "null"
        if null_side:
            return lambda table: pa.array(np.full(table.num_rows, when_missing))
        return lambda table: pc.fill_null(
            kernel(compute_left(table), compute_right(table)), when_missing
        )

    def membership(self, node: tree.Membership) -> ArrowMask:
        value = self.value(node.value)
        negated = node.negated
        if value.kind == "null" or not node.choices:
            return lambda table: pa.array(np.full(table.num_rows, negated))
        kinds = {choice.kind for choice in node.choices}
        if value.kind == "time" and kinds == {"text"}:
            choices = [time_literal(c.value, value.type, node.text) for c in node.choices]
            value_set = pa.array(choices, value.type)
        elif kinds != {value.kind}:
            [kind] = kinds
            listed = _Bound(kind, pa.null(), _none, _LIST_WORDS[kind])
            raise tree.FilterError(_mismatch(node.text, value, listed))
        else:
            value_set = pa.array([choice.value for choice in node.choices])
        compute = value.compute
        if value.kind == "number":
            compute, value_set = common_number(compute, value.type, value_set)
        elif value.kind == "text":
            value_set = value_set.cast(pa.string())
            compute = text_of(compute, value.type)

        def member(table: pa.Table) -> Any:
            found = pc.fill_null(pc.is_in(compute(table), value_set=value_set), False)
            return pc.invert(found) if negated else found

        return member

    def check(self, node: tree.Check) -> ArrowMask:
        value = self.value(node.value)
        compute = value.compute
        if node.name in ("isna", "notna"):
            is_text = value.kind == "text"
            negate = node.name == "notna"

            def missing(table: pa.Table) -> Any:
                data = compute(table)
                result = pc.is_null(data, nan_is_null=True)
                if is_text:
                    result = pc.or_(result, pc.fill_null(pc.equal(pc.utf8_length(data), 0), True))
                return pc.invert(result) if negate else result

            return missing
        refusal = (
            f"`{node.text}`: {node.name}() looks into text; {value.what} is "
            f"{_KIND_WORDS[value.kind]}."
        )
        if _all_missing(value, "text", refusal):
            return _keeps_none
        kernel = {
            "startswith": pc.starts_with,
            "endswith": pc.ends_with,
            "contains": pc.match_substring,
        }[node.name]
        pattern = node.pattern
        return lambda table: pc.fill_null(kernel(compute(table), pattern=pattern), False)

    def truth(self, node: tree.Truth) -> ArrowMask:
        value = self.value(node.column)
        refusal = (
            f"`{node.text}` alone is a condition only for a true/false column; "
            f"{value.what} is {_KIND_WORDS[value.kind]}: compare it, e.g. "
            f"{node.text} == 'paid'."
        )
        if _all_missing(value, "boolean", refusal):
            return _keeps_none
        compute = value.compute
        return lambda table: pc.fill_null(compute(table), False)


def _fold(combine: Callable[..., Any], masks: list[Any]) -> Any:
    result = masks[0]
    for mask in masks[1:]:
        result = combine(result, mask)
    return result


def _all_missing(value: _Bound, wanted: Kind, refusal: str) -> bool:
    """True when `value` has no value in any row (a test of it keeps nothing); a
    `tree.FilterError` saying `refusal` when it is neither that nor of the `wanted` kind."""
    if value.kind == "null":
        return True
    if value.kind != wanted:
        raise tree.FilterError(refusal)
    return False


def _keeps_none(table: pa.Table) -> pa.Array:
    """What a test of a column with no value at all gives: no row is kept."""
    return pa.array(np.zeros(table.num_rows, dtype=bool))


def _none(table: pa.Table) -> None:
    return None


def _fit(bound: _Bound, other: _Bound, text: str) -> _Bound:
    """A text literal facing a date or time column becomes that column's type."""
    if bound.kind == "text" and other.kind == "time" and bound.constant is not None:
        scalar = pa.scalar(time_literal(bound.constant, other.type, text), other.type)
        return _Bound("time", other.type, lambda t: scalar, bound.what, bound.constant)
    return bound


def _mismatch(text: str, left: _Bound, right: _Bound) -> str:
    message = f"`{text}` compares {left.what} with {right.what}"
    for one, two in ((left, right), (right, left)):
        if one.kind == "text" and two.kind == "number" and one.what.startswith("column"):
            column = one.what.split("'")[1]
            name = column if column.isidentifier() else f"`{column}`"
            return f"{message}; to compare it as a number write number({name})."
        if one.kind in ("number", "boolean") and two.kind == "text":
            return f"{message}; write the value without quotes."
    return f"{message}; they are never equal."


def _other(left: _Bound, right: _Bound) -> _Bound:
    return left if left.kind == "other" else right
