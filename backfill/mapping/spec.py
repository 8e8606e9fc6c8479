"""The YAML mapping: which columns become the event's timestamp, user and typed fields.

The whole file is checked before any row is read, and checked again against the source's
columns before anything is sent: every mistake is one `MappingError` that names the file,
the key (`event_data.orderAmount.type`), what was found and what was expected, with a
"did you mean" for typos. The mapping knows nothing of HTTP or of how rows are read.
"""

from __future__ import annotations

import difflib
import hashlib
import html
import reprlib
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from backfill.errors import MappingError
from backfill.mapping.convert import FieldType, type_of_column
from backfill.mapping.envelopes import json_type
from backfill.mapping.filter_language import FilterError, filter_columns, parse_filter
from backfill.mapping.lookup import Lookup, lookup_from_spec
from backfill.mapping.time_text import DATE_ORDERS
from backfill.mapping.times import TIMESTAMP_UNITS, TimestampRule

TOP_KEYS = ("event_name", "timestamp", "user", "event_data", "filter", "id")
REQUIRED_TOP_KEYS = ("event_name", "timestamp", "user", "event_data")
TIMESTAMP_KEYS = ("column", "unit", "format", "timezone", "dates")
USER_KEYS = ("pubKey",)
LOOKUP_KEYS = ("lookup", "key")  # with column and value: `value` names the table's column
PUBKEY_KEYS = ("column", "lookup", "key", "value")
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
    *LOOKUP_KEYS,
)
DECIMAL_MARKS = (".", ",")
THOUSANDS_MARKS = (".", ",", " ", "'", "\u00a0", "\u202f")  # the last two: (narrow) no-break spaces
FIELD_TYPES: tuple[FieldType, ...] = ("string", "number", "boolean")
UNITS = TIMESTAMP_UNITS


@dataclass(frozen=True)
class FieldSpec:
    """One `event_data` parameter: from a column or a constant, with its Torque type."""

    name: str
    column: str | None = None
    value: Any = None
    type: FieldType | None = None  # None: the column's own type decides
    true_values: tuple[str, ...] | None = None
    false_values: tuple[str, ...] | None = None
    default: Any = None
    has_default: bool = False
    optional: bool = False
    decimal: str = "."  # how a number written as text marks its fraction
    thousands: str | None = None  # how it groups digits in threes, if it does
    lookup: Lookup | None = None  # the column's value is a key of this table


@dataclass(frozen=True)
class Mapping:
    """A checked mapping. `raw` keeps the parsed YAML so a notebook can edit and rebuild."""

    event_name: str
    timestamp_column: str
    timestamp_rule: TimestampRule
    pubkey_column: str
    fields: tuple[FieldSpec, ...]
    filter: str | None
    origin: str
    raw: dict[str, Any]
    pubkey_lookup: Lookup | None = None  # the pubKey column holds keys of this table
    id_column: str | None = None  # the order id that holds across exports (the id ledger)

    @property
    def columns(self) -> list[str]:
        """Every source column the mapping reads, in order of first use."""
        return list(dict.fromkeys(column for _, column in self._column_keys()))

    @property
    def fingerprint(self) -> str:
        """A digest of what the mapping means (not its comments): keys the journal."""
        canonical = yaml.safe_dump(self.raw, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def check_columns(self, columns: list[str], source_name: str) -> None:
        """Fail before reading rows when the source lacks a column the mapping names."""
        for key, column in self._column_keys():
            if column not in columns:
                raise MappingError(
                    f"{self.origin}: {key}: the column {column!r} is not in {source_name}"
                    f"{_suggest(column, columns)}. Its columns are: {', '.join(columns)}."
                )
            if columns.count(column) > 1:
                raise MappingError(
                    f"{self.origin}: {key}: {source_name} has {columns.count(column)} columns "
                    f"named {column!r}; rename them so that the mapping names exactly one."
                )

    def column_keys(self) -> list[tuple[str, str]]:
        """(mapping key, column) for every column the mapping reads."""
        return self._column_keys()

    def _column_keys(self) -> list[tuple[str, str]]:
        keys = [("timestamp.column", self.timestamp_column), ("user.pubKey", self.pubkey_column)]
        if self.id_column is not None:
            keys.append(("id", self.id_column))
        keys += [
            (f"event_data.{spec.name}.column", spec.column)
            for spec in self.fields
            if spec.column is not None
        ]
        if self.filter:
            keys += [("filter", column) for column in filter_columns(self.filter)]
        return keys

    def with_field(self, name: str, spec: str | dict[str, Any]) -> Mapping:
        """A copy with one event_data field replaced or added: for trying fixes in a notebook."""
        raw = dict(self.raw)
        raw["event_data"] = {**raw["event_data"], name: spec}
        return mapping_from_dict(raw, origin=self.origin)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(spec.name)}</td>"
            f"<td>{html.escape(spec.column or repr(spec.value))}</td>"
            f"<td>{spec.type or '(from column)'}</td>"
            f"<td>{'optional' if spec.optional else ''}"
            f"{' default ' + html.escape(repr(spec.default)) if spec.has_default else ''}</td></tr>"
            for spec in self.fields
        )
        return (
            f"<b>{html.escape(self.event_name)}</b> from {html.escape(self.origin)}<br>"
            f"timestamp: {html.escape(self.timestamp_column)} ({self.timestamp_rule.unit}, "
            f"{html.escape(self.timestamp_rule.timezone)}); "
            f"pubKey: {html.escape(self.pubkey_column)}; "
            f"filter: {html.escape(self.filter or 'none')}"
            "<table><tr><th>field</th><th>column / value</th><th>type</th><th></th></tr>"
            f"{rows}</table>"
        )


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a mapping file; every problem is a `MappingError` naming the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"{path}: no such mapping file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{path}: cannot read the mapping file ({exc}).") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise MappingError(f"{path}: not valid YAML{line}: {problem}.") from None
    return mapping_from_dict(data, origin=str(path))


