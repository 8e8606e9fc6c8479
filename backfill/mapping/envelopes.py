"""Torque's envelopes: the same event in the shapes Torque's endpoints have accepted.

The mapping, timestamps and everything upstream are envelope-agnostic: they produce an
`Event`, and only here does it meet a URL, a key header and a body shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # what json.dumps(ensure_ascii=False) writes
from typing import Any

from backfill.errors import UsageError

JsonValue = str | int | float | bool


def json_type(value: object) -> str:
    """The JSON name of a value's type, as messages to the user say it; Torque's three
    parameter types are among them (a bool is a boolean here, never a number)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "array" if isinstance(value, (list, tuple)) else "object"


def json_member(name: str, values: list[JsonValue]) -> list[str]:
    """`"name":value` as json.dumps writes each value (a float's repr, an int's digits)."""
    prefix = f"{encode_basestring(name)}:"
    return [prefix + _json_scalar(value) for value in values]


def _json_scalar(value: JsonValue) -> str:
    if isinstance(value, str):
        return encode_basestring(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    return repr(value)  # int and finite float: json.dumps writes their repr


@dataclass(frozen=True)
class Event:
    """One custom event, independent of the envelope it will travel in."""

    timestamp: int
    pubkey: str
    event_name: str
    data: dict[str, JsonValue] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The documented (torque-v1) shape: what the failure report stores."""
        return TORQUE_V1.body(self)

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Event:
        return TORQUE_V1.parse(body)


@dataclass(frozen=True)
class Api:
    """An envelope: endpoint, key header, and the body's field names."""

    name: str
    default_endpoint: str
    key_header: str
    path: str
    description: str
    user_key: str
    name_key: str
    data_key: str
    nested_user: bool

    def body(self, event: Event) -> dict[str, Any]:
        user: Any = {"pubKey": event.pubkey} if self.nested_user else event.pubkey
        return {
            "timestamp": event.timestamp,
            self.user_key: user,
            self.name_key: event.event_name,
            self.data_key: event.data,
        }

    def encode(self, event: Event) -> bytes:
        """The request body, compact, serialised once."""
        return json.dumps(self.body(event), ensure_ascii=False, separators=(",", ":")).encode()

    def encode_many(
        self, stamps: list[int], pubkeys: list[str], event_name: str, fields: list[list[str]]
    ) -> list[bytes]:
        """Bodies of many events at once, byte for byte what `encode` writes, without a dict
        per event: `fields` holds for each field its `"name":value` JSON text per event, or
        "" where the event leaves the field out (see `json_member`)."""
        user_open = f'"{self.user_key}":{{"pubKey":' if self.nested_user else f'"{self.user_key}":'
        user_close = "}" if self.nested_user else ""
        head = '{"timestamp":'
        middle = f'{user_close},"{self.name_key}":{encode_basestring(event_name)},'
        data_open = f'"{self.data_key}":{{'
        rows = zip(*fields) if fields else ([()] * len(stamps))
        return [
            f"{head}{stamp},{user_open}{encode_basestring(key)}{middle}{data_open}"
            f"{','.join(filter(None, members))}}}}}".encode()
            for stamp, key, members in zip(stamps, pubkeys, rows)
        ]

    def parse(self, body: dict[str, Any]) -> Event:
        """The inverse of `body`; raises ValueError with a Torque-like message."""
        missing = [
            f"body/{key}"
            for key in ("timestamp", self.user_key, self.name_key, self.data_key)
            if key not in body
        ]
        if missing:
            raise ValueError(", ".join(f"{key} Required" for key in missing))
        user = body[self.user_key]
        if self.nested_user:
            if not isinstance(user, dict) or "pubKey" not in user:
                raise ValueError(f"body/{self.user_key}/pubKey Required")
            user = user["pubKey"]
        return Event(body["timestamp"], user, body[self.name_key], body[self.data_key])


TORQUE_V1 = Api(
    name="torque-v1",
    default_endpoint="https://api.torque.so/events",
    key_header="x-torque-api-key",
    path="/events",
    description="the documented envelope: {timestamp, user: {pubKey}, event_name, event_data}",
    user_key="user",
    name_key="event_name",
    data_key="event_data",
    nested_user=True,
)
# Both later envelopes carry the user's key, the event's name and its data as flat members
# under the same names: written once here.
_FLAT_BODY: dict[str, Any] = {
    "user_key": "userPubkey",
    "name_key": "eventName",
    "data_key": "data",
    "nested_user": False,
}
TORQUE_SERVER = Api(
    name="torque-server",
    default_endpoint="https://server.torque.so/event/custom",
    key_header="x-torque-api-key",
    path="/event/custom",
    description="the middle envelope: {timestamp, userPubkey, eventName, data}",
    **_FLAT_BODY,
)
TORQUE_INGEST = Api(
    name="torque-ingest",
    default_endpoint="https://ingest.torque.so/events",
    key_header="x-api-key",
    path="/ingest/events",
    description="the current ingest envelope: {userPubkey, timestamp, eventName, data}",
    **_FLAT_BODY,
)
APIS: dict[str, Api] = {api.name: api for api in (TORQUE_V1, TORQUE_SERVER, TORQUE_INGEST)}


def get_api(name: str) -> Api:
    try:
        return APIS[name]
    except KeyError:
        raise UsageError(
            f"--api {name!r} is not known; expected one of {', '.join(APIS)}."
        ) from None
