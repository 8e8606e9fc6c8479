"""JSON Lines (.jsonl, .ndjson, optionally .gz): one JSON object per line, read in one pass.

The head of the file (its first `HEAD_BYTES`, about 15,000 orders) is read line by line with
Python's `json` to learn the columns and their kinds: a key of strings is text, of integers
integers, of numbers floats, of booleans booleans; one mixing kinds is text, each value
written as JSON (`12`, `12.5`, `true`), so the mapping reads it back exactly; lists are JSON
text. Nested objects become columns named by their dotted path (`customer.wallet`), which a
mapping names in backticks. A file that ends within its head is thus read by exactly the
rules of the whole file, and its row count is known.

The rest is read once, a block of lines at a time, by Arrow (`jsonl_blocks`); a block Arrow
refuses is read line by line, so a broken line still fails alone under its own row. After
the head, a key first seen is not a column (the mapping was checked against the head's
columns, so it cannot name one); a value that does not fit its column's kind (text in a
column of numbers) fails its row, naming the key, the value and the kind the head set.

Row `r` is the file's line `r + 1`; blank lines are no records but keep their place.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from backfill.errors import SourceError
from backfill.read.base import BadLine, Chunk, FileReader, RowGroupTest
from backfill.read.jsonl_blocks import Block, BlockParser, Column, raw_blocks
from backfill.read.jsonl_lines import Path, column_name, kind_of, parse_line
from backfill.read.kinds import column_type
from backfill.read.text_codec import check_encoding

HEAD_BYTES = 4 << 20


class JsonLinesReader(FileReader):
    """A JSON Lines file: its columns are the (flattened) keys of the objects in its head."""

    def __init__(
        self,
        filesystem: pafs.FileSystem,
        path: str,
        name: str,
        columns: list[Column],
        total_rows: int | None,
        encoding: str,
        head_lines: int,
    ) -> None:
        schema = pa.schema([(column.name, column.type) for column in columns])
        super().__init__(filesystem, path, name, schema, total_rows)
        self.encoding = encoding
        self.head_lines = head_lines
        self._columns = {column.name: column for column in columns}

    @classmethod
    def open(
        cls, filesystem: pafs.FileSystem, path: str, name: str, encoding: str | None = None
    ) -> JsonLinesReader:
        """Reads the head: the columns, their kinds, and the record count if the file ends
        within it."""
        chosen = check_encoding(encoding) if encoding is not None else "utf-8"
        kinds: dict[str, set[str]] = {}
        paths: dict[str, Path] = {}
        records = lines = 0
        complete = True
        for raw in _head_lines(filesystem, path, name):
            if raw is None:
                complete = False
                break
            parsed = parse_line(raw, lines, chosen)
            lines += 1
            if isinstance(parsed, BadLine):
                records += 1
            elif parsed is not None:
                records += 1
                _learn(parsed, kinds, paths)
        columns = [Column(c, paths[c], column_type(kind)) for c, kind in kinds.items()]
        total = records if complete else None
        return cls(filesystem, path, name, columns, total, chosen, lines)

    def read_chunks(
        self, chunk_rows: int, wanted: list[str], skip_group: RowGroupTest | None
    ) -> Iterator[Chunk]:
        parser = BlockParser([self._columns[c] for c in wanted], self.encoding, self.head_lines)
        gathered = _Gathered(pa.schema([self.schema.field(c) for c in wanted]), self.name)
        first = 0
        for lines in _blocks(self.filesystem, self.path, self.name):
            gathered.add(parser.parse(first, lines))
            first += len(lines)
            while gathered.num_rows >= chunk_rows:
                yield gathered.take(chunk_rows)
        if gathered.num_rows or gathered.bad_lines:
            yield gathered.take(gathered.num_rows)


def _learn(record: dict[Path, Any], kinds: dict[str, set[str]], paths: dict[str, Path]) -> None:
    for path, value in record.items():
        name = column_name(path)
        found = kinds.get(name)
        if found is None:
            found = kinds[name] = set()
            paths[name] = path
        if value is not None:
            found.add(kind_of(value))


def _head_lines(filesystem: pafs.FileSystem, path: str, name: str) -> Iterator[bytes | None]:
    """The lines of the file's first `HEAD_BYTES`, then None if the file goes on."""
    size = 0
    for block in _blocks(filesystem, path, name):
        for raw in block:
            if size >= HEAD_BYTES:
                yield None
                return
            size += len(raw) + 1
            yield raw


def _blocks(filesystem: pafs.FileSystem, path: str, name: str) -> Iterator[list[bytes]]:
    compression = "gzip" if name.lower().endswith(".gz") else None
    try:
        with filesystem.open_input_stream(path, compression=compression) as stream:
            yield from raw_blocks(stream)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{name}: cannot read the file: {exc}") from exc


class _Gathered:
    """Blocks waiting to become chunks of a given size; a bad line goes with the chunk that
    holds the rows before it, so chunks cover one stretch of line numbers after another."""

    def __init__(self, schema: pa.Schema, source: str) -> None:
        self.schema, self.source = schema, source
        self.parts: list[tuple[np.ndarray, pa.Table]] = []
        self.bad_lines: list[BadLine] = []
        self.num_rows = 0

    def add(self, block: Block) -> None:
        if len(block.rows):
            self.parts.append((block.rows, block.table))
            self.num_rows += len(block.rows)
        self.bad_lines.extend(block.bad_lines)

    def take(self, count: int) -> Chunk:
        rows: list[np.ndarray] = []
        tables: list[pa.Table] = []
        left = count
        while left and self.parts:
            numbers, table = self.parts[0]
            if len(numbers) <= left:
                self.parts.pop(0)
            else:
                self.parts[0] = (numbers[left:], table.slice(left))
                numbers, table = numbers[:left], table.slice(0, left)
            rows.append(numbers)
            tables.append(table)
            left -= len(numbers)
        self.num_rows -= count
        after = int(self.parts[0][0][0]) if self.parts else None
        lines = [line for line in self.bad_lines if after is None or (line.row or 0) < after]
        self.bad_lines = self.bad_lines[len(lines) :]
        table = pa.concat_tables(tables).combine_chunks() if tables else self.schema.empty_table()
        numbers = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        return Chunk(numbers, table, tuple(lines), self.source)
