"""The bounded hand-off between the reader and the senders (`backfill.send.feed.EventFeed`)."""

from __future__ import annotations

import asyncio

import pytest
from virtual_time import run_virtual

from backfill.send.feed import EventFeed


def test_items_come_out_in_order_then_none_once_closed_and_empty() -> None:
    async def go() -> list[int | None]:
        feed: EventFeed[int] = EventFeed(10)
        await feed.put([1, 2, 3])
        feed.close()
        return [await feed.get() for _ in range(5)]

    assert asyncio.run(go()) == [1, 2, 3, None, None]


def test_every_waiting_taker_gets_an_item_when_several_arrive() -> None:
    async def go() -> list[int | None]:
        feed: EventFeed[int] = EventFeed(10)
        takers = [asyncio.ensure_future(feed.get()) for _ in range(3)]
        await asyncio.sleep(0)  # yields to the loop once; no time passes
        await feed.put([7, 8, 9])
        return list(await asyncio.wait_for(asyncio.gather(*takers), 2))

    assert sorted(asyncio.run(go())) == [7, 8, 9]  # type: ignore[type-var]


def test_closing_wakes_takers_that_wait_on_an_empty_feed() -> None:
    async def go() -> list[int | None]:
        feed: EventFeed[int] = EventFeed(10)
        takers = [asyncio.ensure_future(feed.get()) for _ in range(2)]
        await asyncio.sleep(0)  # yields to the loop once; no time passes
        feed.close()
        return list(await asyncio.wait_for(asyncio.gather(*takers), 2))

    assert asyncio.run(go()) == [None, None]


def test_a_full_feed_holds_the_reader_until_it_is_down_to_half() -> None:
    async def go() -> list[int]:
        feed: EventFeed[int] = EventFeed(4)
        await feed.put([1, 2, 3, 4])
        reader = asyncio.ensure_future(feed.put([5]))
        sizes = []
        for _ in range(2):
            await asyncio.sleep(0.01)  # virtual: the reader may run, and must still wait
            sizes.append(len(feed))  # still waiting: 4, then 3 (more than half)
            await feed.get()
        await asyncio.wait_for(reader, 2)  # down to 2 = half: the reader went on
        sizes.append(len(feed))
        return sizes

    assert run_virtual(go()) == [4, 3, 3]


def test_taking_everything_frees_a_waiting_reader_and_returns_what_nobody_took() -> None:
    async def go() -> tuple[list[int], int]:
        feed: EventFeed[int] = EventFeed(2)
        await feed.put([1, 2])
        reader = asyncio.ensure_future(feed.put([3]))
        await asyncio.sleep(0)  # yields to the loop once; no time passes
        left = feed.take_all()
        await asyncio.wait_for(reader, 2)
        return left, len(feed)

    assert asyncio.run(go()) == ([1, 2], 1)


def test_a_taker_cancelled_after_it_was_woken_passes_its_turn_on() -> None:
    async def go() -> int | None:
        feed: EventFeed[int] = EventFeed(10)
        first = asyncio.ensure_future(feed.get())
        second = asyncio.ensure_future(feed.get())
        await asyncio.sleep(0)  # yields to the loop once; no time passes
        await feed.put([1])  # wakes `first` only
        first.cancel()  # ... which is cancelled before it runs
        return await asyncio.wait_for(second, 2)

    assert asyncio.run(go()) == 1


def test_a_feed_needs_room_for_one_item() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EventFeed(0)
