"""The reading half of a run: chunks from the plan, cut by --limit, screened by the ledger,
fed to the senders a piece at a time.

Mapping and serialising run in a thread, off the event loop; the feed is bounded, so the
reader never runs far ahead and memory stays flat however large the file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from backfill.books.id_screen import screen
from backfill.mapping.envelopes import Api
from backfill.mapping.events import MappedChunk
from backfill.mapping.limit import limit_chunk
from backfill.pipeline.run_plan import RunPlan
from backfill.pipeline.run_records import Item, RunRecords
from backfill.pipeline.senders import Fed, Origin
from backfill.send.feed import EventFeed

FEED_PIECE = 256  # events the reader adds at once, checking for a stop in between


async def read_into(
    feed: EventFeed[Fed],
    plan: RunPlan,
    api: Api,
    records: RunRecords,
    stopping: asyncio.Event,
) -> None:
    """Feed every event of `plan` that is still to send, until the end or a stop."""
    chunks = plan.feed()
    remaining = plan.limit
    while not stopping.is_set():
        prepared = await asyncio.to_thread(_next_prepared, chunks, api)
        if prepared is None:
            return
        books = records.books(prepared[0].source)
        chunk, items, remaining = limit_chunk(*prepared, remaining, books.not_done)
        records.settle_offline(chunk)
        if records.ledger is not None and plan.id_columns:
            screened = await asyncio.to_thread(
                screen, chunk, items, records.ledger, plan.id_columns,
                books.is_done, books.accepted_before,
            )  # fmt: skip
            items = records.apply_screen(books, screened)
        origin = Origin(chunk, books)
        for start in range(0, len(items), FEED_PIECE):
            if stopping.is_set():
                records.unsent(len(records.fresh(books, items[start:])))
                break
            piece = records.fresh(books, items[start : start + FEED_PIECE])
            if piece:
                records.resending(books, piece)
                await feed.put([(item, origin) for item in piece])
        if remaining == 0:
            return


def _next_prepared(
    chunks: Iterator[MappedChunk], api: Api
) -> tuple[MappedChunk, list[Item]] | None:
    """The next chunk with its events serialised: runs in a thread, off the event loop."""
    chunk = next(chunks, None)
    if chunk is None:
        return None
    return chunk, list(chunk.bodies(api))
