"""One JSON line as Python's `json` reads it: the rules every JSON Lines path shares.

The block parser (`jsonl_blocks`) hands a block to Arrow and falls back to these, line by
line, for a block Arrow refuses; the head that decides the columns is read with them too.
So a line's fate (its columns, its kinds, its failure message) is decided in one place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from backfill.read.base import BadLine

WHAT = "JSON line"
Path = tuple[str, ...]  # a value's place in the nested object: ("customer", "wallet")
_KINDS = {str: "text", bool: "boolean", int: "integer", float: "float"}
_NAMES = {"integer": "integers", "float": "numbers", "boolean": "booleans", "text": "text"}


def parse_line(raw: bytes, number: int, encoding: str) -> dict[Path, Any] | BadLine | None:
    """The line's object flattened (nested objects as paths; lists as JSON text), a BadLine
    saying why it is not one, or None for a blank line."""
    if not raw.strip():
        return None
    try:
        parsed = json.loads(raw.decode(encoding))
    except UnicodeDecodeError as exc:
        text = raw.decode(encoding, "backslashreplace").rstrip("\r\n")
        return BadLine(text, f"not {encoding} text (byte {exc.start + 1})", number, what=WHAT)
    except json.JSONDecodeError as exc:
        text = raw.decode(encoding, "backslashreplace").rstrip("\r\n")
        reason = f"not JSON: {exc.msg} at character {exc.pos + 1}"
        return BadLine(text, reason, number, what=WHAT)
    if not isinstance(parsed, dict):
        text = raw.decode(encoding).rstrip("\r\n")
        reason = f"expected a JSON object ({{...}}); found {type(parsed).__name__}"
        return BadLine(text, reason, number, what=WHAT)
    return dict(_flatten(parsed, ()))


def _flatten(item: dict[str, Any], prefix: Path) -> Iterator[tuple[Path, Any]]:
    for key, value in item.items():
        path = (*prefix, key)
        if isinstance(value, dict):
            yield from _flatten(value, path)
        elif isinstance(value, list):
            yield path, json.dumps(value, ensure_ascii=False)
        else:
            yield path, value


def column_name(path: Path) -> str:
    """Nested keys become one column named by their dotted path: `customer.wallet`."""
    return ".".join(path)


def kind_of(value: Any) -> str:
    kind = _KINDS.get(type(value), "text")
    if kind == "integer" and not -(2**63) <= value < 2**63:
        return "text"  # beyond int64: read as its digits, so the mapping can say what it is
    return kind


def fits(value: Any, kind: pa.DataType) -> bool:
    """Whether a value read after the head has a place in its column without loss."""
    if value is None or pa.types.is_string(kind):
        return True
    if pa.types.is_floating(kind):  # any integer, as Arrow reads it into a float column
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    found = kind_of(value)
    return found == ("integer" if pa.types.is_integer(kind) else "boolean")


def misfit_reason(column: str, value: Any, kind: pa.DataType, head_lines: int) -> str:
    expected = "integers" if pa.types.is_integer(kind) else "booleans"
    if pa.types.is_floating(kind):
        expected = "numbers"
    return (
        f"key {column!r} holds {json.dumps(value, ensure_ascii=False)} "
        f"({_NAMES[kind_of(value)]}), but the file's first {head_lines:,} lines made it a "
        f"column of {expected}; the columns and their kinds are learned from those lines"
    )


def as_array(values: list[Any], kind: pa.DataType) -> pa.Array:
    """A text column holds each value that is not text as JSON (`12`, `12.5`, `true`), so the
    mapping reads it back exactly."""
    if pa.types.is_string(kind):
        return pa.array(
            [v if isinstance(v, str) or v is None else json.dumps(v) for v in values], kind
        )
    if pa.types.is_floating(kind):
        return pa.array([None if v is None else float(v) for v in values], kind)
    return pa.array(values, kind)
