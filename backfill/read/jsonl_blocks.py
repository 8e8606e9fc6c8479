"""JSON Lines parsed a block of lines at a time: Arrow's JSON reader for the block, and
Python's `json`, line by line, only for a block Arrow refuses.

Arrow parses a block straight into columns, typed as the file's head decided (an explicit
schema: no guessing, so a text that looks like a date stays text). It refuses the whole
block when any line in it is not a JSON object, not UTF-8, or holds a value of another kind
than its column (text in a column of numbers, a list, an object where the head had a
value). That block is then read line by line with `jsonl_lines`: the broken line fails
alone under its own row with the message it always had, and a value that does not fit its
column fails its row, saying so. Keys the head did not have are not columns: both paths
leave them out.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from backfill.read.base import BadLine
from backfill.read.jsonl_lines import (
    WHAT,
    Path,
    as_array,
    column_name,
    fits,
    misfit_reason,
    parse_line,
)

BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class Column:
    """A column of the file: its dotted name, its place in the nested objects, its type."""

    name: str
    path: Path
    type: pa.DataType


@dataclass(frozen=True)
class Block:
    """Lines `first` to `first + count - 1` of the file, read: the rows that are records,
    their values, and the lines that could not be read."""

    rows: np.ndarray
    table: pa.Table
    bad_lines: tuple[BadLine, ...]


def nested_schema(columns: Sequence[Column]) -> pa.Schema | None:
    """The schema Arrow reads the objects with; None when the columns cannot be nested (a
    key that is an object in some lines and a value in others): then every block goes
    line by line."""
    tree: dict[str, Any] = {}
    for column in columns:
        node = tree
        for key in column.path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                return None
            node = child
        if column.path[-1] in node or column.name != column_name(column.path):
            return None
        node[column.path[-1]] = column.type
    return pa.schema(_fields(tree))


def _fields(tree: dict[str, Any]) -> list[pa.Field]:
    return [
        pa.field(key, pa.struct(_fields(value)) if isinstance(value, dict) else value)
        for key, value in tree.items()
    ]


class BlockParser:
    """Reads blocks of lines into `columns`, numbered from their first line."""

    def __init__(self, columns: Sequence[Column], encoding: str, head_lines: int) -> None:
        self.columns = list(columns)
        self.encoding = encoding
        self.head_lines = head_lines
        self._utf8 = codecs.lookup(encoding).name == "utf-8"
        schema = nested_schema(self.columns)
        self._options = (
            None
            if schema is None
            else pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        )
        self._schema = pa.schema([(c.name, c.type) for c in self.columns])

    def parse(self, first: int, lines: list[bytes]) -> Block:
        fast = self._arrow_block(first, lines)
        return fast if fast is not None else self._line_by_line(first, lines)

    def _arrow_block(self, first: int, lines: list[bytes]) -> Block | None:
        if self._options is None:
            return None
        data = b"\n".join(lines)
        if not self._utf8:
            try:
                data = data.decode(self.encoding).encode("utf-8")
            except UnicodeDecodeError:
                return None
        try:
            table = pajson.read_json(
                pa.BufferReader(data),
                read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1),
                parse_options=self._options,
            )
            if self._utf8:
                table.validate(full=True)  # Arrow takes bytes that are not UTF-8 into text
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
            return None
        if table.num_rows == len(lines):
            rows = np.arange(first, first + len(lines), dtype=np.int64)
        else:  # Arrow skips blank lines: they are no records but keep their place
            kept = [first + i for i, line in enumerate(lines) if line.strip()]
            if len(kept) != table.num_rows:
                return None
            rows = np.array(kept, dtype=np.int64)
        return Block(rows, self._flat(table), ())

    def _flat(self, table: pa.Table) -> pa.Table:
        while any(pa.types.is_struct(field.type) for field in table.schema):
            table = table.flatten()
        arrays = [table.column(column.name) for column in self.columns]
        return pa.Table.from_arrays(arrays, schema=self._schema)

    def _line_by_line(self, first: int, lines: list[bytes]) -> Block:
        rows: list[int] = []
        records: list[dict[str, Any]] = []
        bad: list[BadLine] = []
        for offset, raw in enumerate(lines):
            number = first + offset
            parsed = parse_line(raw, number, self.encoding)
            if parsed is None:
                continue
            if isinstance(parsed, BadLine):
                bad.append(parsed)
                continue
            record = {column_name(path): value for path, value in parsed.items()}
            problem = self._misfit(record)
            if problem is not None:
                text = raw.decode(self.encoding, "backslashreplace").rstrip("\r\n")
                bad.append(BadLine(text, problem, number, what=WHAT))
                continue
            rows.append(number)
            records.append(record)
        arrays = [as_array([r.get(c.name) for r in records], c.type) for c in self.columns]
        table = pa.Table.from_arrays(arrays, schema=self._schema)
        return Block(np.array(rows, dtype=np.int64), table, tuple(bad))

    def _misfit(self, record: dict[str, Any]) -> str | None:
        for column in self.columns:
            value = record.get(column.name)
            if not fits(value, column.type):
                return misfit_reason(column.name, value, column.type, self.head_lines)
        return None


def raw_blocks(stream: pa.NativeFile) -> Iterator[list[bytes]]:
    """The stream's lines (without their line breaks), about `BLOCK_BYTES` at a time."""
    rest = b""
    while block := stream.read(BLOCK_BYTES):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        if lines:
            yield lines
    if rest:
        yield [rest]
