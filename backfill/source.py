"""What SOURCE names, and the Source that reads its files one at a time, in sorted order.

Today a SOURCE is one file (any format `backfill.formats` reads) or a directory of Parquet
files. How one file is read (CSV, Parquet...) is `backfill.formats`' job; this module finds
the files, checks that they agree on their columns, and chains their chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from backfill.errors import SourceError
from backfill.formats import (
    DEFAULT_CHUNK_ROWS,
    FILE_FORMATS,
    BadLine,
    Chunk,
    CsvReader,
    FileReader,
    ParquetReader,
    format_of,
    numbered,
    open_local_file,
)

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "SUPPORTED_FORMATS",
    "BadLine",
    "Chunk",
    "CsvReader",
    "FileReader",
    "ParquetReader",
    "Source",
    "numbered",
    "read_source",
]

SUPPORTED_FORMATS = f"{FILE_FORMATS}, or a directory of .parquet files"


class Source:
    """An opened SOURCE: its files' readers, their shared columns, the total size if known."""

    def __init__(self, path: Path, files: list[FileReader]) -> None:
        self.path = path
        self.files = files
        self.schema: pa.Schema = files[0].schema if files else pa.schema([])
        self.columns: list[str] = list(self.schema.names)
        counts = [file.total_rows for file in files]
        self.total_rows: int | None = (
            None if any(count is None for count in counts) else sum(c or 0 for c in counts)
        )

    @property
    def name(self) -> str:
        return str(self.path)

    def chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Chunk]:
        """Each file's chunks in turn. A directory's row numbers continue across its files,
        under the directory's name, as long as the journal knows rows by number alone."""
        if len(self.files) == 1:
            yield from self.files[0].chunks(chunk_rows, self.columns)
            return
        first_row = 0
        for file in self.files:
            records = 0
            for chunk in file.chunks(chunk_rows, self.columns):
                lines = tuple(
                    replace(line, row=None if line.row is None else line.row + first_row)
                    for line in chunk.bad_lines
                )
                yield Chunk(chunk.rows + first_row, chunk.table, lines, self.name)
                records += len(chunk) + len(lines)
            first_row += records

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.columns)} columns>"


def read_source(
    path: str | Path,
    *,
    delimiter: str = ",",
    encoding: str | None = None,
    sheet: str | None = None,
) -> Source:
    """Open what `path` names: the header or schema of each file is read, no data yet."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory.")
    if path.is_dir():
        return _parquet_directory(path)
    if format_of(path.name) is None:
        raise SourceError(
            f"{path}: cannot tell the format from the name {path.name!r}; "
            f"expected {SUPPORTED_FORMATS}."
        )
    reader = open_local_file(path, delimiter=delimiter, encoding=encoding, sheet=sheet)
    return Source(path, [reader])


def _parquet_directory(path: Path) -> Source:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".parquet")
    if not files:
        raise SourceError(f"{path}: the directory holds no .parquet files.")
    readers = [open_local_file(file) for file in files]
    _check_same_columns(readers)
    return Source(path, readers)


def _check_same_columns(readers: list[FileReader]) -> None:
    first = readers[0]
    for reader in readers[1:]:
        if set(reader.columns) != set(first.columns):
            missing = sorted(set(first.columns) - set(reader.columns))
            extra = sorted(set(reader.columns) - set(first.columns))
            raise SourceError(
                f"{reader.name}: its columns differ from {Path(first.name).name}'s "
                f"(missing {missing}, extra {extra}); every file of a directory "
                "must have the same columns."
            )
