"""How ONE file is read: a reader per format, opened from a pyarrow filesystem and a path.

A reader knows its file's columns (`schema`), its row count where the format stores one,
and yields `Chunk`s. Row numbers are the file's own: 0-based data records (the header is
not a record), so they do not depend on the chunk size, and they name a row everywhere
after this: in previews, the failure report, the journal and the sandbox's store.

What SOURCE names (a file, a directory...) and the order its files are read in is
`backfill.source`'s job; the filesystem is pyarrow's (`LocalFileSystem` for local files,
`S3FileSystem` and the like for object stores), so a reader never cares where bytes live.

CSV columns are read as text, never guessed: a `sku` of `00123` stays `00123`. Types come
later, from the mapping. Parquet columns keep the types the file declares.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from backfill.errors import SourceError

DEFAULT_CHUNK_ROWS = 16_384
PARQUET_BUFFER_BYTES = 1 << 20
MAX_CSV_BLOCK = 1 << 22  # values up to a few MB; Arrow reads up to 32 blocks ahead
FILE_FORMATS = ".csv, .csv.gz, .parquet"
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


@dataclass(frozen=True)
class BadLine:
    """A CSV line that could not be split into the header's columns, or was not UTF-8."""

    text: str
    reason: str


@dataclass(frozen=True)
class Chunk:
    """A slice of one file: `rows[i]` is the row number of `table`'s i-th row.

    `source` names the file the rows come from. `bad_lines` are lines met while reading
    this chunk that the parser set aside; they still have to be accounted for in the report.
    """

    rows: np.ndarray
    table: pa.Table
    bad_lines: tuple[BadLine, ...] = ()
    source: str = ""

    def __len__(self) -> int:
        return self.table.num_rows


def numbered(
    first_row: int, table: pa.Table, bad_lines: tuple[BadLine, ...] = (), source: str = ""
) -> Chunk:
    rows = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
    return Chunk(rows, table, bad_lines, source)


class FileReader:
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
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def chunks(
        self, chunk_rows: int = DEFAULT_CHUNK_ROWS, columns: Sequence[str] | None = None
    ) -> Iterator[Chunk]:
        """Chunks of at most `chunk_rows` rows, of `columns` only (default: all)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.columns)} columns>"


def format_of(name: str) -> str | None:
    """`csv` or `parquet` by the file's name, in any case; None when the name does not tell."""
    lowered = name.lower()
    if lowered.endswith(".parquet"):
        return "parquet"
    if lowered.endswith((".csv", ".csv.gz")):
        return "csv"
    return None


def open_file(
    filesystem: pafs.FileSystem,
    path: str,
    *,
    name: str | None = None,
    delimiter: str = ",",
) -> FileReader:
    """Open one file by its name's extension: the header or schema is read, no data yet."""
    shown = name if name is not None else path
    file_format = format_of(shown)
    if file_format == "parquet":
        return ParquetReader.open(filesystem, path, shown)
    if file_format == "csv":
        return CsvReader.open(filesystem, path, shown, delimiter)
    raise SourceError(
        f"{shown}: cannot tell the format from the name {Path(shown).name!r}; "
        f"expected {FILE_FORMATS}."
    )


def open_local_file(path: str | Path, *, delimiter: str = ",") -> FileReader:
    """A local file, named as given (relative paths stay relative in messages)."""
    return open_file(
        pafs.LocalFileSystem(), str(Path(path).resolve()), name=str(path), delimiter=delimiter
    )


# --- Parquet ---------------------------------------------------------------------------------


class ParquetReader(FileReader):
    """A Parquet file, read one row group at a time."""

    @classmethod
    def open(cls, filesystem: pafs.FileSystem, path: str, name: str) -> ParquetReader:
        try:
            with filesystem.open_input_file(path) as handle:
                meta = pq.read_metadata(handle)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{name}: not a readable Parquet file ({exc}).") from exc
        return cls(filesystem, path, name, meta.schema.to_arrow_schema(), meta.num_rows)

    def chunks(
        self, chunk_rows: int = DEFAULT_CHUNK_ROWS, columns: Sequence[str] | None = None
    ) -> Iterator[Chunk]:
        first_row = 0
        wanted = list(columns) if columns is not None else self.columns
        try:
            with self.filesystem.open_input_file(self.path) as handle:
                for batch in _parquet_batches(handle, chunk_rows, wanted):
                    yield numbered(first_row, pa.Table.from_batches([batch]), source=self.name)
                    first_row += batch.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{self.name}: cannot read row {first_row} onwards: {exc}") from exc


