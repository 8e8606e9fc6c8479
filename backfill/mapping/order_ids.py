"""The mapping's `id`: the column, or columns, whose values together name one order.

An Amazon settlement report writes an item refunded on a second row under the same
`order-id`, told apart by `transaction-type`: `id: [order-id, transaction-type]` names each
row. One column's id is its value as text (as the ledger has always kept it); several
columns' id is a JSON list of their texts, `["114-3000003-5000003", "Refund"]`, which reads
well in the report and never makes two different rows one id (quotes and backslashes are
escaped). A row missing any part has no id.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

IdColumns = tuple[str, ...]


def id_label(columns: Sequence[str]) -> str:
    """The id's columns for a message: `column 'order_id'`, `columns 'a' + 'b'`."""
    if len(columns) == 1:
        return f"column {columns[0]!r}"
    return "columns " + " + ".join(repr(column) for column in columns)


def id_values(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    """Each row's id as text, null where a part is missing (null or empty)."""
    parts = [_text(table.column(column)) for column in columns]
    if len(parts) == 1:
        return parts[0]
    quoted = [
        pc.binary_join_element_wise('"', _escaped(part), '"', "") for part in parts
    ]  # a null part makes the whole id null
    inner = pc.binary_join_element_wise(*quoted, ", ")
    return pc.binary_join_element_wise("[", inner, "]", "")


def _text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if not pa.types.is_string(array.type):
        array = pc.cast(array, pa.string())
    empty = pc.equal(pc.utf8_length(array), 0)
    return pc.if_else(pc.fill_null(empty, True), pa.scalar(None, pa.string()), array)


def _escaped(text: pa.Array) -> pa.Array:
    for plain, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r")):
        text = pc.replace_substring(text, plain, escaped)
    return text
