"""A window of sheet rows as columns, each an Arrow array of the kind its cells share.

calamine hands rows of Python values; a column of a window is turned at once into an Arrow
array of the one kind its cells have (numbers, text, booleans, date-times, dates; an empty
cell null), by C-level passes over the column (`zip(*rows)`, `set(map(type, ...))`,
`pa.array`), not a Python step per cell. The array holds the cells exactly: read back, each is
the value calamine gave. Only a column whose cells mix kinds within the window stays a tuple
of the values. Columns are what the open keeps on disk for the read (pickled Arrow buffers,
not millions of Python objects), and what the read turns into the column's type, known only
once the whole sheet was seen: mostly a cast; a cell by cell Python pass (`xlsx_cells`) only
where the window's kind is not the column's (a column mixing kinds over the sheet, numbers in
a column of dates).

While a window's rows are Python lists, the cyclic garbage collector is held off
(`gc_held`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import pickle
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backfill.read import xlsx_cells as cells

_NATURAL = {
    str: pa.string(),
    float: pa.float64(),
    int: pa.int64(),
    bool: pa.bool_(),
    dt.datetime: pa.timestamp("us"),  # Python's own resolution: exact
    dt.date: pa.date32(),
}
Column = pa.Array | tuple[Any, ...]


@dataclass(frozen=True)
class Columns:
    """Rows `first`... of the sheet (0 is Excel's row 2), as columns from column A; `filled`:
    the rows that hold a cell (the others are no records)."""

    first: int
    columns: list[Column]
    filled: np.ndarray

    @property
    def height(self) -> int:
        return len(self.filled)

    def slice(self, at: int, size: int) -> Columns:
        parts = [
            c.slice(at, size) if isinstance(c, pa.Array) else c[at : at + size]
            for c in self.columns
        ]
        return Columns(self.first + at, parts, self.filled[at : at + size])

    def row(self, index: int) -> list[Any]:
        """One row's cells, as calamine gave them (for the report)."""
        return [_cell(column, index) for column in self.columns]


@contextlib.contextmanager
def gc_held() -> Iterator[None]:
    """No cyclic garbage collection inside, from a window's parse until its rows are
    columns and gone: the rows hold no cycles, but each list allocated counts toward a
    collection that would scan every row held (a sixth of the CPU time on a wide sheet)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def from_rows(first: int, rows: list[list[Any]], width: int) -> Columns:
    """Rows of one window (all as wide: calamine's range), at least `width` columns."""
    transposed = list(zip(*rows))
    height = len(transposed[0]) if transposed else 0
    columns: list[Column] = [_column(values) for values in transposed]
    columns += [pa.nulls(height)] * (width - len(columns))
    return Columns(first, columns, _filled(columns, height))


def _column(values: tuple[Any, ...]) -> Column:
    kinds = set(map(type, values))
    empties = len(kinds) > 1 and str in kinds  # with another kind: empty cells, or mixed
    if empties:
        if any(value != cells.EMPTY for value in values if type(value) is str):
            return values  # text and other kinds
        kinds.discard(str)
    kind = _NATURAL.get(next(iter(kinds))) if len(kinds) == 1 else None
    if kind is None:
        return values  # kinds mixed; time and duration cells (read as text): cell by cell
    if empties:
        values = tuple(None if value == cells.EMPTY else value for value in values)
    array = pa.array(values, kind)
    if kind == pa.string() and cells.EMPTY in values:  # a C-level scan, most often in vain
        array = pc.if_else(pc.equal(array, cells.EMPTY), pa.scalar(None, kind), array)
        return pa.nulls(len(array)) if array.null_count == len(array) else array
    return array


def _filled(columns: list[Column], height: int) -> np.ndarray:
    if any(isinstance(c, pa.Array) and c.null_count == 0 for c in columns) or not height:
        return np.ones(height, dtype=bool)
    filled = np.zeros(height, dtype=bool)
    for column in columns:
        if isinstance(column, pa.Array):
            filled |= column.is_valid().to_numpy(zero_copy_only=False)
        else:
            filled |= np.fromiter((v != cells.EMPTY for v in column), bool, height)
    return filled


def learn(found: set[str], column: Column) -> None:
    """Adds the kinds of the column's cells to `found` (as `xlsx_cells.learn`)."""
    if not isinstance(column, pa.Array):
        cells.learn(found, column)
        return
    kind = column.type
    if pa.types.is_string(kind):
        if "text" not in found:
            found.add("number-text" if _number_texts(column) else "text")
    elif pa.types.is_floating(kind):
        if "float" not in found:
            numbers = column.drop_null().to_numpy()
            found.add("integer" if cells.all_whole(numbers) else "float")
    elif pa.types.is_integer(kind):
        found.add("integer")
    elif pa.types.is_boolean(kind):
        found.add("boolean")
    elif _is_date(kind):
        found.add("date")


def _is_date(kind: pa.DataType) -> bool:
    """A column of date cells: date-times (`timestamp[us]`) or dates (`date32`)."""
    return pa.types.is_timestamp(kind) or pa.types.is_date32(kind)


def _number_texts(column: pa.Array) -> bool:
    """Every text is digits (number-text), by Python's rule. The same pattern in Arrow (RE2)
    settles most at once: RE2's `\\s` is narrower, so what it matches Python's matches too,
    and only the texts it does not match are asked of Python."""
    matched = pc.match_substring_regex(column, cells.NUMBER_TEXT.pattern)
    if pc.all(matched).as_py() is not False:
        return True
    others = column.filter(pc.invert(matched)).to_pylist()
    return all(map(cells.NUMBER_TEXT.match, others))


def has_no_serials(column: Column) -> bool:
    """A window's column in a column of dates that cannot fail a row: dates, empty."""
    if not isinstance(column, pa.Array):
        return False
    return _is_date(column.type) or pa.types.is_null(column.type)


def values(column: Column) -> list[Any]:
    """The cells as calamine gave them, an empty one `""`."""
    if not isinstance(column, pa.Array):
        return list(column)
    return [cells.EMPTY if value is None else value for value in column.to_pylist()]


def _cell(column: Column, index: int) -> Any:
    if not isinstance(column, pa.Array):
        return column[index]
    value = column[index].as_py()
    return cells.EMPTY if value is None else value


def array(column: Column, keep: np.ndarray, kind: pa.DataType) -> pa.Array:
    """The kept rows of a column, as the column's type `kind`."""
    if not isinstance(column, pa.Array):
        return cells.array([v for v, kept in zip(column, keep) if kept], kind)
    if not keep.all():
        column = column.filter(pa.array(keep))
    found = column.type
    if found == kind or pa.types.is_null(found):
        return column.cast(kind)
    if pa.types.is_timestamp(kind) and pa.types.is_timestamp(found):
        return cells.to_millis(column)
    if pa.types.is_timestamp(kind) and pa.types.is_date32(found):
        return column.cast(kind)
    if (pa.types.is_integer(kind) or pa.types.is_floating(kind)) and (
        pa.types.is_integer(found) or pa.types.is_floating(found)
    ):
        return column.cast(kind)  # whole numbers to integers: exact, below 2**53
    return cells.array(values(column), kind)


class Spill:
    """Windows parsed for the open, kept on disk for the read that follows, so that a sheet
    is parsed once for both while memory stays that of a window. Pickled: a window's
    Arrow buffers load back at the speed of the disk. The file is the
    process's own, unnamed (`TemporaryFile`), gone when closed or when the process ends."""

    def __init__(self) -> None:
        # held open across calls: closed by `windows` or `close`
        self._file: IO[bytes] | None = tempfile.TemporaryFile(prefix="backfill-xlsx-")  # noqa: SIM115
        self._windows: list[int] = []  # bytes of each

    def add(self, window: Columns) -> None:
        """Kept; on a full or unwritable disk the spill gives up (the read parses again)."""
        if self._file is None:
            return
        data = pickle.dumps(window, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._file.write(data)
        except OSError:
            self.close()
            return
        self._windows.append(len(data))

    @property
    def whole(self) -> bool:
        return self._file is not None

    def windows(self) -> Iterator[Columns]:
        """The windows kept, once: the file is closed after the last."""
        assert self._file is not None
        file, self._file = self._file, None
        with file:
            file.seek(0)
            for size in self._windows:
                yield pickle.loads(file.read(size))  # our own file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
