"""The pipeline: read -> mapping -> send -> books, for `run` and `rerun`.

- `run`: `Run`, the pipeline itself, progress as a callback;
- `run_plan`: what a run sends and where its records go, from a source; `rerun`: the same
  from a failure report;
- `run_records`: the run's books kept in the files and in the counts;
- `target`: the endpoint, the envelope, the key and the policy.
"""

from __future__ import annotations

from backfill._exports import lazy_exports

__all__ = ["Run", "RunPlan", "RunSummary", "Target"]
__getattr__ = lazy_exports(
    __name__,
    {
        "Run": "backfill.pipeline.run",
        "RunPlan": "backfill.pipeline.run_plan",
        "RunSummary": "backfill.pipeline.run",
        "Target": "backfill.pipeline.target",
    },
)
