"""The filter language's words and the tree a parsed filter becomes.

Apart from the parser (filter_language.py) so that what reads a filter (`row_filter` with
Arrow kernels, `pushdown` against Parquet statistics) depends on the tree alone, never on
Python's `ast`. Every node keeps its `text` as the user wrote it, for messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal as TypingLiteral

LiteralValue = str | int | float | bool
Kind = TypingLiteral["text", "number", "boolean"]

TESTS = ("isna", "notna", "startswith", "endswith", "contains")  # true or false per row
TESTS_WITH_TEXT = ("startswith", "endswith", "contains")
FUNCTIONS = ("lower", "number")  # a value per row
BOOLEAN_WORDS = {"True": True, "False": False, "true": True, "false": False}
ALLOWED = (
    "comparisons (== != < <= > >=), in / not in [list of literals], and, or, not, "
    "parentheses, column names (`backticks` for other names), 'text', numbers, true/false, "
    "and the functions isna, notna, startswith, endswith, contains, lower, number"
)


class FilterError(ValueError):
    """The filter is not in the language; the message names the construct."""


@dataclass(frozen=True)
class Column:
    name: str
    text: str


@dataclass(frozen=True)
class Constant:
    value: LiteralValue
    text: str

    @property
    def kind(self) -> Kind:
        return literal_kind(self.value)


@dataclass(frozen=True)
class Function:
    """`lower(value)` or `number(value)`."""

    name: str
    argument: Value
    text: str


Value = Column | Constant | Function


@dataclass(frozen=True)
class Comparison:
    op: str
    left: Value
    right: Value
    text: str


@dataclass(frozen=True)
class Membership:
    value: Value
    choices: tuple[Constant, ...]
    negated: bool
    text: str


@dataclass(frozen=True)
class Check:
    """`isna(v)`, `notna(v)`, `startswith(v, 'x')`, `endswith(v, 'x')`, `contains(v, 'x')`."""

    name: str
    value: Value
    pattern: str | None
    text: str


@dataclass(frozen=True)
class Truth:
    """A bare column: true where the (boolean) column is true."""

    column: Column
    text: str


@dataclass(frozen=True)
class Not:
    operand: Predicate
    text: str


@dataclass(frozen=True)
class Logic:
    op: TypingLiteral["and", "or"]
    operands: tuple[Predicate, ...]
    text: str


Predicate = Comparison | Membership | Check | Truth | Not | Logic


def literal_kind(value: LiteralValue) -> Kind:
    if isinstance(value, bool):
        return "boolean"
    return "text" if isinstance(value, str) else "number"


def columns_of(node: Predicate | Value) -> Iterator[Column]:
    """Every column the filter reads, in the order written (with repeats)."""
    if isinstance(node, Column):
        yield node
    elif isinstance(node, Function):
        yield from columns_of(node.argument)
    elif isinstance(node, Comparison):
        yield from columns_of(node.left)
        yield from columns_of(node.right)
    elif isinstance(node, (Membership, Check)):
        yield from columns_of(node.value)
    elif isinstance(node, Truth):
        yield node.column
    elif isinstance(node, Not):
        yield from columns_of(node.operand)
    elif isinstance(node, Logic):
        for operand in node.operands:
            yield from columns_of(operand)


def static_kind(value: Value) -> Kind | None:
    """The kind of a value when the mapping alone tells it (a column's depends on the data)."""
    if isinstance(value, Constant):
        return value.kind
    if isinstance(value, Function):
        return "number" if value.name == "number" else "text"
    return None
