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

import pyarrow as pa
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
    "DIRECTORY_FORMATS",
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
    "local_text_note",
    "named_delimiter",
    "numbered",
    "open_file",
    "open_local_file",
    "tab_separated_text",
    "text_file_note",
]

DIRECTORY_FORMATS = ".csv, .csv.gz, .parquet, .xlsx, .jsonl, .ndjson (.gz), .tsv, .tab"
FILE_FORMATS = f"{DIRECTORY_FORMATS}, a tab-separated .txt"
TAB_SEPARATED = (".tsv", ".tab", ".tsv.gz", ".tab.gz")
TEXT_FILES = (".txt", ".txt.gz")  # read when their first line holds tabs (Amazon's reports)
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def format_of(name: str) -> str | None:
    """The format by the file's name, in any case; None when the name does not tell.
    "text" is a .txt file: a CSV when its first line holds tabs (`tab_separated_text`)."""
    lowered = name.lower()
    if lowered.endswith(TEXT_FILES):
        return "text"
    if lowered.endswith(TAB_SEPARATED):
        return "csv"
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
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    sampled: bool = False,
) -> FileReader:
    """Open one file by its name's extension: the header or schema is read, no data yet.

    `delimiter` (one character, or tab, comma, semicolon, pipe, or \\t as typed) is for CSV;
    None: a tab for .tsv, .tab and .txt, else a comma. `encoding` (any codec Python knows)
    is for text formats; None: UTF-8, or UTF-16 where a byte order mark says so. `sheet`
    is for workbooks; None: the first. `sampled`: opened for a sample, a workbook's columns
    learned from spread rows only (see `XlsxReader`)."""
    shown = name if name is not None else path
    file_format = format_of(shown)
    if file_format == "text":
        if not tab_separated_text(filesystem, path, shown):
            raise SourceError(
                f"{shown}: a .txt file is read when it is tab-separated (as Amazon's reports "
                "are), but its first line holds no tab; save it as .csv, or name its "
                "delimiter with --delimiter and rename it .csv."
            )
        file_format = "csv"
    if file_format == "parquet":
        return ParquetReader.open(filesystem, path, shown)
    if file_format == "jsonl":
        return JsonLinesReader.open(filesystem, path, shown, encoding)
    if file_format == "xlsx":
        return XlsxReader.open(filesystem, path, shown, sheet, sampled)
    if file_format == "csv":
        chosen = named_delimiter(delimiter) if delimiter is not None else _own_delimiter(shown)
        return CsvReader.open(filesystem, path, shown, chosen, encoding)
    raise SourceError(
        f"{shown}: cannot tell the format from the name {Path(shown).name!r}; "
        f"expected {FILE_FORMATS}."
    )


def named_delimiter(delimiter: str) -> str:
    """--delimiter as typed: one character, or a name (`tab`, `comma`, `semicolon`, `pipe`,
    or `\\t` as a shell passes '\\t' on), so that no one needs a shell's $'\\t'."""
    chosen = DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if len(chosen) != 1:
        names = ", ".join(name for name in DELIMITER_NAMES if name.isalpha())
        raise SourceError(
            f"--delimiter must be one character or one of {names} (or \\t); got {delimiter!r}."
        )
    return chosen


def _own_delimiter(name: str) -> str:
    """The delimiter a file's name implies: a tab for .tsv, .tab and .txt, else a comma."""
    return "\t" if format_of(name) == "text" or name.lower().endswith(TAB_SEPARATED) else ","


def tab_separated_text(filesystem: pafs.FileSystem, path: str, name: str) -> bool:
    """Whether a .txt file's first line holds a tab: then it is read as tab-separated."""
    compression = "gzip" if name.lower().endswith(".gz") else None
    try:
        with filesystem.open_input_stream(path, compression=compression) as stream:
            head = stream.read(TEXT_HEAD_BYTES)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{name}: cannot read it: {exc}") from None
    first_line = head.split(b"\n", 1)[0]
    return b"\t" in first_line or b"\t\x00" in first_line  # the latter: UTF-16


TEXT_HEAD_BYTES = 1 << 16


def text_file_note(name: str) -> str | None:
    """What to tell a user whose .txt file is read as tab-separated (None for other files)."""
    if format_of(name) != "text":
        return None
    return f"{name}: its first line holds tabs: read as tab-separated (--delimiter tab)."


def local_text_note(source: str) -> str | None:
    """`text_file_note` for a local .txt file that is tab-separated, else None."""
    path = Path(source)
    if "://" in source or format_of(path.name) != "text" or not path.is_file():
        return None
    tabs = tab_separated_text(pafs.LocalFileSystem(), str(path.resolve()), source)
    return text_file_note(source) if tabs else None


def open_local_file(
    path: str | Path,
    *,
    delimiter: str | None = None,
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
