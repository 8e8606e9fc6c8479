"""The events the sandbox accepts: Torque's rules for any event, and each custom event's schema.

Apart from the server so that what Torque would reject (and the exact 400 message) is read
in one place: `accepted_event` is the whole check, the server only answers with it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backfill.errors import UsageError
from backfill.mapping.convert import type_of_column
from backfill.mapping.envelopes import Api, Event, json_type
from backfill.mapping.pubkey import pubkey_problem

if TYPE_CHECKING:
    from backfill.mapping.spec import Mapping as Mapping_
    from backfill.read.source import Source

FIELD_TYPES = ("string", "number", "boolean")
MIN_MS_TIMESTAMP = 10**11  # 1973-03-03 in milliseconds, 5138 AD in seconds: smaller means seconds
UNKNOWN_EVENT = "Event not found for this API key"


@dataclass(frozen=True)
class EventSchema:
    """A custom event as created in Torque: its name and typed parameters."""

    event_name: str
    fields: dict[str, str]
    required: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "required", frozenset(self.required))
        bad = {name: kind for name, kind in self.fields.items() if kind not in FIELD_TYPES}
        if bad:
            raise UsageError(
                f"Schema {self.event_name!r}: field types {bad} are not one of {FIELD_TYPES}."
            )
        undeclared = sorted(self.required - self.fields.keys())
        if undeclared:
            raise UsageError(
                f"Schema {self.event_name!r}: required fields {undeclared} are not declared "
                f"in its fields; add them to fields or drop them from required."
            )


def _schemas_from_json(text: str) -> tuple[EventSchema, ...]:
    """`[{"event_name": ..., "fields": {name: type}, "required": [...]}, ...]`."""
    return tuple(
        EventSchema(item["event_name"], dict(item["fields"]), frozenset(item.get("required", ())))
        for item in json.loads(text)
    )


def schema_from_mapping(mapping: Mapping_, source: Source | None = None) -> EventSchema:
    """The custom event a mapping describes, as Torque would hold it after its creation.

    A short-form field takes its type from the source's column (text in a CSV); without a
    source it is taken to be text. Fields that may be left out (`optional`) are not required.
    """
    fields: dict[str, str] = {}
    for spec in mapping.fields:
        fields[spec.name] = spec.type or _column_type(spec.column, source)
    required = frozenset(spec.name for spec in mapping.fields if not spec.optional)
    return EventSchema(mapping.event_name, fields, required)


def _column_type(column: str | None, source: Source | None) -> str:
    if column is None or source is None or column not in source.columns:
        return "string"
    return type_of_column(source.schema.field(column).type)


def accepted_event(api: Api, raw: bytes, schemas: dict[str, EventSchema]) -> Event:
    """The event in `raw` if Torque would accept it; else ValueError with Torque's message."""
    event = api.parse(_decode(raw))
    problems = _event_problems(api, event)
    if not problems and schemas:
        schema = schemas.get(event.event_name)
        if schema is None:
            raise ValueError(UNKNOWN_EVENT)
        problems = _schema_problems(api, schema, event.data)
    if problems:
        raise ValueError(", ".join(problems))
    return event


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise ValueError(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"body must be a JSON object, found {json_type(body)}")
    return body


def _event_problems(api: Api, event: Event) -> list[str]:
    """What Torque would reject in any event, whatever its schema."""
    problems = []
    stamp = event.timestamp
    if type(stamp) is not int:
        problems.append(
            f"body/timestamp must be an integer of milliseconds since the Unix epoch, "
            f"found {_describe(stamp)}"
        )
    elif stamp < MIN_MS_TIMESTAMP:
        problems.append(
            f"body/timestamp {stamp} looks like seconds, not milliseconds since the Unix epoch "
            f"(it would be before 1973-03-03); multiply seconds by 1000"
        )
    user_path = f"body/{api.user_key}/pubKey" if api.nested_user else f"body/{api.user_key}"
    problem = pubkey_problem(event.pubkey)
    if problem:
        problems.append(f"{user_path} is not a Solana public key: {problem}")
    if not isinstance(event.event_name, str) or not event.event_name:
        problems.append(
            f"body/{api.name_key} must be a non-empty string, found {_describe(event.event_name)}"
        )
    if not isinstance(event.data, dict):
        problems.append(f"body/{api.data_key} must be an object, found {_describe(event.data)}")
        return problems
    for name, value in event.data.items():
        if not isinstance(value, (str, int, float)):  # bool is an int: accepted here
            problems.append(
                f"body/{api.data_key}/{name} must be a string, number or boolean, "
                f"found {_describe(value)}"
            )
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"body/{api.data_key}/{name} must be a finite number, found {value}")
    return problems


def _schema_problems(api: Api, schema: EventSchema, data: dict[str, Any]) -> list[str]:
    """What Torque would reject for this event's declared structure."""
    problems = []
    for name, value in data.items():
        expected = schema.fields.get(name)
        found = json_type(value)
        if expected is None:
            problems.append(
                f"body/{api.data_key}/{name} is not a field of event {schema.event_name!r} "
                f"(fields: {', '.join(schema.fields) or 'none'})"
            )
        elif found != expected:
            problems.append(f"body/{api.data_key}/{name} must be a {expected}, found {found}")
    problems.extend(
        f"body/{api.data_key}/{name} Required" for name in sorted(schema.required - data.keys())
    )
    return problems


def _describe(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, (dict, list)) else ""
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{json_type(value)} {text}".rstrip()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; numbers must be finite")
