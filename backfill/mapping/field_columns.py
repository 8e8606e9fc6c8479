"""Each column a mapping reads, converted over a whole chunk, and every problem of a row.

Apart from the event mapper (events.py), which assembles chunks and their failures: turning
a column into its Torque type and saying, per row, everything that is wrong with it (not
just the first thing) is the part a new type or rule changes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from backfill.mapping.convert import (
    Converted,
    Problem,
    as_array,
    to_boolean,
    to_number,
    to_string,
    type_of_column,
)
from backfill.mapping.lookup import looked_up
from backfill.mapping.spec import FieldSpec, Mapping

MISSING = "is missing (add default: or optional: true to the field to allow that)"
MISSING_ALWAYS = "is missing"


@dataclass(frozen=True)
class FieldColumn:
    """One `event_data` field's column, converted: `label` names it in messages."""

    spec: FieldSpec
    label: str
    converted: Converted


def convert_field(spec: FieldSpec, table: pa.Table) -> FieldColumn | None:
    """The field's column as its Torque type (through its lookup, if any); None for a
    constant, which has no column."""
    if spec.column is None:
        return None
    column = as_array(table.column(spec.column))
    field_type = spec.type or type_of_column(column.type)
    if field_type == "number":
        convert: Callable[[pa.Array], Converted] = functools.partial(
            to_number, decimal=spec.decimal, thousands=spec.thousands, scale=spec.scale
        )
    elif field_type == "boolean":
        convert = functools.partial(
            to_boolean, true_values=spec.true_values, false_values=spec.false_values
        )
    else:
        convert = to_string
    label = f"event_data.{spec.name} (column {spec.column!r})"
    return FieldColumn(spec, label, looked_up(column, spec.lookup, convert))


def failure_messages(
    mapping: Mapping,
    table: pa.Table,
    timestamp: Converted,
    pubkey: Converted,
    columns: list[FieldColumn | None],
) -> dict[int, list[tuple[str, str]]]:
    """Row position -> [(reason, message)]: every problem of the row, not just the first."""
    checks: list[tuple[str, str, Converted, str | None]] = [
        (
            f"timestamp (column {mapping.timestamp_column!r})",
            mapping.timestamp_column,
            timestamp,
            MISSING_ALWAYS,
        ),
        (
            f"user.pubKey (column {mapping.pubkey_column!r})",
            mapping.pubkey_column,
            pubkey,
            MISSING_ALWAYS,
        ),
    ]
    for column in columns:
        if column is not None:
            spec = column.spec
            missing = None if spec.optional or spec.has_default else MISSING
            checks.append((column.label, spec.column or "", column.converted, missing))
    messages: dict[int, list[tuple[str, str]]] = {}
    for label, column_name, converted, missing_reason in checks:
        problems = list(converted.problems)
        if missing_reason is not None:
            problems.append(Problem(converted.missing, missing_reason, _describe_missing))
        for problem in problems:
            positions = np.flatnonzero(problem.mask)
            if not len(positions):
                continue
            values = table.column(column_name).take(pa.array(positions)).to_pylist()
            reason = f"{label} {problem.reason}"
            for position, value in zip(positions.tolist(), values):
                messages.setdefault(position, []).append(
                    (reason, f"{reason}: {problem.describe(value)}")
                )
    return messages


def _describe_missing(value: Any) -> str:
    return f"found {value!r}"
