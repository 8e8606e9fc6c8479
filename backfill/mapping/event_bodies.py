"""The rows of a chunk that map, written as request bodies column by column.

Apart from the event mapper (events.py): a chunk's bodies are written only when asked for
(`validate` never asks), for the envelope asked for, without an `Event` or a dict per row;
this is the one path by which events are made (an `Event` is a body read back).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backfill.mapping.convert import Converted
from backfill.mapping.envelopes import Api, json_member
from backfill.mapping.field_columns import FieldColumn
from backfill.mapping.spec import FieldSpec, Mapping

_OMIT = object()  # a field left out of one event (missing, optional, no default)


@dataclass(frozen=True)
class MappedRows:
    """What the rows that map become: `ok` marks them among the chunk's kept rows."""

    mapping: Mapping
    ok: np.ndarray
    timestamp: Converted
    pubkey: Converted
    columns: list[FieldColumn | None]

    def encode(self, api: Api) -> list[bytes]:
        """The request bodies, in row order, in `api`'s envelope."""
        stamps, keys, data_columns = self._values()
        members = []
        for spec, values in zip(self.mapping.fields, data_columns):
            if spec.column is None:  # a constant: one text for every event
                members.append(json_member(spec.name, [spec.value]) * len(stamps))
            elif _OMIT in values:
                texts = iter(json_member(spec.name, [v for v in values if v is not _OMIT]))
                members.append([next(texts) if v is not _OMIT else "" for v in values])
            else:
                members.append(json_member(spec.name, values))
        return api.encode_many(stamps, keys, self.mapping.event_name, members)

    def _values(self) -> tuple[list[int], list[str], list[list[Any]]]:
        """Timestamps, keys and each field's values (or _OMIT) of the rows that map."""
        keep = self.ok.tolist()
        stamps = _select(self.timestamp.materialize(), keep)
        keys = _select(self.pubkey.materialize(), keep)
        data_columns = [
            _field_values(spec, column, keep, len(stamps))
            for spec, column in zip(self.mapping.fields, self.columns)
        ]
        return stamps, keys, data_columns


def _field_values(
    spec: FieldSpec, column: FieldColumn | None, keep: list[bool], count: int
) -> list[Any]:
    if column is None:
        return [spec.value] * count
    values = _select(column.converted.materialize(), keep)
    missing = _select(column.converted.missing.tolist(), keep)
    if not any(missing):
        return values
    fill = spec.default if spec.has_default else _OMIT
    return [fill if absent else value for value, absent in zip(values, missing)]


def _select(values: list[Any], keep: list[bool]) -> list[Any]:
    return [value for value, wanted in zip(values, keep) if wanted]
