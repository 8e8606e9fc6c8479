"""The bounded hand-off between the reader and the senders: events one at a time.

An `asyncio.Queue` of single events costs a task switch per event once it is full (every
`get` wakes the reader's `put`), and a queue of batches left a few senders, at the end of a
run or after a pause, with several answer times of work each while the rest sat idle: at
250 ms an answer, a batch of 8 took 2 s to drain. Here the reader adds many events at once
and wakes again only when the feed is down to half; each sender takes one event and idle
senders wake as events arrive.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class EventFeed(Generic[T]):
    """A bounded FIFO for one producer and many consumers, closed when the input ends."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the feed's capacity must be at least 1; got {capacity}")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._takers: deque[asyncio.Future[None]] = deque()
        self._room: asyncio.Future[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, items: Iterable[T]) -> None:
        """Add `items`, after waiting while the feed is full."""
        while len(self._items) >= self.capacity and not self._closed:
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None
        self._items.extend(items)
        self._wake_takers(len(self._items))

    async def get(self) -> T | None:
        """The next item, after waiting while the feed is empty; None once it is closed."""
        items = self._items
        while not items:
            if self._closed:
                return None
            taker = asyncio.get_running_loop().create_future()
            self._takers.append(taker)
            try:
                await taker
            except asyncio.CancelledError:
                if taker.done() and not taker.cancelled():
                    self._wake_takers(1)  # woken just as it was cancelled: pass the turn on
                raise
        item = items.popleft()
        if len(items) <= self.capacity // 2:
            self._wake_reader()
        return item

    def close(self) -> None:
        """No more items will come: takers get what is left, then None."""
        self._closed = True
        self._wake_takers(len(self._takers))
        self._wake_reader()

    def take_all(self) -> list[T]:
        """Empty the feed (a stopping run): what nobody took."""
        left = list(self._items)
        self._items.clear()
        self._wake_reader()
        return left

    def _wake_reader(self) -> None:
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

    def _wake_takers(self, count: int) -> None:
        takers = self._takers
        while count and takers:
            taker = takers.popleft()
            if not taker.done():
                taker.set_result(None)
                count -= 1