def _parquet_batches(
    handle: pa.NativeFile, chunk_rows: int, columns: list[str]
) -> Iterator[pa.RecordBatch]:
    """Batches one row group at a time, without pre-buffering: pyarrow's defaults keep
    buffers of the whole file alive, and memory would grow with its size."""
    reader = pq.ParquetFile(handle, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
    for group in range(reader.num_row_groups):
        yield from reader.iter_batches(batch_size=chunk_rows, row_groups=[group], columns=columns)


# --- CSV -------------------------------------------------------------------------------------


class CsvReader(FileReader):
    """A CSV file (optionally gzip-compressed) with a header row; every column read as text."""

    def __init__(
        self, filesystem: pafs.FileSystem, path: str, name: str, header: list[str], delimiter: str
    ) -> None:
        schema = pa.schema([(column, pa.string()) for column in header])
        super().__init__(filesystem, path, name, schema, None)
        self.delimiter = delimiter
        self._bad_lines: list[BadLine] = []
        self._skip_bad_lines = 0
        self._wanted: list[str] = header

    @classmethod
    def open(cls, filesystem: pafs.FileSystem, path: str, name: str, delimiter: str) -> CsvReader:
        if len(delimiter) != 1:
            raise SourceError(f"--delimiter must be one character; got {delimiter!r}.")
        header = _csv_header(filesystem, path, name, delimiter)
        return cls(filesystem, path, name, header, delimiter)

    def chunks(
        self, chunk_rows: int = DEFAULT_CHUNK_ROWS, columns: Sequence[str] | None = None
    ) -> Iterator[Chunk]:
        """Small blocks (Arrow reads ahead several of them in the background, so their size
        sets the memory), gathered into chunks of `chunk_rows` (which sets the speed)."""
        self._wanted = list(columns) if columns is not None else self.columns
        first_row = 0
        pending: list[pa.RecordBatch] = []
        bad_lines: list[BadLine] = []
        schema = pa.schema([self.schema.field(column) for column in self._wanted])
        for batch in self._batches(chunk_rows):
            schema = batch.schema
            pending.append(batch)
            bad_lines += self._bad_lines
            self._bad_lines = []
            table = pa.Table.from_batches(pending, schema)
            while table.num_rows >= chunk_rows:
                yield numbered(first_row, table.slice(0, chunk_rows), tuple(bad_lines), self.name)
                first_row, bad_lines = first_row + chunk_rows, []
                table = table.slice(chunk_rows)
            pending = table.to_batches()
        if pending or bad_lines:
            table = pa.Table.from_batches(pending, schema)
            yield numbered(first_row, table, tuple(bad_lines), self.name)

    def _batches(self, chunk_rows: int) -> Iterator[pa.RecordBatch]:
        """A value must fit in one block: on a longer one, read on with blocks 8x larger,
        from where the smaller blocks stopped."""
        block_size = min(max(chunk_rows * 32, 1 << 16), MAX_CSV_BLOCK)
        done = _CsvProgress()
        while True:
            try:
                yield from self._batches_from(block_size, done)
                return
            except SourceError as exc:
                if not isinstance(exc.__cause__, _ValueTooLong) or block_size >= MAX_CSV_BLOCK:
                    raise
                block_size *= 8
                self._bad_lines = []  # from the block that failed: read again, reported then

    def _batches_from(self, block_size: int, done: _CsvProgress) -> Iterator[pa.RecordBatch]:
        """Batches after the `done` ones; `done` counts what was handed on so far."""
        marks_before = _NotUtf8.count  # before opening: Arrow reads the first block at once
        self._skip_bad_lines = done.bad_lines
        reader = self._open_reader(block_size)
        if reader is None:  # the header and nothing else
            return
        to_skip = done.rows
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (OSError, pa.ArrowException) as exc:
                raise SourceError(
                    f"{self.name}: cannot read the CSV after data row {done.rows}: {_explain(exc)}"
                ) from _cause(exc)
            skipped = min(to_skip, batch.num_rows)
            batch, to_skip = batch.slice(skipped), to_skip - skipped
            done.rows += batch.num_rows
            done.bad_lines += len(self._bad_lines)
            if _NotUtf8.count != marks_before:  # only then: the check costs a full scan
                batch = self._set_aside_not_utf8(batch)
            yield batch

    def _stream(self) -> pa.NativeFile:
        return _open_stream(self.filesystem, self.path, self.name)

    def _open_reader(self, block_size: int) -> pacsv.CSVStreamingReader | None:
        try:
            return pacsv.open_csv(
                self._stream(),
                read_options=pacsv.ReadOptions(
                    block_size=block_size, use_threads=False, encoding=_NotUtf8.CODEC
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.delimiter,
                    newlines_in_values=True,
                    invalid_row_handler=self._skip_bad_line,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in self.columns},
                    include_columns=self._wanted,
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except (OSError, pa.ArrowException) as exc:
            if "Empty CSV file" in str(exc):  # Arrow's word for a header without a newline
                return None
            raise SourceError(f"{self.name}: cannot read the CSV: {_explain(exc)}") from _cause(exc)

    def _set_aside_not_utf8(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Lines with a byte that is not UTF-8 become bad lines, as ragged lines do."""
        reasons: dict[int, str] = {}
        for name, column in zip(batch.schema.names, batch.columns):
            found = pc.fill_null(pc.match_substring_regex(column, _NotUtf8.PATTERN), False)
            for position in np.flatnonzero(found.to_numpy(zero_copy_only=False)).tolist():
                reasons.setdefault(
                    position, f"column {name!r} is not UTF-8 text; save the file as UTF-8"
                )
        if not reasons:
            return batch
        for position, reason in sorted(reasons.items()):
            cells = [_NotUtf8.shown(column[position].as_py() or "") for column in batch.columns]
            buffer = io.StringIO()
            csv.writer(buffer, delimiter=self.delimiter, lineterminator="").writerow(cells)
            self._bad_lines.append(BadLine(text=buffer.getvalue(), reason=reason))
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[list(reasons)] = False
        return batch.filter(pa.array(keep))

    def _skip_bad_line(self, row: pacsv.InvalidRow) -> str:
        if self._skip_bad_lines:  # seen already, before the blocks grew
            self._skip_bad_lines -= 1
            return "skip"
        reason = f"expected {row.expected_columns} columns, found {row.actual_columns}"
        self._bad_lines.append(BadLine(text=_NotUtf8.shown(row.text or ""), reason=reason))
        return "skip"


def _open_stream(filesystem: pafs.FileSystem, path: str, name: str) -> pa.NativeFile:
    return filesystem.open_input_stream(path, compression=_compression(name))


def _csv_header(filesystem: pafs.FileSystem, path: str, name: str, delimiter: str) -> list[str]:
    """The header row, read with Python's csv module so quoting and a BOM are handled."""
    try:
        stream = _open_stream(filesystem, path, name)
        # Only the header must decode here: bytes further on are the data's business.
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
        header = next(csv.reader(text, delimiter=delimiter), None)
    except (OSError, pa.ArrowException, csv.Error) as exc:
        raise SourceError(f"{name}: cannot read the CSV header: {exc}") from exc
    if not header:
        raise SourceError(f"{name}: the file is empty; expected a header line of column names.")
    undecodable = [column for column in header if _UNDECODED.search(column) or "\0" in column]
    if undecodable:
        shown = (
            undecodable[0].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        )
        raise SourceError(
            f"{name}: the header is not UTF-8 text (found {shown!r}; UTF-16 or Latin-1?); "
            "save the file as UTF-8."
        )
    return header


class _NotUtf8:
    """A codec for Arrow's CSV reader: UTF-8, except that each byte that is not UTF-8 becomes
    a private-use character (U+F0000 + the byte). Arrow would otherwise stop the whole file
    at such a byte, even on a ragged line; this way only its line is set aside."""

    CODEC = "backfill-utf-8-marked"
    ERRORS = "backfill-mark-not-utf-8"
    BASE = 0xF0000  # Supplementary Private Use Area-A: no orders file holds these
    PATTERN = "[\U000f0000-\U000f00ff]"
    count = 0  # bytes marked so far, in any file: when it has not moved, there is none

    @staticmethod
    def mark(error: UnicodeError) -> tuple[str, int]:
        if not isinstance(error, UnicodeDecodeError):
            raise error
        _NotUtf8.count += error.end - error.start
        marked = "".join(
            chr(_NotUtf8.BASE + byte) for byte in error.object[error.start : error.end]
        )
        return marked, error.end

    @staticmethod
    def shown(text: str) -> str:
        """Marked bytes written as `\\xe9`, for people."""
        return "".join(
            f"\\x{ord(char) - _NotUtf8.BASE:02x}"
            if _NotUtf8.BASE <= ord(char) <= _NotUtf8.BASE + 0xFF
            else char
            for char in text
        )

    @staticmethod
    def find(name: str) -> codecs.CodecInfo | None:
        if name != _NotUtf8.CODEC.replace("-", "_"):  # lookup normalises - to _
            return None
        utf8 = codecs.lookup("utf-8")
        decoder = functools.partial(codecs.getincrementaldecoder("utf-8"), errors=_NotUtf8.ERRORS)
        return codecs.CodecInfo(
            utf8.encode, utf8.decode, incrementaldecoder=decoder, name=_NotUtf8.CODEC
        )


codecs.register_error(_NotUtf8.ERRORS, _NotUtf8.mark)
codecs.register(_NotUtf8.find)


@dataclass
class _CsvProgress:
    """Data rows and bad lines handed on so far, to resume from with larger blocks."""

    rows: int = 0
    bad_lines: int = 0


class _ValueTooLong(Exception):
    """A value longer than the block: Arrow calls it a "straddling object"."""


def _cause(exc: Exception) -> Exception:
    """What a SourceError is raised from: `_ValueTooLong` lets the reader grow its blocks."""
    return _ValueTooLong() if "straddling object" in str(exc) else exc


def _explain(exc: Exception) -> str:
    """Arrow's message, with a next step where Arrow's own hint cannot be followed."""
    if "straddling object" in str(exc):
        return (
            "a value of several megabytes, usually from a quote that is never closed; "
            "check the quotes in the lines that follow"
        )
    return str(exc)


def _compression(name: str) -> str | None:
    """gzip by the name in any case (`ORDERS.CSV.GZ`): Arrow's "detect" knows only `.gz`."""
    return "gzip" if name.lower().endswith(".gz") else None
