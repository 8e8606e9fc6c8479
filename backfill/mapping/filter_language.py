"""The mapping's `filter`: a small language, parsed and checked against an allow-list.

A mapping may come from someone else, so its filter must never run code. Python's `ast`
module is used only as a parser: nothing here compiles, evaluates or imports what it reads.
The tree is walked once, and every node must be one of the few kinds the language has
(comparisons, `in` lists, `and`/`or`/`not`, columns, literals and a short list of
functions); anything else is refused with one line naming the construct. What comes out is
a small tree of `filter_tree`'s classes, which `row_filter` evaluates with Arrow kernels;
`filter_refusal` words the refusals.

Grammar (README.md, "The filter language", says the same for users)::

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
from typing import Literal as TypingLiteral

from backfill.mapping.filter_refusal import called, refusal, short
from backfill.mapping.filter_tree import (
    ALLOWED,
    BOOLEAN_WORDS,
    FUNCTIONS,
    TESTS,
    TESTS_WITH_TEXT,
    Check,
    Column,
    Comparison,
    Constant,
    FilterError,
    Function,
    Kind,
    Logic,
    Membership,
    Not,
    Predicate,
    Truth,
    Value,
    columns_of,
    static_kind,
)

COMPARISONS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
MAX_LENGTH = 100_000  # characters: room for an `in` list of thousands of SKUs
MAX_DEPTH = 60  # nested operators and calls


# --- parsing -------------------------------------------------------------------------------


def filter_columns(expression: str) -> list[str]:
    """The distinct column names a filter reads."""
    return list(dict.fromkeys(column.name for column in columns_of(parse_filter(expression))))


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
            f"{short(expression)!r} is not a valid expression ({exc.msg}); allowed: {ALLOWED}."
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
        if isinstance(node, ast.Call) and called(node) in TESTS:
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
        name = called(node)
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
        if isinstance(node, ast.Call) and called(node) in FUNCTIONS:
            [argument] = self.arguments(node, 1)
            function = Function(called(node), self.value(argument, depth), self.text(node))
            _check_function(function)
            return function
        if isinstance(node, ast.Call) and called(node) in TESTS:
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
        raise refusal(node, self.text)

    def arguments(self, node: ast.Call, count: int) -> list[ast.expr]:
        name = called(node)
        if node.keywords or len(node.args) != count:
            shape = f"{name}(column, 'text')" if count == 2 else f"{name}(column)"
            raise FilterError(f"`{self.text(node)}`: write {shape}.")
        for argument in node.args:
            if isinstance(argument, ast.Starred):
                raise refusal(argument, self.text)
        return list(node.args)

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


# --- what can be checked without the data --------------------------------------------------


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
