"""The pipeline: read -> mapping -> send -> books, for `run` and `rerun`.

- `run`: `Run`, the pipeline itself, progress as a callback; `reading`: its reading half,
  `senders`: its sending half; `summary`: what it tells its caller (`Progress`,
  `RunSummary`);
- `run_plan`: what a run sends and where its records go, from a source; `rerun`: the same
  from a failure report;
- `run_records`: where each row went, in the counts and each file's books; `run_files`:
  the report, journal and uncertain list it writes them to;
- `target`: the endpoint, the envelope, the key and the policy.
"""

from __future__ import annotations

from backfill._exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__, Run=".run", RunPlan=".run_plan", RunSummary=".summary", Target=".target"
)