class _UniqueKeyLoader(yaml.SafeLoader):
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


def mapping_from_dict(data: Any, origin: str = "<mapping>") -> Mapping:
    """Check a parsed mapping (a dict as YAML gives it) and build the `Mapping`."""
    if not isinstance(data, dict):
        raise MappingError(
            f"{origin}: expected a mapping with the keys {', '.join(REQUIRED_TOP_KEYS)}; "
            f"found {_kind(data)}."
        )
    _check_keys(data, TOP_KEYS, "", origin)
    for key in REQUIRED_TOP_KEYS:
        if key not in data:
            raise MappingError(f"{origin}: the required key {key!r} is missing.")
    event_name = data["event_name"]
    if not isinstance(event_name, str) or not event_name.strip():
        raise MappingError(
            f"{origin}: event_name: expected the custom event's name as text; "
            f"found {_kind(event_name)}."
        )
    timestamp_column, rule = _timestamp(data["timestamp"], origin)
    pubkey_column, pubkey_lookup = _user(data["user"], origin)
    return Mapping(
        event_name=event_name,
        timestamp_column=timestamp_column,
        timestamp_rule=rule,
        pubkey_column=pubkey_column,
        fields=_fields(data["event_data"], origin),
        filter=_filter(data.get("filter"), origin),
        origin=origin,
        raw=data,
        pubkey_lookup=pubkey_lookup,
        id_column=None if data.get("id") is None else _column_name(data["id"], "id", origin),
    )


def _timestamp(section: Any, origin: str) -> tuple[str, TimestampRule]:
    if isinstance(section, str):
        section = {"column": section}
    if not isinstance(section, dict):
        raise MappingError(
            f"{origin}: timestamp: expected a column name or keys "
            f"{', '.join(TIMESTAMP_KEYS)}; found {_kind(section)}."
        )
    _check_keys(section, TIMESTAMP_KEYS, "timestamp.", origin)
    column = _column_name(section.get("column"), "timestamp.column", origin)
    unit = section.get("unit", "auto")
    if unit not in UNITS:
        raise MappingError(
            f"{origin}: timestamp.unit: expected one of {', '.join(UNITS)}; found {_shown(unit)}"
            f"{_suggest(_text(unit), UNITS)}."
        )
    fmt = section.get("format")
    if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
        raise MappingError(
            f"{origin}: timestamp.format: expected a strptime format such as '%d/%m/%y'; "
            f"found {_shown(fmt)}."
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
            f"(05/13/2021); found {_shown(dates)}."
        )
    return column, TimestampRule(unit=unit, format=fmt, timezone=timezone, dates=dates)


