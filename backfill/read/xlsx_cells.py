"""Sheet cells, a column at a time: the kinds of cells a column holds, and its Arrow array.

The Rust reader (python-calamine) hands each row as a list of Python values: `str`, `float`
(Excel keeps every number as a double), `bool`, `datetime`/`date` for date cells, `time` and
`timedelta` for time cells, and `""` for an empty cell. Most columns never come here as
cells: `xlsx_columns` makes an Arrow array of a column of one kind; these rules read the
cells of a column that mixes kinds, and are the rules that Arrow path keeps.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backfill.read.kinds import column_type

EMPTY = ""
WHOLE_LIMIT = 2**53  # a whole double below this is an integer; beyond, Excel's own digits end
NUMBER_TEXT = re.compile(r"^\s*[0-9]+(\.[0-9]+)?\s*$")
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)  # serial 1 = 1900-01-01 (after Excel's leap-year bug)
_DATES = (dt.datetime, dt.date)
Cells = Sequence[Any]


def learn(found: set[str], cells: Cells) -> None:
    """Adds the kinds of `cells` to `found`: date, integer, float, boolean, text, and
    number-text (digits held as text: text, except in a column of dates)."""
    for kind in set(map(type, cells)):
        if kind is str:
            if "text" not in found:
                texts = [cell for cell in cells if type(cell) is str and cell != EMPTY]
                if texts:
                    number_text = all(map(NUMBER_TEXT.match, texts))
                    found.add("number-text" if number_text else "text")
        elif kind is float:
            if "float" not in found:
                numbers = np.array([cell for cell in cells if type(cell) is float])
                found.add("integer" if all_whole(numbers) else "float")
        elif kind is bool:
            found.add("boolean")
        elif kind is int:
            found.add("integer")
        elif kind in _DATES:
            found.add("date")
        else:
            found.add("text")  # time and duration cells: read as text


def all_whole(numbers: np.ndarray) -> bool:
    return bool(np.all((numbers == np.floor(numbers)) & (np.abs(numbers) < WHOLE_LIMIT)))


def arrow_type(kinds: set[str]) -> pa.DataType:
    """The column's type from the kinds of its cells. In a column of dates, numbers are
    serial dates that lost their format: their rows fail, so they do not count."""
    if "date" in kinds:
        kinds = kinds - {"integer", "float", "number-text"}
    kinds = {"text" if kind == "number-text" else kind for kind in kinds}
    if kinds == {"date"}:
        return pa.timestamp("ms")
    return column_type(kinds)


def not_dates(column: str, cells: Cells, timestamps: bool) -> dict[int, str]:
    """In a column with date cells, the cells that fail their row: {index: why}. A number
    (or number text) is a serial date that lost its format; in a column read as timestamps,
    any other cell that is not a date (a number beyond Excel's dates) fails too."""
    kinds = set(map(type, cells)) - {dt.datetime, dt.date}
    if not kinds or (
        kinds == {str}
        and all(cell == EMPTY or not NUMBER_TEXT.match(cell) for cell in cells if type(cell) is str)
    ):
        return {}
    failed = {}
    for index, cell in enumerate(cells):
        if cell == EMPTY or isinstance(cell, _DATES):
            continue
        why = _not_a_date(column, cell, timestamps)
        if why is not None:
            failed[index] = why
    return failed


def _not_a_date(column: str, value: Any, timestamps: bool) -> str | None:
    value = as_number(value)
    serial = serial_number(value)
    if serial is None:
        if not timestamps:
            return None
        return f"column {column!r} holds {value!r} in a column of dates; expected a date cell"
    as_date = _EXCEL_EPOCH + dt.timedelta(days=serial)
    return (
        f"column {column!r} holds {value!r}, which looks like an Excel serial date "
        f"({as_date.isoformat(sep=' ', timespec='seconds')}) in a cell formatted as "
        "text or a number; format the column as a date in Excel"
    )


def serial_number(value: Any) -> float | None:
    """A plausible Excel serial date (years 1900 to 9999), from a number or number text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and NUMBER_TEXT.match(value)):
        number = float(value)
    else:
        return None
    return number if 1 <= number < 2_958_466 else None


def array(cells: Cells, kind: pa.DataType) -> pa.Array:
    """The column's cells as `kind`: an empty cell is null."""
    if pa.types.is_timestamp(kind):
        return _timestamps([None if cell == EMPTY else cell for cell in cells])
    if pa.types.is_string(kind):
        if set(map(type, cells)) <= {str}:
            return pa.array([cell or None for cell in cells], kind)
        return pa.array([as_text(cell) for cell in cells], kind)
    if pa.types.is_integer(kind):
        return pa.array([None if cell == EMPTY else int(cell) for cell in cells], kind)
    return pa.array([None if cell == EMPTY else cell for cell in cells], kind)


def _timestamps(values: list[dt.date | None]) -> pa.Array:
    """To the nearest millisecond (Excel keeps no finer time); a date cell is its midnight."""
    moments = [dt.datetime(v.year, v.month, v.day) if type(v) is dt.date else v for v in values]
    return to_millis(pa.array(moments, pa.timestamp("us")))


def to_millis(micros: pa.Array) -> pa.Array:
    """Timestamps to the nearest millisecond (Excel keeps no finer time)."""
    mask = micros.is_null().to_numpy(zero_copy_only=False)
    counts = pc.fill_null(micros.cast(pa.int64()), 0).to_numpy()  # int64: exact to 9999
    millis = np.floor_divide(counts + 500, 1000)
    return pa.array(millis, pa.int64(), mask=mask).cast(pa.timestamp("ms"))


def as_number(value: Any) -> Any:
    """A whole double as the integer Excel shows (`45292`, not `45292.0`); others as they are."""
    if type(value) is float and value.is_integer() and abs(value) < WHOLE_LIMIT:
        return int(value)
    return value


def to_ms(value: dt.date) -> dt.datetime:
    if type(value) is dt.date:
        return dt.datetime(value.year, value.month, value.day)
    assert isinstance(value, dt.datetime)
    rounded = value.replace(microsecond=0, tzinfo=None)
    return rounded + dt.timedelta(milliseconds=(value.microsecond + 500) // 1000)


def as_text(value: Any) -> str | None:
    """A cell in a column mixing kinds, written so that the mapping reads it back exactly:
    dates as ISO text, whole numbers as their digits, others as their shortest digits."""
    if value is None or value == EMPTY:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _DATES):
        return to_ms(value).isoformat(timespec="milliseconds")
    value = as_number(value)
    if isinstance(value, dt.time):
        return value.isoformat()
    return str(value)
