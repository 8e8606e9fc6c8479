"""The type of a column from the kinds of values it holds: one rule for every format that
learns its columns' types from the values (JSON Lines, .xlsx)."""

from __future__ import annotations

import pyarrow as pa


def column_type(kinds: set[str]) -> pa.DataType:
    """One kind keeps it (boolean, integer, float); integers and floats make floats; any
    other mix, and a column with no value at all, is text."""
    if kinds == {"boolean"}:
        return pa.bool_()
    if kinds == {"integer"}:
        return pa.int64()
    if kinds and kinds <= {"integer", "float"}:
        return pa.float64()
    return pa.string()