def _check_timezone(timezone: Any, origin: str) -> None:
    try:
        zoneinfo.ZoneInfo(_text(timezone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise MappingError(
            f"{origin}: timestamp.timezone: {_shown(timezone)} is not an IANA time zone; "
            "expected a name such as UTC, Europe/Berlin or America/New_York."
        ) from None


def _user(section: Any, origin: str) -> tuple[str, Lookup | None]:
    if not isinstance(section, dict):
        raise MappingError(
            f"{origin}: user: expected the key pubKey naming the wallet column; "
            f"found {_kind(section)}."
        )
    _check_keys(section, USER_KEYS, "user.", origin)
    if "pubKey" not in section:
        raise MappingError(f"{origin}: user.pubKey is missing: name the wallet column.")
    spec = section["pubKey"]
    if not isinstance(spec, dict):
        return _column_name(spec, "user.pubKey", origin), None
    _check_keys(spec, PUBKEY_KEYS, "user.pubKey.", origin)
    column = _column_name(spec.get("column"), "user.pubKey.column", origin)
    if "lookup" not in spec:
        if len(spec) > 1:
            raise MappingError(
                f"{origin}: user.pubKey: key and value go with lookup: name the table."
            )
        return column, None
    return column, lookup_from_spec(spec, "user.pubKey", origin)


def _fields(section: Any, origin: str) -> tuple[FieldSpec, ...]:
    if not isinstance(section, dict) or not section:
        raise MappingError(
            f"{origin}: event_data: expected the event's fields, each a column name or "
            f"keys such as column and type; found {_kind(section)}."
        )
    return tuple(_field(str(name), spec, origin) for name, spec in section.items())


def _field(name: str, spec: Any, origin: str) -> FieldSpec:
    key = f"event_data.{name}"
    if isinstance(spec, str):
        return FieldSpec(name=name, column=_column_name(spec, key, origin))
    if not isinstance(spec, dict):
        raise MappingError(
            f"{origin}: {key}: expected a column name, or keys such as column and type; "
            f"found {_kind(spec)}."
        )
    spec = {_word(k) if isinstance(k, bool) else k: v for k, v in spec.items()}
    _check_keys(spec, FIELD_KEYS, key + ".", origin)
    lookup = _field_lookup(spec, key, origin)
    if lookup is not None:
        spec = {k: v for k, v in spec.items() if k not in ("lookup", "key", "value")}
        if "type" not in spec:  # the table's column decides, not the source's
            spec["type"] = type_of_column(lookup.index().values.type)
    elif ("column" in spec) == ("value" in spec):
        raise MappingError(f"{origin}: {key}: give exactly one of column or value.")
    field_type = _field_type(spec, key, origin)
    trues, falses = _word_list(spec, "true", key, origin), _word_list(spec, "false", key, origin)
    if (trues is not None or falses is not None) and field_type != "boolean":
        raise MappingError(f"{origin}: {key}: true and false lists need type: boolean.")
    optional = spec.get("optional", False)
    if not isinstance(optional, bool):
        raise MappingError(
            f"{origin}: {key}.optional: expected true or false; found {_shown(optional)}."
        )
    if "default" in spec:
        _check_typed(spec["default"], field_type, f"{key}.default", origin)
    decimal, thousands = _number_marks(spec, field_type, key, origin)
    if "column" not in spec:
        return FieldSpec(name=name, value=spec["value"], type=field_type)
    return FieldSpec(
        name=name,
        column=_column_name(spec["column"], f"{key}.column", origin),
        type=field_type,
        true_values=trues,
        false_values=falses,
        default=spec.get("default"),
        has_default="default" in spec,
        optional=optional,
        decimal=decimal,
        thousands=thousands,
        lookup=lookup,
    )


def _number_marks(
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
        raise MappingError(
            f'{origin}: {key}.decimal: expected "." or ","; found {_shown(decimal)}.'
        )
    thousands = spec.get("thousands")
    if thousands is not None and thousands not in THOUSANDS_MARKS:
        shown = ", ".join(repr(mark) for mark in THOUSANDS_MARKS)
        raise MappingError(
            f"{origin}: {key}.thousands: expected one of {shown}; found {_shown(thousands)}."
        )
    if thousands == decimal:
        raise MappingError(
            f"{origin}: {key}: decimal and thousands are both {decimal!r}; a number such as "
            f"1{decimal}234 could then be read two ways."
        )
    return decimal, thousands


def _field_lookup(spec: dict[str, Any], key: str, origin: str) -> Lookup | None:
    if "lookup" in spec:
        return lookup_from_spec(spec, key, origin)
    if "key" in spec:
        raise MappingError(f"{origin}: {key}.key goes with lookup: name the table too.")
    return None


def _field_type(spec: dict[str, Any], key: str, origin: str) -> FieldType | None:
    field_type = spec.get("type")
    if field_type is not None and field_type not in FIELD_TYPES:
        raise MappingError(
            f"{origin}: {key}.type: expected one of {', '.join(FIELD_TYPES)}; "
            f"found {_shown(field_type)}{_suggest(_text(field_type), FIELD_TYPES)}."
        )
    if "value" in spec:
        value_type = _json_type(spec["value"])
        if value_type is None:
            raise MappingError(
                f"{origin}: {key}.value: expected text, a number or true/false; "
                f"found {_kind(spec['value'])}."
            )
        if field_type is not None and field_type != value_type:
            raise MappingError(
                f"{origin}: {key}: the value {_shown(spec['value'])} is a {value_type}, "
                f"but type says {field_type}."
            )
        return value_type
    return field_type


def _word_list(spec: dict[str, Any], word: str, key: str, origin: str) -> tuple[str, ...] | None:
    if word not in spec:
        return None
    values = spec[word]
    if not isinstance(values, list) or not values:
        values = [values]
    if any(isinstance(v, (dict, list)) or v is None for v in values):
        raise MappingError(
            f"{origin}: {key}.{word}: expected a list of words; found {_shown(values)}."
        )
    return tuple(word for v in values for word in _list_words(v))


def _list_words(value: Any) -> tuple[str, ...]:
    """YAML reads `true`, `yes` and `on` alike as True and loses which was written: a
    boolean in a word list stands for all three spellings."""
    if isinstance(value, bool):
        return ("true", "yes", "on") if value else ("false", "no", "off")
    return (str(value),)


def _word(value: Any) -> str:
    """YAML reads `yes` as True; the word list compares text, so write it back as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_typed(value: Any, field_type: FieldType | None, key: str, origin: str) -> None:
    found = _json_type(value)
    if found is None or (field_type is not None and found != field_type):
        raise MappingError(
            f"{origin}: {key}: expected a {field_type or 'string, number or boolean'}; "
            f"found {_shown(value)}."
        )


def _json_type(value: Any) -> FieldType | None:
    """The Torque type of a constant or default in the mapping, None if it has none."""
    found = json_type(value)
    return found if found in FIELD_TYPES else None  # type: ignore[return-value]


def _filter(expression: Any, origin: str) -> str | None:
    """The filter's text, once it has parsed and passed the allow-list (filter_language)."""
    if expression is None:
        return None
    if not isinstance(expression, str) or not expression.strip():
        raise MappingError(
            f"{origin}: filter: expected an expression such as \"status == 'paid'\"; "
            f"found {_shown(expression)}."
        )
    try:
        parse_filter(expression)
    except FilterError as exc:
        raise MappingError(f"{origin}: filter: {exc}") from None
    return expression


def _column_name(value: Any, key: str, origin: str) -> str:
    """A column as the source names it. In backticks, as in a filter: `` `customer.wallet` ``
    is the column `customer.wallet` (a nested field of a JSON Lines source)."""
    if not isinstance(value, str) or not value:
        raise MappingError(f"{origin}: {key}: expected a column name; found {_kind(value)}.")
    if len(value) > 2 and value.startswith("`") and value.endswith("`"):
        return value[1:-1]
    return value


def _check_keys(
    section: dict[str, Any], allowed: tuple[str, ...], prefix: str, origin: str
) -> None:
    for key in section:
        if key not in allowed:
            raise MappingError(
                f"{origin}: {prefix}{key}: unknown key{_suggest(str(key), allowed)}. "
                f"Expected {', '.join(allowed)}."
            )


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return _shown(value)


_SHOWN = reprlib.Repr()  # a 1 kB YAML file can hold a list of a billion items (aliases)
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 2, 6, 6
_SHOWN.maxstring = _SHOWN.maxother = 400


def _shown(value: Any) -> str:
    """A value from the mapping file for a message: its repr, cut short if it is huge."""
    return _SHOWN.repr(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _shown(value)
