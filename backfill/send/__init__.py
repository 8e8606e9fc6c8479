"""Sending: each event body delivered once, under the rate, with retries and a gate.

- `sender`: one body's delivery, the retry loop; `answers`: what each answer means;
  `backoff`: how long to wait before a retry; `limiter`: the rate limit every request
  shares.
- `wire`: the production client, POSTs on kept-alive HTTP/1.1 connections, with
  `answer_parser` (answers read by llhttp), `pool` (keep-alive without the race), `connect`
  (Happy Eyeballs), `endpoint` (the URL checked and encoded) and `route` (TLS trust and
  proxies, decided once at start-up); `httpx_poster`: the unit tests' seam.
- `gate`: how many requests may be in flight (its bookkeeping), `gate_sizing`: how that
  number moves; `feed`: the hand-off from the reader to the senders; `cutoff`: stopping a
  run whose endpoint is gone for good; `event_loop`: which asyncio loop runs it.

Nothing here reads files or knows of mappings.
"""

from __future__ import annotations

from backfill._exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__, SendPolicy=".sender", Sender=".sender", WirePoster=".wire"
)
