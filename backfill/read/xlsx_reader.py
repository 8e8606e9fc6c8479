"""Excel workbooks (.xlsx): one sheet, row by row, with openpyxl's read-only mode, so memory
stays flat however long the sheet.

Row numbers follow the sheet: row `r` is Excel's row `r + 2` (row 1 holds the header), so a
person finds a reported row at once; empty rows are no records but keep their place.

Cells keep what Excel holds. A column of date cells becomes a timestamp column, to the
millisecond (Excel's own resolution), naive (the mapping's `timezone` applies); a column of
text stays text (`00123`), of numbers numbers, of booleans booleans. A column mixing kinds is
read as text, each cell written so that the mapping reads it back exactly (dates as ISO
text, numbers as their shortest exact digits). In a column of dates, a number (or a text
that is one) is an Excel serial date that lost its date format: its row fails, saying which
date it looks like, rather than being read as seconds since 1970.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from backfill.errors import SourceError
from backfill.read.base import (
    DEFAULT_CHUNK_ROWS,
    BadLine,
    Chunk,
    FileReader,
    RowGroupTest,
    named_header,
)

ZIP_MAGIC = b"PK\x03\x04"
_NUMBER_TEXT = re.compile(r"^\s*[0-9]+(\.[0-9]+)?\s*$")
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)  # serial 1 = 1900-01-01 (after Excel's leap-year bug)
_KINDS = {bool: "boolean", int: "integer", float: "float", str: "text", dt.datetime: "date"}


class XlsxReader(FileReader):
    """One sheet of a workbook: the first, or the one named."""

    def __init__(
        self,
        filesystem: pafs.FileSystem,
        path: str,
        name: str,
        sheet: str,
        schema: pa.Schema,
        total_rows: int,
        end: int,
        date_columns: frozenset[str],
    ) -> None:
        super().__init__(filesystem, path, name, schema, total_rows)
        self.sheet = sheet
        self._end = end  # past the last row that is not empty
        self._date_columns = date_columns

    @classmethod
    def open(
        cls, filesystem: pafs.FileSystem, path: str, name: str, sheet: str | None = None
    ) -> XlsxReader:
        """Reads the sheet once to learn each column's kind of cells and the row count."""
        with _Sheet(filesystem, path, name, sheet) as opened:
            rows = opened.rows()
            header = _header(next(rows, None), name)
            kinds: list[set[str]] = [set() for _ in header]
            records = end = 0
            for number, values in enumerate(rows):
                for column, value in zip(kinds, values):
                    if value is not None and value != "":
                        column.add(_kind(value))
                if any(value is not None and value != "" for value in values):
                    records, end = records + 1, number + 1
            dates = frozenset(c for c, kind in zip(header, kinds) if "date" in kind)
            types = [_arrow_type(kind) for kind in kinds]
            schema = pa.schema(list(zip(header, types)))
            return cls(filesystem, path, name, opened.title, schema, records, end, dates)

    def chunks(
        self,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        columns: Sequence[str] | None = None,
        skip_group: RowGroupTest | None = None,
    ) -> Iterator[Chunk]:
        wanted = list(columns) if columns is not None else self.columns
        positions = [self.columns.index(column) for column in wanted]
        schema = pa.schema([self.schema.field(column) for column in wanted])
        with _Sheet(self.filesystem, self.path, self.name, self.sheet) as opened:
            rows = opened.rows()
            next(rows, None)  # the header
            pending: list[tuple[int, tuple[Any, ...]]] = []
            lines: list[BadLine] = []
            for number, values in enumerate(rows):
                if number >= self._end:
                    break
                if all(value is None or value == "" for value in values):
                    continue  # an empty row: no record, but it keeps its place
                problem = self._serial_date(values)
                if problem is not None:
                    line = BadLine(_shown(values), problem, number, what="Excel row")
                    lines.append(line)
                else:
                    pending.append((number, values))
                if len(pending) >= chunk_rows:
                    yield self._chunk(pending, lines, positions, schema)
                    pending, lines = [], []
            if pending or lines:
                yield self._chunk(pending, lines, positions, schema)

    def _chunk(
        self,
        pending: list[tuple[int, tuple[Any, ...]]],
        lines: list[BadLine],
        positions: list[int],
        schema: pa.Schema,
    ) -> Chunk:
        arrays = []
        for position, field in zip(positions, schema):
            cells = [values[position] if position < len(values) else None for _, values in pending]
            arrays.append(_array(cells, field.type))
        rows = np.array([number for number, _ in pending], dtype=np.int64)
        return Chunk(rows, pa.Table.from_arrays(arrays, schema=schema), tuple(lines), self.name)

    def _serial_date(self, values: tuple[Any, ...]) -> str | None:
        """In a column of dates, a number is a serial date that lost its format."""
        for column, value in zip(self.columns, values):
            if column not in self._date_columns or isinstance(value, (dt.datetime, bool)):
                continue
            serial = _serial_number(value)
            if serial is not None:
                as_date = _EXCEL_EPOCH + dt.timedelta(days=serial)
                return (
                    f"column {column!r} holds {value!r}, which looks like an Excel serial date "
                    f"({as_date.isoformat(sep=' ', timespec='seconds')}) in a cell formatted as "
                    "text or a number; format the column as a date in Excel"
                )
        return None


