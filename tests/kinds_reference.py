"""The README's rule for a column's type from its values' kinds, written once more as the
reference of the readers' property tests (the readers' own is `backfill.read.kinds`)."""

from __future__ import annotations


def column_type_name(kinds: set[str]) -> str:
    if kinds == {"boolean"}:
        return "bool"
    if kinds == {"integer"}:
        return "int64"
    if kinds and kinds <= {"integer", "float"}:
        return "double"
    return "string"
