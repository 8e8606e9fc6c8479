"""What every reader hands on: chunks of one file's rows under the file's own row numbers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

DEFAULT_CHUNK_ROWS = 16_384
UNKNOWN_ROW = "its row number is unknown"
UNNAMED = "Unnamed: {position}"  # pandas' own name: what a notebook shows for the column


def named_header(header: list[str]) -> list[str]:
    """Column names with every empty one named: pandas writes its index column with an
    empty header, and pandas reads it back as `Unnamed: 0` (the 0-based position), so a
    mapping and a notebook call it the same. A name already taken gets `.1`, `.2`...,
    as pandas does with repeated names."""
    named = []
    for position, column in enumerate(header):
        name = column if column.strip() else UNNAMED.format(position=position)
        candidate, suffix = name, 1
        while not column.strip() and (candidate in header or candidate in named):
            candidate, suffix = f"{name}.{suffix}", suffix + 1
        named.append(candidate)
    return named


def is_unnamed(column: str) -> bool:
    """Whether `named_header` named this column (its header was empty)."""
    return bool(re.fullmatch(r"Unnamed: [0-9]+(\.[0-9]+)?", column))


# (the file's schema, one Parquet row group's metadata, the columns whose value is the same in
# every row of the file: its hive partition folders) -> True when these prove that the
# mapping's filter keeps none of the group's rows: it is then not read (see pushdown.py).
RowGroupTest = Callable[[pa.Schema, Any, Mapping[str, "str | None"]], bool]


@dataclass(frozen=True)
class BadLine:
    """A record that could not be read (ragged, not text in the file's encoding, not JSON...).

    `row` is its own number in the file, like any other row's; None only where the reader
    truly cannot know it (then `reason` says so).
    """

    text: str
    reason: str
    row: int | None = None
    what: str = "CSV line"  # what the record is, for people: "JSON line", "Excel row"...


@dataclass(frozen=True)
class Chunk:
    """A slice of one file: `rows[i]` is the row number of `table`'s i-th row.

    `source` names the file. `bad_lines` are the records among this chunk's that could not
    be read; they still have to be accounted for in the report. `skipped` are rows that were
    not read because the filter provably drops them all (a Parquet row group, see
    `RowGroupTest`); a chunk with skipped rows has no other rows. The numbers of a chunk's
    rows, bad lines and skipped rows are all above those of the chunks before it.
    """

    rows: np.ndarray
    table: pa.Table
    bad_lines: tuple[BadLine, ...] = ()
    source: str = ""
    skipped: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __len__(self) -> int:
        return self.table.num_rows


def numbered(
    first_row: int, table: pa.Table, bad_lines: tuple[BadLine, ...] = (), source: str = ""
) -> Chunk:
    """A chunk whose rows are numbered on from `first_row`, one after the other."""
    rows = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
    return Chunk(rows, table, bad_lines, source)


class ChunkReader:
    """What a Source and every FileReader share: `chunks`, with its defaults and the columns
    it reads settled in one place, so that a reader writes only how it reads them."""

    name: str
    columns: list[str]

    def chunks(
        self,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        columns: Sequence[str] | None = None,
        skip_group: RowGroupTest | None = None,
    ) -> Iterator[Chunk]:
        """Chunks of at most `chunk_rows` rows, of `columns` only (default: all). Formats
        without row groups ignore `skip_group`."""
        wanted = self.columns if columns is None else list(columns)
        return self.read_chunks(chunk_rows, wanted, skip_group)

    def read_chunks(
        self, chunk_rows: int, wanted: list[str], skip_group: RowGroupTest | None
    ) -> Iterator[Chunk]:
        """The chunks of `wanted` columns, in order: each reader's own way of reading."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.columns)} columns>"


class FileReader(ChunkReader):
    """One opened file: its columns, its row count if the format stores it, and its chunks.

    `name` is the file as people know it (the path given, or `s3://bucket/key`); `path` is
    what `filesystem` opens.
    """

    def __init__(
        self,
        filesystem: pafs.FileSystem,
        path: str,
        name: str,
        schema: pa.Schema,
        total_rows: int | None,
    ) -> None:
        self.filesystem = filesystem
        self.path = path
        self.name = name
        self.schema = schema
        self.total_rows = total_rows

    @property
    def columns(self) -> list[str]:  # type: ignore[override]
        return list(self.schema.names)
