"""A mapping file read as YAML, and each of its keys checked: found vs expected.

Apart from what a mapping is (spec.py, which assembles `Mapping` and `FieldSpec` from what
these checks return) because the checks are most of the code and each is its own rule: a
message names the file, the key (`event_data.orderAmount.type`), what was found and what was
expected, with a "did you mean" for typos. The key lists here are also what the JSON Schema
(json_schema.py) is built from, so the two cannot disagree.
"""

from __future__ import annotations

import difflib
import reprlib
import zoneinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from backfill.errors import MappingError
from backfill.mapping.convert import FieldType
from backfill.mapping.envelopes import json_type
from backfill.mapping.filter_language import parse_filter
from backfill.mapping.filter_tree import FilterError
from backfill.mapping.lookup import Lookup, lookup_from_spec
from backfill.mapping.time_text import DATE_ORDERS
from backfill.mapping.times import TIMESTAMP_UNITS, TimestampRule

TOP_KEYS = ("event_name", "timestamp", "user", "event_data", "filter", "id")
REQUIRED_TOP_KEYS = ("event_name", "timestamp", "user", "event_data")
TIMESTAMP_KEYS = ("column", "time_column", "timezone_column", "unit", "format", "timezone", "dates")
USER_KEYS = ("pubKey",)
LOOKUP_KEYS = ("lookup", "key", "match")  # with column and value: the table's column
PUBKEY_KEYS = ("column", "lookup", "key", "value", "match")
FIELD_KEYS = (
    "column",
    "value",
    "type",
    "true",
    "false",
    "default",
    "optional",
    "decimal",
    "thousands",
    "scale",
    *LOOKUP_KEYS,
)
SCALE_RANGE = (Decimal("1e-18"), Decimal("1e18"))  # a product stays a finite double
DECIMAL_MARKS = (".", ",")
THOUSANDS_MARKS = (".", ",", " ", "'", "\u00a0", "\u202f")  # the last two: (narrow) no-break spaces
FIELD_TYPES: tuple[FieldType, ...] = ("string", "number", "boolean")
UNITS = TIMESTAMP_UNITS


