"""The YAML mapping: which columns become the event's timestamp, user and typed fields.

The whole file is checked before any row is read, and checked again against the source's
columns before anything is sent: every mistake is one `MappingError` that names the file,
the key (`event_data.orderAmount.type`), what was found and what was expected, with a
"did you mean" for typos. The mapping knows nothing of HTTP or of how rows are read.

Here: what a checked mapping is (`Mapping`, `FieldSpec`) and how it is assembled from its
sections; reading the YAML and the check of each key are `spec_checks`'.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from backfill.errors import MappingError
from backfill.mapping.convert import FieldType, type_of_column
from backfill.mapping.filter_language import filter_columns
from backfill.mapping.lookup import Lookup
from backfill.mapping.order_ids import IdColumns
from backfill.mapping.spec_checks import (
    FIELD_KEYS,
    REQUIRED_TOP_KEYS,
    TOP_KEYS,
    as_word,
    check_keys,
    check_typed,
    checked_filter,
    checked_id,
    checked_time_columns,
    checked_timestamp,
    checked_user,
    column_name,
    field_lookup,
    field_type_of,
    found_kind,
    number_marks,
    number_scale,
    read_mapping_yaml,
    shown,
    suggest,
    word_list,
)
from backfill.mapping.times import TimestampRule


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
    scale: Decimal | None = None  # each number times this, in decimal (0.01: cents)
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
    id_columns: IdColumns = ()  # the order id that holds across exports (the id ledger)
    time_column: str | None = None  # a time of day beside the date in timestamp_column
    timezone_column: str | None = None  # each row's zone (IANA, PST, +02:00)

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
                    f"{suggest(column, columns)}. Its columns are: {', '.join(columns)}."
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
        keys = [("timestamp.column", self.timestamp_column)]
        if self.time_column is not None:
            keys.append(("timestamp.time_column", self.time_column))
        if self.timezone_column is not None:
            keys.append(("timestamp.timezone_column", self.timezone_column))
        keys.append(("user.pubKey", self.pubkey_column))
        keys += [("id", column) for column in self.id_columns]
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
    return mapping_from_dict(read_mapping_yaml(path), origin=str(path))


def mapping_from_dict(data: Any, origin: str = "<mapping>") -> Mapping:
    """Check a parsed mapping (a dict as YAML gives it) and build the `Mapping`."""
    if not isinstance(data, dict):
        raise MappingError(
            f"{origin}: expected a mapping with the keys {', '.join(REQUIRED_TOP_KEYS)}; "
            f"found {found_kind(data)}."
        )
    check_keys(data, TOP_KEYS, "", origin)
    for key in REQUIRED_TOP_KEYS:
        if key not in data:
            raise MappingError(f"{origin}: the required key {key!r} is missing.")
    event_name = data["event_name"]
    if not isinstance(event_name, str) or not event_name.strip():
        raise MappingError(
            f"{origin}: event_name: expected the custom event's name as text; "
            f"found {found_kind(event_name)}."
        )
    timestamp_column, rule = checked_timestamp(data["timestamp"], origin)
    time_column, timezone_column = checked_time_columns(data["timestamp"], origin)
    pubkey_column, pubkey_lookup = checked_user(data["user"], origin)
    return Mapping(
        event_name=event_name,
        timestamp_column=timestamp_column,
        timestamp_rule=rule,
        time_column=time_column,
        timezone_column=timezone_column,
        pubkey_column=pubkey_column,
        fields=_fields(data["event_data"], origin),
        filter=checked_filter(data.get("filter"), origin),
        origin=origin,
        raw=data,
        pubkey_lookup=pubkey_lookup,
        id_columns=checked_id(data.get("id"), origin),
    )


def _fields(section: Any, origin: str) -> tuple[FieldSpec, ...]:
    if not isinstance(section, dict) or not section:
        raise MappingError(
            f"{origin}: event_data: expected the event's fields, each a column name or "
            f"keys such as column and type; found {found_kind(section)}."
        )
    return tuple(_field(str(name), spec, origin) for name, spec in section.items())


def _field(name: str, spec: Any, origin: str) -> FieldSpec:
    key = f"event_data.{name}"
    if isinstance(spec, str):
        return FieldSpec(name=name, column=column_name(spec, key, origin))
    if not isinstance(spec, dict):
        raise MappingError(
            f"{origin}: {key}: expected a column name, or keys such as column and type; "
            f"found {found_kind(spec)}."
        )
    spec = {as_word(k) if isinstance(k, bool) else k: v for k, v in spec.items()}
    check_keys(spec, FIELD_KEYS, key + ".", origin)
    lookup = field_lookup(spec, key, origin)
    if lookup is not None:
        spec = {k: v for k, v in spec.items() if k not in ("lookup", "key", "value", "match")}
        if "type" not in spec:  # the table's column decides, not the source's
            spec["type"] = type_of_column(lookup.index().values.type)
    elif ("column" in spec) == ("value" in spec):
        raise MappingError(f"{origin}: {key}: give exactly one of column or value.")
    field_type = field_type_of(spec, key, origin)
    trues, falses = word_list(spec, "true", key, origin), word_list(spec, "false", key, origin)
    if (trues is not None or falses is not None) and field_type != "boolean":
        raise MappingError(f"{origin}: {key}: true and false lists need type: boolean.")
    optional = spec.get("optional", False)
    if not isinstance(optional, bool):
        raise MappingError(
            f"{origin}: {key}.optional: expected true or false; found {shown(optional)}."
        )
    if "default" in spec:
        check_typed(spec["default"], field_type, f"{key}.default", origin)
    decimal, thousands = number_marks(spec, field_type, key, origin)
    scale = number_scale(spec, field_type, key, origin)
    if "column" not in spec:
        return FieldSpec(name=name, value=spec["value"], type=field_type)
    return FieldSpec(
        name=name,
        column=column_name(spec["column"], f"{key}.column", origin),
        type=field_type,
        true_values=trues,
        false_values=falses,
        default=spec.get("default"),
        has_default="default" in spec,
        optional=optional,
        decimal=decimal,
        thousands=thousands,
        scale=scale,
        lookup=lookup,
    )
