"""Looking before sending: the commands that map a source and say what a run would do.

- `validate`: map a whole source without sending (`validate`, `preview`);
- `plan`: the counts, the span, the time a run would take, and `audit`'s warnings, with
  `duplicates` (repeated ids in bounded memory);
- `draft`: `init`'s first mapping, with `time_guess` for the timestamp columns;
- `explore`: DataFrames of events and failures for notebooks.
"""

from __future__ import annotations

from backfill._exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__, draft_mapping=".draft", plan=".plan", preview=".validate", validate=".validate"
)
