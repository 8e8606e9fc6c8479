"""The mapping's `filter`: a small language, parsed and checked against an allow-list.

A mapping may come from someone else, so its filter must never run code. Python's `ast`
module is used only as a parser: nothing here compiles, evaluates or imports what it reads.
The tree is walked once, and every node must be one of the few kinds the language has
(comparisons, `in` lists, `and`/`or`/`not`, columns, literals and a short list of
functions); anything else is refused with one line naming the construct. What comes out is
a small tree of the classes below, which `row_filter` evaluates with Arrow kernels.

Grammar (docs/mapping.md, "The filter language", says the same for users)::

    filter     := filter 'or' filter | filter 'and' filter | 'not' filter | '(' filter ')'
                | value OP value | value ['not'] 'in' '[' literal, ... ']'
                | TEST '(' value [',' 'text'] ')' | column
    value      := column | literal | FUNCTION '(' value ')'
    OP         := '==' | '!=' | '<' | '<=' | '>' | '>='
    TEST       := isna | notna | startswith | endswith | contains
    FUNCTION   := lower | number
    column     := name | `any text but a backtick`
    literal    := 'text' | "text" | 12 | -1.5 | True | False | true | false
"""

from __future__ import annotations

import ast
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal as TypingLiteral

LiteralValue = str | int | float | bool
Kind = TypingLiteral["text", "number", "boolean"]

COMPARISONS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
TESTS = ("isna", "notna", "startswith", "endswith", "contains")  # true or false per row
TESTS_WITH_TEXT = ("startswith", "endswith", "contains")
FUNCTIONS = ("lower", "number")  # a value per row
BOOLEAN_WORDS = {"True": True, "False": False, "true": True, "false": False}
MAX_LENGTH = 100_000  # characters: room for an `in` list of thousands of SKUs
MAX_DEPTH = 60  # nested operators and calls
ALLOWED = (
    "comparisons (== != < <= > >=), in / not in [list of literals], and, or, not, "
    "parentheses, column names (`backticks` for other names), 'text', numbers, true/false, "
    "and the functions isna, notna, startswith, endswith, contains, lower, number"
)


class FilterError(ValueError):
    """The filter is not in the language; the message names the construct."""


# --- the tree ------------------------------------------------------------------------------


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


def filter_columns(expression: str) -> list[str]:
    """The distinct column names a filter reads."""
    return list(dict.fromkeys(column.name for column in columns_of(parse_filter(expression))))


# --- parsing -------------------------------------------------------------------------------


def parse_filter(expression: str) -> Predicate:
    """The filter as a checked tree; `FilterError` for anything outside the language."""
    if len(expression) > MAX_LENGTH:
        raise FilterError(f"is {len(expression):,} characters long; at most {MAX_LENGTH:,}.")
    source, quoted = _replace_backticks(expression)
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence": not the user's line
            warnings.simplefilter("ignore")
            tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise FilterError(
            f"{_short(expression)!r} is not a valid expression ({exc.msg}); allowed: {ALLOWED}."
        ) from None
    except (RecursionError, MemoryError):
        raise FilterError(f"is nested too deeply; at most {MAX_DEPTH} levels.") from None
    return _Walker(source.strip(), quoted).predicate(tree.body, 0)


def _replace_backticks(expression: str) -> tuple[str, dict[str, str]]:
    """`Order Date` becomes a name Python can parse; quoted text is left alone. `@name`
    (pandas' local variables) is refused here, since Python would read `@` as an operator."""
    prefix = "_c"
    while prefix in expression:
        prefix += "c"
    quoted: dict[str, str] = {}
    out: list[str] = []
    position = 0
    while position < len(expression):
        char = expression[position]
        if char in "'\"":
            end = _string_end(expression, position)
            out.append(expression[position:end])
            position = end
            continue
        if char == "`":
            end = expression.find("`", position + 1)
            if end < 0:
                raise FilterError("a backtick (`) is not closed; write `Column Name`.")
            name = expression[position + 1 : end]
            if not name:
                raise FilterError("`` names no column; write `Column Name`.")
            placeholder = f"{prefix}{len(quoted)}_"
            quoted[placeholder] = name
            out.append(placeholder)
            position = end + 1
            continue
        if char == "@":
            raise FilterError(
                f"`@` (pandas' local variables, or matrix products) is not allowed; "
                f"allowed: {ALLOWED}."
            )
        out.append(char)
        position += 1
    return "".join(out), quoted


def _string_end(text: str, start: int) -> int:
    """Where the quoted text starting at `start` ends (past its closing quote)."""
    quote = text[start] * 3 if text.startswith(text[start] * 3, start) else text[start]
    position = start + len(quote)
    while position < len(text):
        if text[position] == "\\":
            position += 2
            continue
        if text.startswith(quote, position):
            return position + len(quote)
        position += 1
    return len(text)  # unclosed: the parser says so


