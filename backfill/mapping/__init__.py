"""The mapping: the YAML that turns a source's rows into Torque events, and what applies it.

- `spec`: the YAML file loaded and checked (`load_mapping`, `mapping_from_dict`), each key
  by `spec_checks`; `json_schema`: the same rules as a JSON Schema for editors.
- `convert`: exact, vectorised conversions to Torque's three types and epoch milliseconds;
  `pubkey`: Solana public keys; `lookup`: fields found by key in a second file.
- `filter_language`: the `filter`, parsed against an allow-list, into `filter_tree`'s nodes
  (`filter_refusal` words what is not allowed); `row_filter`: it evaluated with Arrow
  kernels (`filter_values`: the Arrow conversions under it); `pushdown`: it tested against
  Parquet row-group statistics.
- `mapped_read`: only what a mapping reads of a source; `events`: chunks in, events and row
  failures out, through `field_columns` (each field converted, each row's problems) and
  `event_bodies` (the request bodies); `envelopes`: the same event in each of Torque's
  request shapes.

Nothing here knows of HTTP or of the run's records.
"""

from __future__ import annotations

from backfill._exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    EventMapper=".events",
    Mapping=".spec",
    load_mapping=".spec",
    mapping_from_dict=".spec",
)
