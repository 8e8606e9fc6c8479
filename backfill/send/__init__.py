"""Sending: each event body delivered once, under the rate, with retries and a gate.

- `sender`: one body's delivery: rate limit, retries, backoff, what each answer means;
  `HttpxPoster` is the unit tests' seam.
- `wire`: the production client, POSTs on kept-alive HTTP/1.1 connections; `route`: TLS
  trust and proxies, decided once at start-up.
- `gate`: how many requests may be in flight; `feed`: the hand-off from the reader to the
  senders; `cutoff`: stopping a run whose endpoint is gone for good; `event_loop`: which
  asyncio loop runs it.

Nothing here reads files or knows of mappings.
"""

from __future__ import annotations

from backfill._exports import lazy_exports

__all__ = ["SendPolicy", "Sender", "WirePoster"]
__getattr__ = lazy_exports(
    __name__,
    {
        "SendPolicy": "backfill.send.sender",
        "Sender": "backfill.send.sender",
        "WirePoster": "backfill.send.wire",
    },
)
