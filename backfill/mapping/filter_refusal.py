"""The one line that says what a filter may not hold, with a hint for pandas' spellings.

Apart from the parser (filter_language.py): naming a refused construct (an attribute chain,
an operator, a call) and finding the hint for it is its own job, and the longest table.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from backfill.mapping.filter_tree import ALLOWED, FilterError

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


def refusal(node: ast.AST, text_of: Callable[[ast.AST], str]) -> FilterError:
    """One line naming what is not allowed, with a pandas-to-filter hint if there is one."""
    node, attributes = _innermost(node)
    text = text_of(node)
    if isinstance(node, ast.Call):
        construct = f"a call of {called(node) or 'a computed function'}()"
    elif isinstance(node, ast.Constant):
        construct = f"a {type(node.value).__name__} literal"
        if node.value is None:
            construct = "None (for a missing value write isna(column))"
    elif isinstance(node, (ast.BinOp, ast.UnaryOp)):
        construct = _operator_name(node)
    else:
        construct = _CONSTRUCTS.get(type(node), type(node).__name__)
    hint = next((_HINTS[name] for name in attributes if name in _HINTS), None)
    base = text_of(node.value) if isinstance(node, ast.Attribute) else "column"
    tail = f"; {hint.format(base)}" if hint else ""
    return FilterError(f"{construct} (`{short(text)}`) is not allowed{tail}; allowed: {ALLOWED}.")


def called(node: ast.Call) -> str | None:
    """The name of the function a call calls, None when it is computed (`x.f()`, `f()()`)."""
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


def short(text: str) -> str:
    """A filter on one line, cut to 80 characters: a message quotes it, not a page of it."""
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."