def read_mapping_yaml(path: Path) -> Any:
    """The mapping file parsed as YAML, with no key written twice; a `MappingError`
    naming the file, and the line where YAML can tell it, when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"{path}: no such mapping file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{path}: cannot read the mapping file ({exc}).") from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise MappingError(f"{path}: not valid YAML{line}: {problem}.") from None
    return data


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key written twice in one mapping is an error: plain
    YAML keeps the last silently, and a mapping with two `event_name`s would mean either."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable: the base class says so
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is written twice; keep one", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def checked_timestamp(section: Any, origin: str) -> tuple[str, TimestampRule]:
    """`timestamp`: a column name, or the column with its unit, format, time zone and the
    order of day/month dates."""
    if isinstance(section, str):
        section = {"column": section}
    if not isinstance(section, dict):
        raise MappingError(
            f"{origin}: timestamp: expected a column name or keys "
            f"{', '.join(TIMESTAMP_KEYS)}; found {found_kind(section)}."
        )
    check_keys(section, TIMESTAMP_KEYS, "timestamp.", origin)
    column = column_name(section.get("column"), "timestamp.column", origin)
    unit = section.get("unit", "auto")
    if unit not in UNITS:
        raise MappingError(
            f"{origin}: timestamp.unit: expected one of {', '.join(UNITS)}; found {shown(unit)}"
            f"{suggest(_text(unit), UNITS)}."
        )
    fmt = section.get("format")
    if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
        raise MappingError(
            f"{origin}: timestamp.format: expected a strptime format such as '%d/%m/%y'; "
            f"found {shown(fmt)}."
        )
    if fmt is not None and unit not in ("auto", "iso"):
        raise MappingError(
            f"{origin}: timestamp.format applies to text; it cannot go with unit {unit!r}."
        )
    timezone = section.get("timezone", "UTC")
    _check_timezone(timezone, origin)
    dates = section.get("dates")
    if dates is not None and dates not in DATE_ORDERS:
        raise MappingError(
            f"{origin}: timestamp.dates: expected day-first (13/05/2021) or month-first "
            f"(05/13/2021); found {shown(dates)}."
        )
    return column, TimestampRule(unit=unit, format=fmt, timezone=timezone, dates=dates)


def checked_time_columns(section: Any, origin: str) -> tuple[str | None, str | None]:
    """`timestamp.time_column` (a time of day beside the date in `column`) and
    `timestamp.timezone_column` (each row's zone), where the mapping names them."""
    if not isinstance(section, dict):
        return None, None
    found = []
    for key in ("time_column", "timezone_column"):
        value = section.get(key)
        found.append(None if value is None else column_name(value, f"timestamp.{key}", origin))
    return found[0], found[1]


def _check_timezone(timezone: Any, origin: str) -> None:
    try:
        zoneinfo.ZoneInfo(_text(timezone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise MappingError(
            f"{origin}: timestamp.timezone: {shown(timezone)} is not an IANA time zone; "
            "expected a name such as UTC, Europe/Berlin or America/New_York."
        ) from None


def checked_user(section: Any, origin: str) -> tuple[str, Lookup | None]:
    """`user.pubKey`: the wallet column, and the table it is looked up in, if any."""
    if not isinstance(section, dict):
        raise MappingError(
            f"{origin}: user: expected the key pubKey naming the wallet column; "
            f"found {found_kind(section)}."
        )
    check_keys(section, USER_KEYS, "user.", origin)
    if "pubKey" not in section:
        raise MappingError(f"{origin}: user.pubKey is missing: name the wallet column.")
    spec = section["pubKey"]
    if not isinstance(spec, dict):
        return column_name(spec, "user.pubKey", origin), None
    check_keys(spec, PUBKEY_KEYS, "user.pubKey.", origin)
    column = column_name(spec.get("column"), "user.pubKey.column", origin)
    if "lookup" not in spec:
        if len(spec) > 1:
            raise MappingError(
                f"{origin}: user.pubKey: key and value go with lookup: name the table."
            )
        return column, None
    return column, lookup_from_spec(spec, "user.pubKey", origin)


def number_marks(
    spec: dict[str, Any], field_type: FieldType | None, key: str, origin: str
) -> tuple[str, str | None]:
    """`decimal` and `thousands`: how numbers written as text mark fractions and groups."""
    if "decimal" not in spec and "thousands" not in spec:
        return ".", None
    if field_type != "number" or "column" not in spec:
        raise MappingError(
            f"{origin}: {key}: decimal and thousands need a column and type: number."
        )
    decimal = spec.get("decimal", ".")
    if decimal not in DECIMAL_MARKS:
        raise MappingError(f'{origin}: {key}.decimal: expected "." or ","; found {shown(decimal)}.')
    thousands = spec.get("thousands")
    if thousands is not None and thousands not in THOUSANDS_MARKS:
        marks = ", ".join(repr(mark) for mark in THOUSANDS_MARKS)
        raise MappingError(
            f"{origin}: {key}.thousands: expected one of {marks}; found {shown(thousands)}."
        )
    if thousands == decimal:
        raise MappingError(
            f"{origin}: {key}: decimal and thousands are both {decimal!r}; a number such as "
            f"1{decimal}234 could then be read two ways."
        )
    return decimal, thousands


def number_scale(
    spec: dict[str, Any], field_type: FieldType | None, key: str, origin: str
) -> Decimal | None:
    """`scale`: what each number is multiplied by (0.01: cents to the currency's unit), as
    the decimal it is written as: YAML's 0.01 is a float, whose shortest digits are 0.01."""
    if "scale" not in spec:
        return None
    if field_type != "number" or "column" not in spec:
        raise MappingError(f"{origin}: {key}: scale needs a column and type: number.")
    value = spec["scale"]
    try:
        scale = None if isinstance(value, bool) else Decimal(str(value).strip())
    except InvalidOperation:
        scale = None
    if scale is None or not scale.is_finite() or not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        raise MappingError(
            f"{origin}: {key}.scale: expected a positive number such as 0.01 (cents to the "
            f"currency's unit) or 1000, from 1e-18 to 1e18; found {shown(value)}."
        )
    return scale


def field_lookup(spec: dict[str, Any], key: str, origin: str) -> Lookup | None:
    """A field's `lookup` table, if it names one; `key` alone is a mistake."""
    if "lookup" in spec:
        return lookup_from_spec(spec, key, origin)
    if "key" in spec:
        raise MappingError(f"{origin}: {key}.key goes with lookup: name the table too.")
    return None


def field_type_of(spec: dict[str, Any], key: str, origin: str) -> FieldType | None:
    """A field's Torque type: as written, or a constant's own; None lets the column decide."""
    field_type = spec.get("type")
    if field_type is not None and field_type not in FIELD_TYPES:
        raise MappingError(
            f"{origin}: {key}.type: expected one of {', '.join(FIELD_TYPES)}; "
            f"found {shown(field_type)}{suggest(_text(field_type), FIELD_TYPES)}."
        )
    if "value" in spec:
        value_type = _json_type(spec["value"])
        if value_type is None:
            raise MappingError(
                f"{origin}: {key}.value: expected text, a number or true/false; "
                f"found {found_kind(spec['value'])}."
            )
        if field_type is not None and field_type != value_type:
            raise MappingError(
                f"{origin}: {key}: the value {shown(spec['value'])} is a {value_type}, "
                f"but type says {field_type}."
            )
        return value_type
    return field_type


def word_list(spec: dict[str, Any], word: str, key: str, origin: str) -> tuple[str, ...] | None:
    """A boolean field's `true:` or `false:` words, as text; None when not given."""
    if word not in spec:
        return None
    values = spec[word]
    if not isinstance(values, list) or not values:
        values = [values]
    if any(isinstance(v, (dict, list)) or v is None for v in values):
        raise MappingError(
            f"{origin}: {key}.{word}: expected a list of words; found {shown(values)}."
        )
    return tuple(word for v in values for word in _list_words(v))


def _list_words(value: Any) -> tuple[str, ...]:
    """YAML reads `true`, `yes` and `on` alike as True and loses which was written: a
    boolean in a word list stands for all three spellings."""
    if isinstance(value, bool):
        return ("true", "yes", "on") if value else ("false", "no", "off")
    return (str(value),)


def as_word(value: Any) -> str:
    """YAML reads `yes` as True; the word list compares text, so write it back as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_typed(value: Any, field_type: FieldType | None, key: str, origin: str) -> None:
    """A constant (a `default`) must be of the field's type: it is sent as written."""
    found = _json_type(value)
    if found is None or (field_type is not None and found != field_type):
        raise MappingError(
            f"{origin}: {key}: expected a {field_type or 'string, number or boolean'}; "
            f"found {shown(value)}."
        )


def _json_type(value: Any) -> FieldType | None:
    """The Torque type of a constant or default in the mapping, None if it has none."""
    found = json_type(value)
    return found if found in FIELD_TYPES else None  # type: ignore[return-value]


def checked_filter(expression: Any, origin: str) -> str | None:
    """The filter's text, once it has parsed and passed the allow-list (filter_language)."""
    if expression is None:
        return None
    if not isinstance(expression, str) or not expression.strip():
        raise MappingError(
            f"{origin}: filter: expected an expression such as \"status == 'paid'\"; "
            f"found {shown(expression)}."
        )
    try:
        parse_filter(expression)
    except FilterError as exc:
        raise MappingError(f"{origin}: filter: {exc}") from None
    return expression


def checked_id(value: Any, origin: str) -> tuple[str, ...]:
    """`id`: a column, or a list of columns whose values together name an order."""
    if value is None:
        return ()
    if not isinstance(value, list):
        return (column_name(value, "id", origin),)
    if not value:
        raise MappingError(f"{origin}: id: expected a column or a list of columns; found [].")
    columns = tuple(column_name(v, f"id[{i}]", origin) for i, v in enumerate(value))
    repeated = next((c for c in columns if columns.count(c) > 1), None)
    if repeated is not None:
        raise MappingError(f"{origin}: id: the column {repeated!r} is named twice; name it once.")
    return columns


def column_name(value: Any, key: str, origin: str) -> str:
    """A column as the source names it. In backticks, as in a filter: `` `customer.wallet` ``
    is the column `customer.wallet` (a nested field of a JSON Lines source)."""
    if not isinstance(value, str) or not value:
        raise MappingError(f"{origin}: {key}: expected a column name; found {found_kind(value)}.")
    if len(value) > 2 and value.startswith("`") and value.endswith("`"):
        return value[1:-1]
    return value


def check_keys(section: dict[str, Any], allowed: tuple[str, ...], prefix: str, origin: str) -> None:
    """Every key of a section must be one the section has: a typo fails, with a suggestion."""
    for key in section:
        if key not in allowed:
            raise MappingError(
                f"{origin}: {prefix}{key}: unknown key{suggest(str(key), allowed)}. "
                f"Expected {', '.join(allowed)}."
            )


def suggest(word: str, choices: Any) -> str:
    """` (did you mean 'x'?)` for a typo of one of `choices`; empty when none is close."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def found_kind(value: Any) -> str:
    """What a message says was found: `nothing`, `a mapping`, `a list`, or the value."""
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return shown(value)


_SHOWN = reprlib.Repr()  # a 1 kB YAML file can hold a list of a billion items (aliases)
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 2, 6, 6
_SHOWN.maxstring = _SHOWN.maxother = 400


def shown(value: Any) -> str:
    """A value from the mapping file for a message: its repr, cut short if it is huge."""
    return _SHOWN.repr(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else shown(value)