_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Slice: "slice",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "comprehension",
    ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string",
    ast.NamedExpr: "assignment (:=)",
    ast.Starred: "starred argument",
    ast.IfExp: "conditional expression",
    ast.Dict: "dict",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.BinOp: "arithmetic",
}
# pandas spellings people will bring, and what to write instead
_HINTS = {
    "astype": "to compare text as a number write number({0})",
    "str": "for text write startswith({0}, 'x'), endswith, contains or lower({0})",
    "startswith": "write startswith({0}, 'x')",
    "endswith": "write endswith({0}, 'x')",
    "contains": "write contains({0}, 'x')",
    "lower": "write lower({0})",
    "isna": "write isna({0})",
    "isnull": "write isna({0})",
    "notna": "write notna({0})",
    "notnull": "write notna({0})",
}


class _Walker:
    """Turns a parsed expression into the filter's tree, refusing whatever is not allowed."""

    def __init__(self, source: str, quoted: dict[str, str]) -> None:
        self.source = source
        self.quoted = quoted

    def predicate(self, node: ast.expr, depth: int) -> Predicate:
        depth = self._deeper(depth)
        text = self.text(node)
        if isinstance(node, ast.BoolOp):
            op: TypingLiteral["and", "or"] = "and" if isinstance(node.op, ast.And) else "or"
            operands = tuple(self.predicate(value, depth) for value in node.values)
            return Logic(op, operands, text)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return Not(self.predicate(node.operand, depth), text)
        if isinstance(node, ast.Compare):
            return self.comparison(node, depth)
        if isinstance(node, ast.Call) and _called(node) in TESTS:
            return self.check(node, depth)
        value = self.value(node, depth)
        if isinstance(value, Column):
            return Truth(value, text)
        what = "a constant" if isinstance(value, Constant) else "a value"
        raise FilterError(
            f"`{text}` is {what}, not a condition; compare it, e.g. status == 'paid'."
        )

    def comparison(self, node: ast.Compare, depth: int) -> Predicate:
        text = self.text(node)
        if len(node.ops) > 1:
            raise FilterError(
                f"chained comparisons (`{text}`) are not allowed; write a < b and b < c."
            )
        op, right = node.ops[0], node.comparators[0]
        left = self.value(node.left, depth)
        if isinstance(op, (ast.In, ast.NotIn)):
            return Membership(left, self.choices(right, text), isinstance(op, ast.NotIn), text)
        if type(op) not in COMPARISONS:  # `is`, `is not`
            word = "is not" if isinstance(op, ast.IsNot) else "is"
            raise FilterError(
                f"`{word}` (`{text}`) is not allowed; write == or !=, or isna(column)."
            )
        comparison = Comparison(COMPARISONS[type(op)], left, self.value(right, depth), text)
        _check_comparison(comparison)
        return comparison

    def choices(self, node: ast.expr, text: str) -> tuple[Constant, ...]:
        if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise FilterError(
                f"`{text}`: `in` takes a list of literals, e.g. status in ['paid', 'shipped']."
            )
        choices = tuple(self.literal(element) for element in node.elts)
        kinds = {choice.kind for choice in choices}
        if len(kinds) > 1:
            raise FilterError(
                f"`{text}` mixes {' and '.join(sorted(kinds))} in one list; use one kind."
            )
        return choices

    def check(self, node: ast.Call, depth: int) -> Check:
        name = _called(node)
        arguments = self.arguments(node, 2 if name in TESTS_WITH_TEXT else 1)
        pattern = None
        if name in TESTS_WITH_TEXT:
            literal = self.literal(arguments[1])
            if not isinstance(literal.value, str):
                raise FilterError(
                    f"`{self.text(node)}`: the second argument of {name}() must be 'text'."
                )
            pattern = literal.value
        return Check(name, self.value(arguments[0], depth), pattern, self.text(node))

    def value(self, node: ast.expr, depth: int) -> Value:
        depth = self._deeper(depth)
        if isinstance(node, ast.Name):
            # as written: Python folds identifiers (NFKC), so "ﬁeld" would become "field"
            written = ast.get_source_segment(self.source, node) or node.id
            if written in BOOLEAN_WORDS:
                return Constant(BOOLEAN_WORDS[written], written)
            return Column(self.quoted.get(node.id, written), self.text(node))
        if isinstance(node, ast.Call) and _called(node) in FUNCTIONS:
            [argument] = self.arguments(node, 1)
            function = Function(_called(node), self.value(argument, depth), self.text(node))
            _check_function(function)
            return function
        if isinstance(node, ast.Call) and _called(node) in TESTS:
            raise FilterError(
                f"`{self.text(node)}` is a condition; it cannot be compared or nested: "
                "join conditions with and, or, not."
            )
        return self.literal(node)

    def literal(self, node: ast.expr) -> Constant:
        text = self.text(node)
        sign = 1
        inner = node
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            sign = -1 if isinstance(node.op, ast.USub) else 1
            inner = node.operand
        if isinstance(inner, ast.Constant):
            value = inner.value
            if isinstance(value, bool) and inner is node:
                return Constant(value, text)
            if isinstance(value, int) and not isinstance(value, bool):
                if abs(value) >= 2**63:
                    raise FilterError(f"the number {text} is too large; at most 2^63 - 1.")
                return Constant(sign * value, text)
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise FilterError(f"the number {text} is not finite.")
                return Constant(sign * value, text)
            if isinstance(value, str) and inner is node:
                return Constant(value, text)
        if isinstance(node, ast.Name) and text in BOOLEAN_WORDS:
            return Constant(BOOLEAN_WORDS[text], text)
        raise self.refusal(node)

    def arguments(self, node: ast.Call, count: int) -> list[ast.expr]:
        name = _called(node)
        if node.keywords or len(node.args) != count:
            shape = f"{name}(column, 'text')" if count == 2 else f"{name}(column)"
            raise FilterError(f"`{self.text(node)}`: write {shape}.")
        for argument in node.args:
            if isinstance(argument, ast.Starred):
                raise self.refusal(argument)
        return list(node.args)

    def refusal(self, node: ast.AST) -> FilterError:
        """One line naming what is not allowed, with a pandas-to-filter hint if there is one."""
        node, attributes = _innermost(node)
        text = self.text(node)
        if isinstance(node, ast.Call):
            construct = f"a call of {_called(node) or 'a computed function'}()"
        elif isinstance(node, ast.Constant):
            construct = f"a {type(node.value).__name__} literal"
            if node.value is None:
                construct = "None (for a missing value write isna(column))"
        elif isinstance(node, (ast.BinOp, ast.UnaryOp)):
            construct = _operator_name(node)
        else:
            construct = _CONSTRUCTS.get(type(node), type(node).__name__)
        hint = next((_HINTS[name] for name in attributes if name in _HINTS), None)
        base = self.text(node.value) if isinstance(node, ast.Attribute) else "column"
        tail = f"; {hint.format(base)}" if hint else ""
        return FilterError(
            f"{construct} (`{_short(text)}`) is not allowed{tail}; allowed: {ALLOWED}."
        )

    def text(self, node: ast.AST) -> str:
        """The node as the user wrote it (backticks back in place)."""
        segment = ast.get_source_segment(self.source, node) or type(node).__name__
        for placeholder, name in self.quoted.items():
            segment = segment.replace(placeholder, f"`{name}`")
        return segment

    def _deeper(self, depth: int) -> int:
        if depth >= MAX_DEPTH:
            raise FilterError(f"is nested too deeply; at most {MAX_DEPTH} levels.")
        return depth + 1


