"""A JSON Schema of map.yaml, so that editors complete and check mappings as they are typed.

The schema is built from the loader's own key lists (`spec_checks.TOP_KEYS`, `FIELD_KEYS`, ...):
a key the loader learns appears here without a second list to keep in step, and a test
checks schema and loader against every mapping example in README.md and docs/. The schema is the
editor's first line; the loader stays the judge (it also checks time zones, filters and
columns against the source, which a schema cannot).
"""

from __future__ import annotations

from typing import Any

from backfill.mapping import spec_checks as loader

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://github.com/torque-backfill/backfill/map.schema.json"

_NAME = {"type": "string", "minLength": 1}
_CONSTANT = {"type": ["string", "number", "boolean"]}
_WORDS = {
    "description": "Words for this value, compared case-insensitively.",
    "anyOf": [_CONSTANT, {"type": "array", "items": _CONSTANT, "minItems": 1}],
}

TOP_DESCRIPTIONS: dict[str, dict[str, Any]] = {
    "event_name": {
        "description": "The custom event's name, exactly as created in Torque.",
        "type": "string",
        "pattern": r"\S",
    },
    "filter": {
        "description": "Rows to send, in backfill's filter language (see the README), "
        "e.g. \"status == 'paid'\".",
        "type": "string",
        "pattern": r"\S",
    },
    "id": {
        "description": "The column whose value identifies an order (for the ledger of sent "
        "ids), or a list of columns whose values together do, e.g. [order-id, transaction-type].",
        "anyOf": [_NAME, {"type": "array", "items": _NAME, "minItems": 1, "uniqueItems": True}],
    },
}
TIMESTAMP_DESCRIPTIONS: dict[str, dict[str, Any]] = {
    "column": {"description": "The column holding the order's time (or date).", **_NAME},
    "time_column": {
        "description": "A column holding the time of day, joined to the date in `column`.",
        **_NAME,
    },
    "timezone_column": {
        "description": "A column holding each row's zone: an IANA name, an abbreviation "
        "(PST, PDT, CET, CEST, GMT, UTC...) or an offset (+02:00).",
        **_NAME,
    },
    "unit": {"description": "How values are read.", "enum": list(loader.UNITS)},
    "format": {
        "description": "A strptime format for text that is not ISO-8601, e.g. '%d/%m/%y'.",
        "type": "string",
        "pattern": "%",
    },
    "timezone": {
        "description": "IANA time zone for values without an offset (default UTC).",
        **_NAME,
    },
    "dates": {
        "description": "Which comes first in day/month dates such as 05/06/2021.",
        "enum": ["day-first", "month-first"],
    },
}
_MATCH_RULE = {"enum": ["casefold", "trim"]}
LOOKUP_DESCRIPTIONS: dict[str, dict[str, Any]] = {
    "match": {
        "description": "Compare keys after this on both sides: casefold (case-insensitive), "
        "trim (spaces around), or a list of both.",
        "anyOf": [_MATCH_RULE, {"type": "array", "items": _MATCH_RULE, "minItems": 1}],
    },
    "column": {"description": "The orders' column holding the key.", **_NAME},
    "lookup": {
        "description": "A lookup table (CSV or Parquet), relative to the mapping file.",
        **_NAME,
    },
    "key": {"description": "The table's column matched against the orders' column.", **_NAME},
    "value": {"description": "The table's column whose value is taken.", **_NAME},
}
_LOOKUP_REQUIRED = ["column", "lookup", "key", "value"]

_LOOKUP = {"anyOf": [{"required": ["lookup"]}, {"required": ["key"]}]}
FIELD_DESCRIPTIONS: dict[str, dict[str, Any]] = {
    "column": {"description": "The source column.", **_NAME},
    "value": {"description": "A constant, the same for every event.", **_CONSTANT},
    "type": {"description": "Torque's type for the field.", "enum": list(loader.FIELD_TYPES)},
    "true": _WORDS,
    "false": _WORDS,
    "default": {"description": "Sent when the cell is empty.", **_CONSTANT},
    "optional": {"description": "Leave the field out when the cell is empty.", "type": "boolean"},
    "decimal": {"description": "The decimal mark of number text, e.g. ','.", **_NAME},
    "thousands": {"description": "The thousands separator of number text, e.g. '.'.", **_NAME},
    "scale": {
        "description": "Each number times this, exactly in decimal, e.g. 0.01 for cents.",
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0},
            {"type": "string", "pattern": r"^\s*[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?\s*$"},
        ],
    },
    "lookup": LOOKUP_DESCRIPTIONS["lookup"],
    "key": LOOKUP_DESCRIPTIONS["key"],
    "match": LOOKUP_DESCRIPTIONS["match"],
}


def _properties(keys: tuple[str, ...], described: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each key the loader accepts; one this module has no words for is still accepted."""
    return {key: described.get(key, {"description": "See the README."}) for key in keys}


def _section(
    keys: tuple[str, ...], described: dict[str, dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": _properties(keys, described),
        "additionalProperties": False,
        **extra,
    }


def mapping_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a mapping file, as `backfill schema` prints it."""
    timestamp = _section(
        loader.TIMESTAMP_KEYS,
        TIMESTAMP_DESCRIPTIONS,
        required=["column"],
        # a format reads text: it cannot go with an epoch unit (the loader says the same)
        **{
            "if": {"required": ["format"]},
            "then": {"properties": {"unit": {"enum": ["auto", "iso"]}}},
        },
    )
    field = _section(
        loader.FIELD_KEYS,
        FIELD_DESCRIPTIONS,
        oneOf=[
            {"required": ["column"], "not": {"anyOf": [{"required": ["value"]}, _LOOKUP]}},
            {"required": ["value"], "not": {"anyOf": [{"required": ["column"]}, _LOOKUP]}},
            {"required": _LOOKUP_REQUIRED},  # value: the table's column
        ],
    )
    pubkey = _section(loader.PUBKEY_KEYS, LOOKUP_DESCRIPTIONS, required=_LOOKUP_REQUIRED)
    wallet = {
        "description": "The column with the buyer's Solana public key, or a lookup of it.",
        "anyOf": [_NAME, pubkey, _section(("column",), LOOKUP_DESCRIPTIONS, required=["column"])],
    }
    top = {
        **_properties(loader.TOP_KEYS, TOP_DESCRIPTIONS),
        "timestamp": {
            "description": "When the order happened: a column name, or the keys below.",
            "anyOf": [_NAME, timestamp],
        },
        "user": _section(loader.USER_KEYS, {"pubKey": wallet}, required=["pubKey"]),
        "event_data": {
            "description": "The event's fields: a column name, or keys such as column and type.",
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"anyOf": [_NAME, field]},
        },
    }
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "backfill mapping (map.yaml)",
        "description": "Which columns become a Torque custom event's timestamp, user and fields.",
        "type": "object",
        "properties": {key: top[key] for key in loader.TOP_KEYS},
        "required": list(loader.REQUIRED_TOP_KEYS),
        "additionalProperties": False,
    }


def as_json_document(data: Any) -> Any:
    """A parsed YAML mapping as an editor's schema check sees it: YAML reads a bare `true:`
    or `yes:` key as a boolean, which the loader (and JSON) take as the text `true`/`false`."""
    if isinstance(data, dict):
        return {_key_text(key): as_json_document(value) for key, value in data.items()}
    if isinstance(data, list):
        return [as_json_document(value) for value in data]
    return data


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)
