"""The Arrow side of the filter's values: which kind of value a column's type holds, text
read as numbers or times, and one type for both sides of an `in`.

Apart from row_filter.py, which binds the filter's tree to a chunk's column types: these are
the conversions and kernels under that binding, with no node of the tree in them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from backfill.mapping.filter_tree import FilterError

ArrowMask = Callable[[pa.Table], Any]
Kind = str  # text, number, boolean, time, null (all missing), other
_NUMBER_TEXT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def _never(_data_type: pa.DataType) -> bool:
    return False


def kind_of(data_type: pa.DataType) -> Kind:
    """What the filter language sees in a column of this type: what it may compare it with."""
    if pa.types.is_dictionary(data_type):
        return kind_of(data_type.value_type)
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "text"
    if getattr(pa.types, "is_string_view", _never)(data_type):  # pyarrow >= 16
        return "text"
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        return "number"
    if pa.types.is_decimal(data_type):
        return "number"
    if pa.types.is_boolean(data_type):
        return "boolean"
    if pa.types.is_timestamp(data_type) or pa.types.is_date(data_type):
        return "time"
    return "null" if pa.types.is_null(data_type) else "other"


def time_literal(text: Any, data_type: pa.DataType, where: str) -> Any:
    """ISO-8601 text as a value of a date or timestamp column; without an offset, UTC."""
    try:
        return pa.scalar(text).cast(data_type).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if pa.types.is_timestamp(data_type) and data_type.tz is not None:
        try:
            naive = pa.scalar(text).cast(pa.timestamp(data_type.unit))
            return pa.scalar(naive.value, pa.timestamp(data_type.unit, "UTC")).as_py()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    raise FilterError(
        f"`{where}`: {text!r} is not a date or time like '2024-01-31' or "
        "'2024-01-31T12:00:00Z' for a column of type "
        f"{data_type}."
    )


def as_text(data: Any) -> Any:
    """Values as Arrow text, cast only when they are not text already."""
    return data if pa.types.is_string(data.type) else pc.cast(data, pa.string())


def text_of(compute: ArrowMask, data_type: pa.DataType) -> ArrowMask:
    """`compute`, giving text (large or dictionary text cast): what is_in and lower() take."""
    if pa.types.is_string(data_type):
        return compute
    return lambda table: pc.cast(compute(table), pa.string())


def number_of(text: Any) -> Any:
    """Decimal text as float64; anything that is not a number becomes missing."""
    trimmed = pc.utf8_trim_whitespace(as_text(text))
    is_number = pc.match_substring_regex(trimmed, _NUMBER_TEXT)
    unsigned = pc.utf8_ltrim(trimmed, characters="+")
    return pc.cast(pc.if_else(is_number, unsigned, pa.scalar(None, pa.string())), pa.float64())


def common_number(
    compute: ArrowMask, data_type: pa.DataType, value_set: pa.Array
) -> tuple[ArrowMask, pa.Array]:
    """is_in needs one type: integers stay exact as int64, anything else is float64."""
    if pa.types.is_integer(data_type) and pa.types.is_integer(value_set.type):
        if data_type == pa.int64():
            return compute, value_set.cast(pa.int64())
        return lambda table: pc.cast(compute(table), pa.int64()), value_set.cast(pa.int64())
    if data_type == pa.float64():
        return compute, value_set.cast(pa.float64())
    return lambda table: pc.cast(compute(table), pa.float64()), value_set.cast(pa.float64())
