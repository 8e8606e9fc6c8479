"""The run's books: where every row went, in files that survive a crash.

- `record_file`: append-only lines, one `write(2)` each; `report`: the failure report;
  `journal`: where each sent row stands, for `--resume`.
- `id_ledger`: the delivered ids across runs, on `id_segments` (sorted segments of digests:
  `id_digests` their arithmetic, `segment_tables` their SQLite tables) and `bloom` (blocked
  Bloom filters), its file opened by `ledger_file`, this run's uncommitted ids in
  `id_claims`; `id_screen`: a chunk's events against the ledger.
"""

from __future__ import annotations

from backfill._exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__, IdLedger=".id_ledger", ReportWriter=".report", read_report=".report"
)
