"""Excel workbooks (.xlsx): one sheet, read by calamine (Rust, through python-calamine).

calamine parses a whole sheet into memory before the first row is handed over, so the sheet
is handed to it a window of rows at a time (`xlsx_windows`): memory stays that of a window,
whatever the sheet's size. Each window's rows become Arrow columns of their cells' own kind
(`xlsx_columns`). The sheet is read twice, once to learn each column's kind of cells and the
row count, once to send; the windows' columns from the first are kept on disk for the second
(`xlsx_columns.Spill`, held in `XlsxReader._parsed`), so the sheet is parsed once, and the
second turns them into the columns' types, mostly by a cast.

Row numbers follow the sheet: row `r` is Excel's row `r + 2` (row 1 holds the header), so a
person finds a reported row at once; empty rows are no records but keep their place.

Cells keep what Excel holds. A column of date cells becomes a timestamp column, to the
millisecond (Excel's own resolution), naive (the mapping's `timezone` applies); a column of
text stays text (`00123`), of whole numbers integers, of numbers with fractions floats, of
booleans booleans. A column mixing kinds is read as text, each cell written so that the
mapping reads it back exactly (dates as ISO text, numbers as their shortest exact digits).
In a column of dates, a number (or a text that is one) is an Excel serial date that lost its
date format: its row fails, saying which date it looks like, rather than being read as
seconds since 1970.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from backfill.errors import SourceError
from backfill.read import xlsx_cells as cells
from backfill.read import xlsx_columns as columns
from backfill.read import xlsx_windows
from backfill.read.base import (
    BadLine,
    Chunk,
    FileReader,
    RowGroupTest,
    named_header,
)
from backfill.read.xlsx_columns import Columns
from backfill.read.xlsx_windows import Window

ZIP_MAGIC = b"PK\x03\x04"
Row = list[Any]


class XlsxReader(FileReader):
    """One sheet of a workbook: the first, or the one named."""

    # The sheet last opened stays parsed (spilled to disk) until its first read: a single
    # workbook is parsed once, not twice. One slot only, so a directory of workbooks spills
    # one sheet at a time.
    _parsed: ClassVar[tuple[XlsxReader, columns.Spill] | None] = None

    def __init__(
        self,
        filesystem: pafs.FileSystem,
        path: str,
        name: str,
        sheet: str,
        schema: pa.Schema,
        total_rows: int | None,
        date_columns: frozenset[str],
    ) -> None:
        super().__init__(filesystem, path, name, schema, total_rows)
        self.sheet = sheet
        self._date_columns = date_columns
        self.sampled = False  # True: every read gives the sampled rows, the kinds learned from

    @classmethod
    def open(
        cls,
        filesystem: pafs.FileSystem,
        path: str,
        name: str,
        sheet: str | None = None,
        sampled: bool = False,
    ) -> XlsxReader:
        """Reads the sheet once to learn each column's kind of cells and the row count.
        `sampled` (init): only the first rows and stretches spread over the sheet are read,
        the columns' kinds learned from them, the row count unknown; the first read gives
        those rows only."""
        _let_go()  # the sheet opened before, before parsing the next
        title, windows = _parse(filesystem, path, name, sheet, sampled)
        values, data = _header_row(iter(windows))
        header = _header(values, name)
        kinds: list[set[str]] = [set() for _ in header]
        records, spill = 0, columns.Spill()
        for window in _columns(data, len(header)):
            spill.add(window)
            records += int(np.count_nonzero(window.filled))
            for found, column in zip(kinds, window.columns):
                columns.learn(found, column)
        dates = frozenset(c for c, kind in zip(header, kinds) if "date" in kind)
        types = [cells.arrow_type(kind) for kind in kinds]
        schema = pa.schema(list(zip(header, types)))
        total = None if sampled else records
        reader = cls(filesystem, path, name, title, schema, total, dates)
        reader.sampled = sampled
        XlsxReader._parsed = (reader, spill) if spill.whole else None
        return reader

    def read_chunks(
        self, chunk_rows: int, wanted: list[str], skip_group: RowGroupTest | None
    ) -> Iterator[Chunk]:
        schema = pa.schema([self.schema.field(column) for column in wanted])
        held = XlsxReader._parsed
        if held is not None and held[0] is self:
            XlsxReader._parsed = None
            data: Iterable[Columns] = held[1].windows()
        else:
            _, windows = _parse(self.filesystem, self.path, self.name, self.sheet, self.sampled)
            data = _columns(_header_row(iter(windows))[1], len(self.columns))
        for window in data:
            for at in range(0, window.height, chunk_rows):
                chunk = self._chunk(window.slice(at, chunk_rows), schema)
                if len(chunk) or chunk.bad_lines:
                    yield chunk

    def _chunk(self, part: Columns, schema: pa.Schema) -> Chunk:
        """Rows of the sheet: the empty ones left out, those with a serial date in a column
        of dates failed, the others as Arrow columns."""
        failed: dict[int, str] = {}
        for column, data in zip(self.columns, part.columns):
            if column in self._date_columns and not columns.has_no_serials(data):
                timestamps = pa.types.is_timestamp(self.schema.field(column).type)
                found = cells.not_dates(column, columns.values(data), timestamps)
                failed.update((i, why) for i, why in found.items() if i not in failed)
        keep = part.filled.copy()
        keep[list(failed)] = False
        by_name = dict(zip(self.columns, part.columns))
        arrays = [columns.array(by_name[field.name], keep, field.type) for field in schema]
        lines = [
            BadLine(_shown(part.row(i)), failed[i], part.first + i, what="Excel row")
            for i in sorted(failed)
        ]
        rows = np.flatnonzero(keep).astype(np.int64) + part.first
        table = pa.Table.from_arrays(arrays, schema=schema)
        return Chunk(rows, table, tuple(lines), self.name)


def _let_go() -> None:
    held, XlsxReader._parsed = XlsxReader._parsed, None
    if held is not None:
        held[1].close()


def _header_row(windows: Iterator[Window]) -> tuple[Row | None, Iterator[Window]]:
    """Row 1 (None for a sheet with no cells; no cells when row 1 is empty) and the windows
    of the rows under it."""
    first = next(windows, None)
    if first is None:
        return None, iter(())
    if first.first > 0:
        return [], itertools.chain([first], windows)
    rest = Window(1, first.rows[1:])
    return first.rows[0], itertools.chain([rest], windows)


def _columns(windows: Iterable[Window], width: int) -> Iterator[Columns]:
    """The windows of rows under the header as columns, at least `width` of them, with the
    sheet's row number of the first (Excel's row - 2). Each window is parsed, made columns
    and its rows let go with the garbage collector held (`xlsx_columns.gc_held`)."""
    windows = iter(windows)
    while True:
        with columns.gc_held():
            window = next(windows, None)
            if window is None:
                return
            made = columns.from_rows(window.first - 1, window.rows, width)
            del window
        yield made


def _parse(
    filesystem: pafs.FileSystem, path: str, name: str, sheet: str | None, sampled: bool = False
) -> tuple[str, Iterator[Window]]:
    """The sheet's title and its windows, parsed one at a time as they are read: the file
    stays open until the last. A file that is no workbook, or no such sheet, fails here."""
    try:
        handle = filesystem.open_input_file(path)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{name}: cannot open the workbook: {exc}") from exc
    try:
        if handle.read(4) != ZIP_MAGIC:
            raise SourceError(
                f"{name}: not a readable .xlsx workbook (an .xlsx file is a zip archive; "
                "this one is not: open it in Excel and save it as .xlsx)."
            )
        handle.seek(0)
        try:
            book = zipfile.ZipFile(handle)
            found, title = xlsx_windows.sheet_xml(book, sheet)
        except KeyError:
            titles = xlsx_windows.sheet_xml(book, None)[0].titles
            raise SourceError(
                f"{name}: there is no sheet {sheet!r}; the workbook has "
                f"{', '.join(repr(n) for n in titles)}."
            ) from None
        except (zipfile.BadZipFile, ET.ParseError, OSError) as exc:
            raise SourceError(f"{name}: not a readable .xlsx workbook ({exc}).") from exc
    except BaseException:
        handle.close()
        raise
    return title, _windows(handle, book, found, name, title, sampled)


def _windows(
    handle: pa.NativeFile,
    book: zipfile.ZipFile,
    found: xlsx_windows.SheetXml,
    name: str,
    title: str,
    sampled: bool,
) -> Iterator[Window]:
    with handle, book:
        try:
            yield from xlsx_windows.windows(book, found, title, sampled)
        except Exception as exc:  # calamine's XmlError..., a zip cut short: a damaged sheet
            raise SourceError(f"{name}: cannot read the sheet {title!r}: {exc}") from exc


def _header(values: Row | None, name: str) -> list[str]:
    if values is None:
        raise SourceError(f"{name}: the sheet is empty; expected a first row of column names.")
    header_cells = list(values)
    while header_cells and header_cells[-1] == cells.EMPTY:
        header_cells.pop()
    if not header_cells:
        raise SourceError(f"{name}: the first row is empty; expected column names.")
    header = named_header(
        [
            ""
            if cell == cells.EMPTY
            else cell
            if isinstance(cell, str)
            else str(cells.as_number(cell))
            for cell in header_cells
        ]
    )
    duplicates = sorted({column for column in header if header.count(column) > 1})
    if duplicates:
        raise SourceError(f"{name}: the header names {duplicates[0]!r} twice.")
    return header


def _shown(values: Row) -> str:
    """The row's cells as one line of text, for the report."""
    return ",".join("" if value == cells.EMPTY else str(cells.as_text(value)) for value in values)