def _called(node: ast.Call) -> str | None:
    return node.func.id if isinstance(node.func, ast.Name) else None


def _innermost(node: ast.AST) -> tuple[ast.AST, list[str]]:
    """In a chain such as `status.str.len().values[0:1].tofile(...)`, the first link
    (`status.str`) and every attribute name along the chain (for a hint)."""
    attributes: list[str] = []
    chain = node
    deepest = node
    while isinstance(chain, (ast.Attribute, ast.Subscript, ast.Call)):
        if isinstance(chain, ast.Attribute):
            attributes.append(chain.attr)
            deepest = chain
            chain = chain.value
        elif isinstance(chain, ast.Subscript):
            deepest = chain
            chain = chain.value
        elif isinstance(chain.func, (ast.Attribute, ast.Subscript, ast.Call)):
            chain = chain.func
        else:
            break
    return deepest, attributes[::-1]


def _operator_name(node: ast.BinOp | ast.UnaryOp) -> str:
    if isinstance(node.op, ast.BitAnd):
        return "`&` (write and)"
    if isinstance(node.op, ast.BitOr):
        return "`|` (write or)"
    if isinstance(node.op, ast.Invert):
        return "`~` (write not)"
    return "arithmetic"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


# --- what can be checked without the data --------------------------------------------------


def static_kind(value: Value) -> Kind | None:
    """The kind of a value when the mapping alone tells it (a column's depends on the data)."""
    if isinstance(value, Constant):
        return value.kind
    if isinstance(value, Function):
        return "number" if value.name == "number" else "text"
    return None


def _check_comparison(comparison: Comparison) -> None:
    left, right = comparison.left, comparison.right
    if isinstance(left, Constant) and isinstance(right, Constant):
        raise FilterError(f"`{comparison.text}` compares two constants; name a column.")
    kinds = (static_kind(left), static_kind(right))
    if None not in kinds and kinds[0] != kinds[1]:
        raise FilterError(
            f"`{comparison.text}` compares {kinds[0]} with {kinds[1]}; they are never equal."
        )
    if "boolean" in kinds and comparison.op not in ("==", "!="):
        raise FilterError(f"`{comparison.text}`: true/false compare only with == and !=.")


def _check_function(function: Function) -> None:
    kind = static_kind(function.argument)
    expected: Kind = "text"
    if kind is not None and kind != expected:
        raise FilterError(f"`{function.text}`: {function.name}() takes text or a column.")
