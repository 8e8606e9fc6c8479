"""Orders files as a stream of chunks, each row tagged with a stable row number.

Row numbers are 0-based data rows counted across chunks (the header is not a row). They
name a row everywhere after this: in previews, the failure report, the journal and the
sandbox's store, so they must not depend on the chunk size.

CSV columns are read as text, never guessed: a `sku` of `00123` stays `00123`. Types come
later, from the mapping. Parquet columns keep the types the file declares.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from backfill.errors import SourceError

DEFAULT_CHUNK_ROWS = 16_384
PARQUET_BUFFER_BYTES = 1 << 20
MAX_CSV_BLOCK = 1 << 22  # values up to a few MB; Arrow reads up to 32 blocks ahead
SUPPORTED_FORMATS = ".csv, .csv.gz, .parquet, or a directory of .parquet files"
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


@dataclass(frozen=True)
class BadLine:
    """A CSV line that could not be split into the header's columns, or was not UTF-8."""

    text: str
    reason: str


@dataclass(frozen=True)
class Chunk:
    """A slice of the source: `rows[i]` is the row number of `table`'s i-th row.

    `bad_lines` are CSV lines met while reading this chunk that have no row number
    (the parser skipped them); they still have to be accounted for in the report.
    """

    rows: np.ndarray
    table: pa.Table
    bad_lines: tuple[BadLine, ...] = ()

    def __len__(self) -> int:
        return self.table.num_rows


class Source:
    """An opened orders file: its columns, its size if known, and its chunks."""

    def __init__(self, path: Path, schema: pa.Schema, total_rows: int | None) -> None:
        self.path = path
        self.schema = schema
        self.columns: list[str] = list(schema.names)
        self.total_rows = total_rows

    @property
    def name(self) -> str:
        return str(self.path)

    def chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Chunk]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.columns)} columns>"


