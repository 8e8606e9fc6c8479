"""DataFrames for notebooks: the events a mapping makes, and the rows that failed.

The notebooks in `notebooks/` explore a mapping (plots of the mapped timestamps and fields)
and debug a failure report (group the failures, try a corrected mapping on just those rows).
What they need beyond a one-liner lives here, so it is tested and the notebooks stay short.
Nothing here sends, prints or writes: it maps with the same `EventMapper` that `run` and
`rerun` use, so what a notebook shows is what would be sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backfill.look.validate import EXAMPLES_PER_REASON, mapped_chunks, open_inputs
from backfill.mapping.envelopes import Event
from backfill.mapping.events import EventMapper, RowFailure
from backfill.mapping.spec import Mapping
from backfill.pipeline.rerun import records_table
from backfill.read.source import DEFAULT_CHUNK_ROWS, Chunk, Source

ENVELOPE_COLUMNS = ("row", "timestamp", "pubKey")
FAILURE_COLUMNS = ("row", "stage", "status", "reason", "error")
RECORD_PREFIX = "record."  # record columns may be named like ours (the sample has `status`)
# Torque's types as nullable pandas dtypes: an optional field left out of an event is <NA>.
_DTYPES = {"number": "Float64", "boolean": "boolean", "string": "string"}


def events_frame(
    source: str | Path | Source,
    mapping: str | Path | Mapping,
    limit: int | None = None,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> pd.DataFrame:
    """The events a run would send (the first `limit`), one line each beside its row number.

    Timestamps are UTC pandas datetimes, so a wrong unit or time zone shows up as a shifted
    or empty histogram; each event_data field is a column typed as Torque will see it.
    Rows that fail or are filtered out are not here: `validate` counts those.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more; got {limit}.")
    opened_source, opened_mapping = open_inputs(
        source, mapping, delimiter, encoding=encoding, sheet=sheet
    )
    if limit is not None:  # read no more than a few chunks' worth for a small limit
        chunk_rows = min(chunk_rows, max(limit * 4, 1024))
    pairs: list[tuple[int, Event]] = []
    for chunk in mapped_chunks(opened_source, opened_mapping, chunk_rows):
        wanted = None if limit is None else limit - len(pairs)
        pairs.extend(islice(chunk.events(), wanted))
        if limit is not None and len(pairs) >= limit:
            break
    return _events_to_frame(pairs, opened_mapping)


def _events_to_frame(pairs: list[tuple[int, Event]], mapping: Mapping) -> pd.DataFrame:
    stamps = np.array([event.timestamp for _, event in pairs], dtype=np.int64)
    columns: dict[str, Any] = {
        "row": np.array([row for row, _ in pairs], dtype=np.int64),
        "timestamp": pd.to_datetime(stamps, unit="ms", utc=True),
        "pubKey": pd.array([event.pubkey for _, event in pairs], dtype="string"),
    }
    for spec in mapping.fields:
        values = pd.Series([event.data.get(spec.name) for _, event in pairs], dtype=object)
        dtype = _DTYPES.get(spec.type or "")
        label = f"data.{spec.name}" if spec.name in ENVELOPE_COLUMNS else spec.name
        columns[label] = values.astype(dtype) if dtype else values.convert_dtypes()
    return pd.DataFrame(columns)


def failures_frame(failures: Iterable[RowFailure]) -> pd.DataFrame:
    """One line per failure: where and why it failed, then its original values.

    The record's columns come last, prefixed `record.`, in the order they first appear,
    holding the values exactly as the report has them (an integer next to a missing value
    stays an integer, not 3.0); a CSV line that could not be read has only `record._line`.
    """
    lines = [
        {
            "row": failure.row,
            "stage": failure.stage,
            "status": failure.status,
            "reason": failure.reason,
            "error": failure.error,
            **{RECORD_PREFIX + str(key): value for key, value in failure.record.items()},
        }
        for failure in failures
    ]
    record_columns = list(dict.fromkeys(k for line in lines for k in line))[len(FAILURE_COLUMNS) :]
    frame = pd.DataFrame(lines, columns=[*FAILURE_COLUMNS, *record_columns], dtype=object)
    frame["row"] = frame["row"].astype("Int64")
    frame["status"] = frame["status"].astype("Int64")
    return frame


def failure_summary(
    failures: Iterable[RowFailure], examples: int = EXAMPLES_PER_REASON
) -> pd.DataFrame:
    """Failures grouped by stage, HTTP status and reason, most frequent first.

    Each group keeps its first `examples` row numbers and one full error message: enough
    to find the rows in the source and to see a failing value without opening the report.
    """
    groups: dict[tuple[str, int | None, str], dict[str, Any]] = {}
    for failure in failures:
        key = (failure.stage, failure.status, failure.reason)
        group = groups.setdefault(key, {"count": 0, "example_rows": [], "error": failure.error})
        group["count"] += 1
        if len(group["example_rows"]) < examples:
            group["example_rows"].append(failure.row)
    ordered = sorted(groups.items(), key=lambda item: (-item[1]["count"], item[0][0], item[0][2]))
    frame = pd.DataFrame(
        [
            {
                "stage": stage,
                "status": status,
                "reason": reason,
                "count": group["count"],
                "example_rows": group["example_rows"],
                "example_error": group["error"],
            }
            for (stage, status, reason), group in ordered
        ],
        columns=["stage", "status", "reason", "count", "example_rows", "example_error"],
    )
    frame["status"] = frame["status"].astype("Int64")
    return frame


def remap_failures(
    failures: Iterable[RowFailure], mapping: Mapping
) -> tuple[pd.DataFrame, list[RowFailure]]:
    """Map the records of failed rows again with a (corrected) mapping, as `rerun` would.

    Returns the events that now map (as `events_frame` shows them) and the rows that still
    fail, with their new reasons. Records that could not be read (`read` failures) have
    no columns, so no mapping can fix them: they stay failing as they were. Rows the mapping's
    filter drops are in neither. A mapping naming a column the records lack raises
    `MappingError` before any row is mapped.
    """
    failures = list(failures)
    numbered = [f for f in failures if f.row is not None and f.stage != "read"]
    unreadable = [f for f in failures if f.row is None or f.stage == "read"]
    if not numbered:
        return _events_to_frame([], mapping), unreadable
    columns = list(dict.fromkeys(key for f in numbered for key in f.record))
    mapping.check_columns(columns, "the failed rows' records")
    rows = np.array([f.row for f in numbered], dtype=np.int64)
    mapped = EventMapper(mapping, numbered[0].source).map_chunk(
        Chunk(rows, records_table(numbered))
    )
    return _events_to_frame(list(mapped.events()), mapping), [*mapped.failures, *unreadable]