class _Sheet:
    """The workbook opened read-only from `filesystem`, and the sheet to read."""

    def __init__(self, filesystem: pafs.FileSystem, path: str, name: str, sheet: str | None):
        self.filesystem, self.path, self.name, self.sheet = filesystem, path, name, sheet

    def __enter__(self) -> _Sheet:
        import openpyxl  # imported here: only xlsx sources pay for it

        try:
            self.handle = self.filesystem.open_input_file(self.path)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{self.name}: cannot open the workbook: {exc}") from exc
        if self.handle.read(4) != ZIP_MAGIC:
            self.handle.close()
            raise SourceError(
                f"{self.name}: not a readable .xlsx workbook (an .xlsx file is a zip archive; "
                "this one is not: open it in Excel and save it as .xlsx)."
            )
        self.handle.seek(0)
        try:
            self.workbook = openpyxl.load_workbook(self.handle, read_only=True, data_only=True)
        except Exception as exc:  # zipfile.BadZipFile, openpyxl's InvalidFileException, KeyError...
            self.handle.close()
            raise SourceError(f"{self.name}: not a readable .xlsx workbook ({exc}).") from exc
        names = self.workbook.sheetnames
        if self.sheet is None:
            self.worksheet = self.workbook.worksheets[0]
        elif self.sheet in names:
            self.worksheet = self.workbook[self.sheet]
        else:
            self.__exit__()
            raise SourceError(
                f"{self.name}: there is no sheet {self.sheet!r}; the workbook has "
                f"{', '.join(repr(n) for n in names)}."
            )
        self.title = self.worksheet.title
        return self

    def rows(self) -> Iterator[tuple[Any, ...]]:
        try:
            yield from self.worksheet.iter_rows(values_only=True)
        except Exception as exc:  # a damaged sheet: openpyxl raises many kinds
            raise SourceError(f"{self.name}: cannot read the sheet {self.title!r}: {exc}") from exc

    def __exit__(self, *exc: object) -> None:
        self.workbook.close()
        self.handle.close()


def _header(values: tuple[Any, ...] | None, name: str) -> list[str]:
    if values is None:
        raise SourceError(f"{name}: the sheet is empty; expected a first row of column names.")
    cells = list(values)
    while cells and cells[-1] in (None, ""):
        cells.pop()
    if not cells:
        raise SourceError(f"{name}: the first row is empty; expected column names.")
    header = named_header(["" if cell is None else str(cell) for cell in cells])
    duplicates = sorted({column for column in header if header.count(column) > 1})
    if duplicates:
        raise SourceError(f"{name}: the header names {duplicates[0]!r} twice.")
    return header


def _kind(value: Any) -> str:
    if isinstance(value, str) and _NUMBER_TEXT.match(value):
        return "number-text"
    for kind, name in _KINDS.items():
        if type(value) is kind:
            return name
    return "text"  # dt.time, dt.timedelta, formulas' strings...: read as text


def _arrow_type(kinds: set[str]) -> pa.DataType:
    """The column's type from the kinds of its cells. In a column of dates, numbers are
    serial dates that lost their format: their rows fail, so they do not count."""
    if "date" in kinds:
        kinds = kinds - {"integer", "float", "number-text"}
    kinds = {"text" if kind == "number-text" else kind for kind in kinds}
    if kinds == {"date"}:
        return pa.timestamp("ms")
    if kinds == {"boolean"}:
        return pa.bool_()
    if kinds == {"integer"}:
        return pa.int64()
    if kinds and kinds <= {"integer", "float"}:
        return pa.float64()
    return pa.string()


def _array(cells: list[Any], kind: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(kind):
        return pa.array([_to_ms(cell) if cell is not None else None for cell in cells], kind)
    if pa.types.is_string(kind):
        return pa.array([_as_text(cell) for cell in cells], kind)
    return pa.array(cells, kind)


def _to_ms(value: dt.datetime) -> dt.datetime:
    """To the nearest millisecond: Excel keeps no finer time."""
    rounded = value.replace(microsecond=0, tzinfo=None)
    return rounded + dt.timedelta(milliseconds=(value.microsecond + 500) // 1000)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return _to_ms(value).isoformat(timespec="milliseconds")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)  # floats: the shortest digits that read back as the same number


def _serial_number(value: Any) -> float | None:
    """A plausible Excel serial date (years 1900 to 9999), from a number or number text."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER_TEXT.match(value)):
        number = float(value)
    else:
        return None
    return number if 1 <= number < 2_958_466 else None


def _shown(values: tuple[Any, ...]) -> str:
    """The row's cells as one line of text, for the report."""
    return ",".join("" if value is None else str(_as_text(value)) for value in values)
