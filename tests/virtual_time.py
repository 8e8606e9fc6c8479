"""An event loop whose clock moves only when nothing else can happen: tests of timers without
waiting for them.

`run_virtual(coroutine)` is `asyncio.run` on a loop whose `time()` is virtual. Whenever every
task waits on a timer (an `asyncio.sleep`, a `call_later`, aiolimiter's wake-ups), the loop
jumps its clock to the earliest timer instead of sleeping, so a test of "a minute later" takes
microseconds and is exact: nothing a loaded machine does can move this clock. Sockets still
work (the selector is polled without blocking), but a test that waits on one while timers are
pending sees the clock race ahead: use it for code that waits on time, not on the network.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
START = 1000.0  # not 0: code that treats 0 as "never" must not be fooled
MIN_JUMP = 1e-7  # seconds: far below any timer a test cares about


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector loop whose clock jumps to the next timer instead of blocking."""

    def __init__(self, start: float = START) -> None:
        super().__init__(selectors.DefaultSelector())
        self.now = start
        self.jumps = 0  # how often the clock moved: a test may check it moved at all
        real_select = self._selector.select  # type: ignore[attr-defined]

        def select(timeout: float | None = None) -> list[Any]:
            ready = real_select(0)  # never block: whatever is ready now
            if ready or self._ready:  # type: ignore[attr-defined]
                return ready  # callbacks to run: time stands still
            if timeout is None:
                return real_select(None)  # no timer at all: only a socket can wake us
            # Nothing to do until the next timer: go there. At least MIN_JUMP, or a timer
            # set for a delay below the clock's float precision (aiolimiter computes such
            # delays from its level) would fire again and again with time standing still.
            self.now += max(timeout, MIN_JUMP)
            self.jumps += 1
            return ready

        self._selector.select = select  # type: ignore[attr-defined]

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock by hand (timers due by then fire at the loop's next turn)."""
        self.now += seconds


def run_virtual(main: Coroutine[Any, Any, T], start: float = START) -> T:
    """`asyncio.run(main)` on a `VirtualClockLoop`."""
    loop = VirtualClockLoop(start)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def virtual_now() -> float:
    """The running loop's clock: pass it as the `clock` of code under test."""
    return asyncio.get_running_loop().time()
