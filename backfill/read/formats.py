"""How ONE file is read: a reader per format, opened from a pyarrow filesystem and a path.

A reader knows its file's columns (`schema`), its row count where the format stores one,
and yields `Chunk`s. Row numbers are the file's own: the 0-based data record, counting
every record, readable or not (a CSV header is not a record; a value with line breaks is
one record). A record that cannot be read becomes a `BadLine` under its own number, and
the rows after it keep theirs. So a row number names the same record in previews, the
failure report, the journal and the sandbox's store, whatever the chunk size.

What SOURCE names (a file, a directory...) and the order its files are read in is
`backfill.read.source`'s job. The filesystem is pyarrow's (`LocalFileSystem` for local files,
`S3FileSystem` and the like for object stores), so a reader never cares where bytes live.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs

from backfill.errors import SourceError
from backfill.read.base import (
    DEFAULT_CHUNK_ROWS,
    BadLine,
    Chunk,
    ChunkReader,
    FileReader,
    RowGroupTest,
    numbered,
)
from backfill.read.csv_reader import CsvReader
from backfill.read.jsonl_reader import JsonLinesReader
from backfill.read.parquet_reader import ParquetReader
from backfill.read.xlsx_reader import XlsxReader

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "FILE_FORMATS",
    "BadLine",
    "Chunk",
    "ChunkReader",
    "CsvReader",
    "FileReader",
    "JsonLinesReader",
    "ParquetReader",
    "RowGroupTest",
    "XlsxReader",
    "format_of",
    "numbered",
    "open_file",
    "open_local_file",
]

FILE_FORMATS = ".csv, .csv.gz, .parquet, .xlsx, .jsonl, .ndjson (.gz)"


def format_of(name: str) -> str | None:
    """The format by the file's name, in any case; None when the name does not tell."""
    lowered = name.lower()
    if lowered.endswith(".parquet"):
        return "parquet"
    if lowered.endswith(".xlsx"):
        return "xlsx"
    if lowered.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        return "jsonl"
    if lowered.endswith((".csv", ".csv.gz")):
        return "csv"
    return None


def open_file(
    filesystem: pafs.FileSystem,
    path: str,
    *,
    name: str | None = None,
    delimiter: str = ",",
    encoding: str | None = None,
    sheet: str | None = None,
    sampled: bool = False,
) -> FileReader:
    """Open one file by its name's extension: the header or schema is read, no data yet.

    `encoding` (any codec Python knows) is for text formats; None: UTF-8, or UTF-16 where a
    byte order mark says so. `sheet` is for workbooks; None: the first. `sampled`: opened
    for a sample, a workbook's columns learned from spread rows only (see `XlsxReader`)."""
    shown = name if name is not None else path
    file_format = format_of(shown)
    if file_format == "parquet":
        return ParquetReader.open(filesystem, path, shown)
    if file_format == "jsonl":
        return JsonLinesReader.open(filesystem, path, shown, encoding)
    if file_format == "xlsx":
        return XlsxReader.open(filesystem, path, shown, sheet, sampled)
    if file_format == "csv":
        return CsvReader.open(filesystem, path, shown, delimiter, encoding)
    raise SourceError(
        f"{shown}: cannot tell the format from the name {Path(shown).name!r}; "
        f"expected {FILE_FORMATS}."
    )


def open_local_file(
    path: str | Path,
    *,
    delimiter: str = ",",
    encoding: str | None = None,
    sheet: str | None = None,
    sampled: bool = False,
) -> FileReader:
    """A local file, named as given (relative paths stay relative in messages)."""
    return open_file(
        pafs.LocalFileSystem(),
        str(Path(path).resolve()),
        name=str(path),
        delimiter=delimiter,
        encoding=encoding,
        sheet=sheet,
        sampled=sampled,
    )