def read_source(path: str | Path, *, delimiter: str = ",") -> Source:
    """Open `path` by its extension; the header or schema is read, no data yet."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory.")
    if path.is_dir():
        return ParquetSource.open_dir(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet":
        return ParquetSource.open_files(path, [path])
    if path.suffix.lower() == ".csv" or suffixes == ".csv.gz":
        return CsvSource.open(path, delimiter)
    raise SourceError(
        f"{path}: cannot tell the format from the name {path.name!r}; expected {SUPPORTED_FORMATS}."
    )


def numbered(first_row: int, table: pa.Table, bad_lines: tuple[BadLine, ...] = ()) -> Chunk:
    rows = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
    return Chunk(rows, table, bad_lines)


class ParquetSource(Source):
    """One Parquet file or a directory of them, read batch by batch."""

    def __init__(self, path: Path, files: list[Path], schema: pa.Schema, total: int) -> None:
        super().__init__(path, schema, total)
        self.files = files

    @classmethod
    def open_dir(cls, path: Path) -> ParquetSource:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".parquet")
        if not files:
            raise SourceError(f"{path}: the directory holds no .parquet files.")
        return cls.open_files(path, files)

    @classmethod
    def open_files(cls, path: Path, files: list[Path]) -> ParquetSource:
        columns: list[str] | None = None
        schema: pa.Schema | None = None
        total = 0
        for file in files:
            meta = _parquet_metadata(file)
            file_schema = meta.schema.to_arrow_schema()
            names = list(file_schema.names)
            if columns is None or schema is None:
                columns, schema = names, file_schema
            elif set(names) != set(columns):
                missing = sorted(set(columns) - set(names))
                extra = sorted(set(names) - set(columns))
                raise SourceError(
                    f"{file}: its columns differ from {files[0].name}'s "
                    f"(missing {missing}, extra {extra}); every file of a directory "
                    "must have the same columns."
                )
            total += meta.num_rows
        return cls(path, files, schema if schema is not None else pa.schema([]), total)

    def chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Chunk]:
        first_row = 0
        for file in self.files:
            try:
                for batch in _parquet_batches(file, chunk_rows, self.columns):
                    yield numbered(first_row, pa.Table.from_batches([batch]))
                    first_row += batch.num_rows
            except (OSError, pa.ArrowException) as exc:
                raise SourceError(f"{file}: cannot read row {first_row} onwards: {exc}") from exc


def _parquet_batches(file: Path, chunk_rows: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Batches one row group at a time, without pre-buffering: pyarrow's defaults keep
    buffers of the whole file alive, and memory would grow with its size."""
    reader = pq.ParquetFile(file, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
    for group in range(reader.num_row_groups):
        yield from reader.iter_batches(batch_size=chunk_rows, row_groups=[group], columns=columns)


def _parquet_metadata(file: Path) -> pq.FileMetaData:
    try:
        return pq.read_metadata(file)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{file}: not a readable Parquet file ({exc}).") from exc


class CsvSource(Source):
    """A CSV file (optionally gzip-compressed) with a header row; every column read as text."""

    def __init__(self, path: Path, columns: list[str], delimiter: str) -> None:
        super().__init__(path, pa.schema([(name, pa.string()) for name in columns]), None)
        self.delimiter = delimiter
        self._bad_lines: list[BadLine] = []
        self._skip_bad_lines = 0

    @classmethod
    def open(cls, path: Path, delimiter: str) -> CsvSource:
        if len(delimiter) != 1:
            raise SourceError(f"--delimiter must be one character; got {delimiter!r}.")
        return cls(path, _csv_header(path, delimiter), delimiter)

    def chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Chunk]:
        """Small blocks (Arrow reads ahead several of them in the background, so their size
        sets the memory), gathered into chunks of `chunk_rows` (which sets the speed)."""
        first_row = 0
        pending: list[pa.RecordBatch] = []
        bad_lines: list[BadLine] = []
        schema = pa.schema(self.schema)
        for batch in self._batches(chunk_rows):
            schema = batch.schema
            pending.append(batch)
            bad_lines += self._bad_lines
            self._bad_lines = []
            table = pa.Table.from_batches(pending, schema)
            while table.num_rows >= chunk_rows:
                yield numbered(first_row, table.slice(0, chunk_rows), tuple(bad_lines))
                first_row, bad_lines = first_row + chunk_rows, []
                table = table.slice(chunk_rows)
            pending = table.to_batches()
        if pending or bad_lines:
            yield numbered(first_row, pa.Table.from_batches(pending, schema), tuple(bad_lines))

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
                    f"{self.path}: cannot read the CSV after data row {done.rows}: {_explain(exc)}"
                ) from _cause(exc)
            skipped = min(to_skip, batch.num_rows)
            batch, to_skip = batch.slice(skipped), to_skip - skipped
            done.rows += batch.num_rows
            done.bad_lines += len(self._bad_lines)
            if _NotUtf8.count != marks_before:  # only then: the check costs a full scan
                batch = self._set_aside_not_utf8(batch)
            yield batch

    def _open_reader(self, block_size: int) -> pacsv.CSVStreamingReader | None:
        try:
            return pacsv.open_csv(
                pa.input_stream(str(self.path), compression=_compression(self.path)),
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
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except (OSError, pa.ArrowException) as exc:
            if "Empty CSV file" in str(exc):  # Arrow's word for a header without a newline
                return None
            raise SourceError(f"{self.path}: cannot read the CSV: {_explain(exc)}") from _cause(exc)

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


def _compression(path: Path) -> str | None:
    """gzip by the name in any case (`ORDERS.CSV.GZ`): Arrow's "detect" knows only `.gz`."""
    return "gzip" if path.suffix.lower() == ".gz" else None


def _csv_header(path: Path, delimiter: str) -> list[str]:
    """The header row, read with Python's csv module so quoting and a BOM are handled."""
    try:
        stream = pa.input_stream(str(path), compression=_compression(path))
        # Only the header must decode here: bytes further on are the data's business.
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
        header = next(csv.reader(text, delimiter=delimiter), None)
    except (OSError, pa.ArrowException, csv.Error) as exc:
        raise SourceError(f"{path}: cannot read the CSV header: {exc}") from exc
    if not header:
        raise SourceError(f"{path}: the file is empty; expected a header line of column names.")
    undecodable = [name for name in header if _UNDECODED.search(name) or "\0" in name]
    if undecodable:
        shown = (
            undecodable[0].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        )
        raise SourceError(
            f"{path}: the header is not UTF-8 text (found {shown!r}; UTF-16 or Latin-1?); "
            "save the file as UTF-8."
        )
    return header
