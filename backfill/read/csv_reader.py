"""CSV (optionally gzip-compressed): every column read as text, exactly as written.

Arrow's streaming reader parses it in small blocks. A line that does not split into the
header's columns is skipped by Arrow and handed to us with its record number (Arrow counts
records, not physical lines: a quoted value with line breaks is one record, blank lines
are none). Good rows then take the numbers the bad lines did not: every row keeps its own.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs

from backfill.errors import SourceError
from backfill.read.base import (
    UNKNOWN_ROW,
    BadLine,
    Chunk,
    FileReader,
    RowGroupTest,
    named_header,
)
from backfill.read.csv_header import bom_encoding, csv_header, open_stream
from backfill.read.text_codec import (
    MARK_PATTERN,
    Marks,
    check_encoding,
    marking_codec,
    not_text_reason,
    shown,
)

_Numbered = tuple["pa.RecordBatch | None", np.ndarray, list[BadLine]]
MAX_CSV_BLOCK = 1 << 22  # values up to a few MB; Arrow reads up to 32 blocks ahead
ARROW_FIRST_DATA_ROW = 2  # Arrow's InvalidRow.number is 1-based and counts the header


class CsvReader(FileReader):
    """A CSV file with a header row; every column read as text.

    `encoding` is what the file is decoded with: the one asked for, UTF-16 where a byte order
    mark says so, else UTF-8. `encoding_given` says whether the user chose it.
    """

    def __init__(
        self,
        filesystem: pafs.FileSystem,
        path: str,
        name: str,
        header: list[str],
        delimiter: str,
        encoding: str = "utf-8",
        encoding_given: bool = False,
    ) -> None:
        self.file_columns = header  # as the file writes them; `columns` names the empty ones
        schema = pa.schema([(column, pa.string()) for column in named_header(header)])
        super().__init__(filesystem, path, name, schema, None)
        self.delimiter = delimiter
        self.encoding = encoding
        self.encoding_given = encoding_given

    @classmethod
    def open(
        cls,
        filesystem: pafs.FileSystem,
        path: str,
        name: str,
        delimiter: str,
        encoding: str | None = None,
    ) -> CsvReader:
        if len(delimiter) != 1:
            raise SourceError(f"--delimiter must be one character; got {delimiter!r}.")
        if encoding is not None:
            chosen = check_encoding(encoding)
        else:
            chosen = bom_encoding(filesystem, path, name) or "utf-8"
        header = csv_header(filesystem, path, name, delimiter, chosen, encoding is not None)
        return cls(filesystem, path, name, header, delimiter, chosen, encoding is not None)

    def read_chunks(
        self, chunk_rows: int, wanted: list[str], skip_group: RowGroupTest | None
    ) -> Iterator[Chunk]:
        """Small blocks (Arrow reads ahead several of them in the background, so their size
        sets the memory), gathered into chunks of `chunk_rows` (which sets the speed)."""
        schema = pa.schema([self.schema.field(column) for column in wanted])
        gathered = _Gathered(schema, self.name)
        for batch, rows, lines in _CsvPass(self, wanted).batches(chunk_rows):
            gathered.add(batch, rows, lines)
            while gathered.num_rows >= chunk_rows:
                yield gathered.take(chunk_rows)
        if gathered.num_rows or gathered.lines:
            yield gathered.take(gathered.num_rows)

    def stream(self) -> pa.NativeFile:
        return open_stream(self.filesystem, self.path, self.name)


@dataclass
class _Gathered:
    """Numbered batches waiting to become chunks; a bad line goes with the chunk that holds
    the rows around it, so chunks cover one stretch of record numbers after another."""

    schema: pa.Schema
    source: str
    batches: list[pa.RecordBatch] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    lines: list[BadLine] = field(default_factory=list)
    num_rows: int = 0

    def add(self, batch: pa.RecordBatch | None, rows: np.ndarray, lines: list[BadLine]) -> None:
        self.lines += lines
        if batch is not None:
            self.batches.append(batch)
            self.rows.append(rows)
            self.num_rows += batch.num_rows
            self.schema = batch.schema

    def take(self, count: int) -> Chunk:
        table = pa.Table.from_batches(self.batches, self.schema)
        rows = np.concatenate(self.rows) if self.rows else np.array([], dtype=np.int64)
        rest = table.num_rows - count
        if rest:
            below = int(rows[count])  # the lines before the first row left for later
            mine = [line for line in self.lines if line.row is None or line.row < below]
            self.lines = [line for line in self.lines if line.row is not None and line.row > below]
        else:
            mine, self.lines = self.lines, []
        self.batches = table.slice(count).to_batches()
        self.rows = [rows[count:]]
        self.num_rows = rest
        return Chunk(rows[:count], table.slice(0, count), tuple(mine), self.source)


class _CsvPass:
    """One read of the file. A value longer than a block makes Arrow stop; the pass then
    opens the file again with blocks 8x larger and goes on from where it stopped.

    Arrow splits every line into all its fields (so a ragged line is always found) but
    makes columns of the wanted ones only. A byte that does not decode, though, fails its
    line in any column: once one is met, the pass opens the file again the same way and
    makes every column from there on, to look for it; the columns not wanted are then
    dropped."""

    def __init__(self, reader: CsvReader, columns: list[str]) -> None:
        self.reader = reader
        self.wanted = columns
        # Arrow knows the file's names: a repeated one (two empty headers) only by position
        repeated = len(set(reader.file_columns)) < len(reader.file_columns)
        self.every_column = set(columns) == set(reader.columns) or repeated
        self.columns = reader.columns if self.every_column else columns
        self.numbers = _RecordNumbers()
        self.rows_done = 0  # good rows handed on
        self.seen_below = 0  # on a second opening: bad lines below this were handed on

    def batches(self, chunk_rows: int) -> Iterator[_Numbered]:
        """Numbered batches, then (None, no rows, the bad lines after the last row)."""
        block_size = min(max(chunk_rows * 32, 1 << 16), MAX_CSV_BLOCK)
        while True:
            try:
                yield from self._batches_from(block_size)
                yield None, np.array([], dtype=np.int64), self.numbers.rest()
                return
            except _NotText:
                self.every_column, self.columns = True, self.reader.columns
            except SourceError as exc:
                if not isinstance(exc.__cause__, _ValueTooLong) or block_size >= MAX_CSV_BLOCK:
                    raise
                block_size *= 8
            self.seen_below = self.numbers.next_row
            self.numbers.forget_pending()  # met again, and numbered then

    def _batches_from(self, block_size: int) -> Iterator[_Numbered]:
        marks_before = Marks.count  # before opening: Arrow reads the first block at once
        arrow = self._open(block_size)
        if arrow is None:  # the header and nothing else
            return
        to_skip = self.rows_done
        while True:
            try:
                batch = arrow.read_next_batch()
            except StopIteration:
                return
            except (OSError, pa.ArrowException) as exc:
                raise SourceError(
                    f"{self.reader.name}: cannot read the CSV after data row "
                    f"{self.numbers.next_row}: {_explain(exc)}"
                ) from _cause(exc)
            if Marks.count != marks_before and not self.every_column:
                raise _NotText  # perhaps in a column not made: make them all from here
            skipped = min(to_skip, batch.num_rows)
            batch, to_skip = batch.slice(skipped), to_skip - skipped
            batch = pa.RecordBatch.from_arrays(batch.columns, names=self.columns)
            self.rows_done += batch.num_rows
            rows = self.numbers.number(batch.num_rows)
            lines = self.numbers.placed()
            if Marks.count != marks_before:  # only then: the check costs a full scan
                batch, rows, not_text = self._set_aside_not_text(batch, rows)
                lines = sorted(lines + not_text, key=lambda line: line.row or 0)
            if self.columns != self.wanted:
                batch = batch.select(self.wanted)
            yield batch, rows, lines

    def _open(self, block_size: int) -> pacsv.CSVStreamingReader | None:
        try:
            return pacsv.open_csv(
                self.reader.stream(),
                read_options=pacsv.ReadOptions(
                    block_size=block_size,
                    use_threads=False,
                    encoding=marking_codec(self.reader.encoding),
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.reader.delimiter,
                    newlines_in_values=True,
                    invalid_row_handler=self._skip_bad_line,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in self.reader.file_columns},
                    include_columns=self._file_names(),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except (OSError, pa.ArrowException) as exc:
            if "Empty CSV file" in str(exc):  # Arrow's word for a header without a newline
                return None
            raise SourceError(
                f"{self.reader.name}: cannot read the CSV: {_explain(exc)}"
            ) from _cause(exc)

    def _file_names(self) -> list[str]:
        """The columns to make, as the file's header names them (Arrow's names); none
        named: all of them, in the file's order (a repeated name is only known so)."""
        if self.every_column:
            return []
        by_name = dict(zip(self.reader.columns, self.reader.file_columns))
        return [by_name[column] for column in self.columns]

    def _skip_bad_line(self, row: pacsv.InvalidRow) -> str:
        number = None if row.number is None or row.number < 0 else row.number - ARROW_FIRST_DATA_ROW
        if number is not None and number < self.seen_below:  # handed on before the blocks grew
            return "skip"
        reason = f"expected {row.expected_columns} columns, found {row.actual_columns}"
        if number is None:
            reason = f"{reason}; {UNKNOWN_ROW}"
        self.numbers.bad(BadLine(text=shown(row.text or ""), reason=reason, row=number))
        return "skip"

    def _set_aside_not_text(
        self, batch: pa.RecordBatch, rows: np.ndarray
    ) -> tuple[pa.RecordBatch, np.ndarray, list[BadLine]]:
        """Rows with a byte that did not decode become bad lines, under their own numbers."""
        first_column: dict[int, str] = {}
        for name, column in zip(batch.schema.names, batch.columns):
            found = pc.fill_null(pc.match_substring_regex(column, MARK_PATTERN), False)
            for position in np.flatnonzero(found.to_numpy(zero_copy_only=False)).tolist():
                first_column.setdefault(position, name)
        if not first_column:
            return batch, rows, []
        lines = []
        given = self.reader.encoding if self.reader.encoding_given else None
        for position, name in sorted(first_column.items()):
            cells = [column[position].as_py() or "" for column in batch.columns]
            buffer = io.StringIO()
            csv.writer(buffer, delimiter=self.reader.delimiter, lineterminator="").writerow(cells)
            reason = not_text_reason(name, given, buffer.getvalue())
            text = shown(buffer.getvalue())
            lines.append(BadLine(text=text, reason=reason, row=int(rows[position])))
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[list(first_column)] = False
        return batch.filter(pa.array(keep)), rows[keep], lines


class _RecordNumbers:
    """Record numbers for good rows as Arrow hands them on: the numbers bad lines did not
    take. Arrow reports a block's bad lines while parsing it, before it hands on the block's
    rows, so every bad line before a row is known when the row is numbered."""

    def __init__(self) -> None:
        self.next_row = 0  # the first number not yet given to a row or a placed bad line
        self._pending: list[BadLine] = []  # numbered bad lines at or after next_row
        self._unknown: list[BadLine] = []

    def bad(self, line: BadLine) -> None:
        if line.row is None:
            self._unknown.append(line)
        elif line.row < self.next_row:
            raise SourceError(
                f"record {line.row} could not be read and was met after the rows that follow "
                "it; the row numbers of this file cannot be trusted (please report this)."
            )
        else:
            self._pending.append(line)

    def number(self, count: int) -> np.ndarray:
        taken = np.array(sorted({line.row for line in self._pending}), dtype=np.int64)
        if not len(taken):
            rows = np.arange(self.next_row, self.next_row + count, dtype=np.int64)
        else:
            span = np.arange(self.next_row, self.next_row + count + len(taken), dtype=np.int64)
            rows = span[~np.isin(span, taken)][:count]
        if count:
            self.next_row = int(rows[-1]) + 1
        return rows

    def placed(self) -> list[BadLine]:
        """The bad lines now behind the last numbered row (all of them at the end)."""
        placed = [line for line in self._pending if (line.row or 0) < self.next_row]
        self._pending = [line for line in self._pending if (line.row or 0) >= self.next_row]
        placed += self._unknown
        self._unknown = []
        return sorted(placed, key=lambda line: line.row or 0)

    def rest(self) -> list[BadLine]:
        rest = sorted(self._pending, key=lambda line: line.row or 0) + self._unknown
        self._pending, self._unknown = [], []
        if rest and rest[-1].row is not None:
            self.next_row = max(self.next_row, rest[-1].row + 1)
        return rest

    def forget_pending(self) -> None:
        self._pending, self._unknown = [], []


class _NotText(Exception):
    """A byte did not decode, and not every column is being made."""


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
