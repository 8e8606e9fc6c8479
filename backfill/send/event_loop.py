"""Which event loop runs a process's asyncio work: the sender's and the sandbox's alike."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any

from backfill.errors import UsageError

EVENT_LOOP_ENV = "BACKFILL_EVENT_LOOP"
EVENT_LOOPS = ("uvloop", "asyncio")


def event_loop_runner() -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """uvloop where it is installed (not on Windows): the same run, or sandbox, for less
    CPU per request. BACKFILL_EVENT_LOOP=asyncio picks Python's own loop, e.g. to rule the
    loop out when something looks wrong."""
    chosen = os.environ.get(EVENT_LOOP_ENV, "").strip().lower()
    if chosen not in ("", *EVENT_LOOPS):
        raise UsageError(f"{EVENT_LOOP_ENV}={chosen!r}: expected one of {', '.join(EVENT_LOOPS)}.")
    if chosen == "asyncio":
        return asyncio.run
    try:
        import uvloop
    except ImportError:
        if chosen == "uvloop":
            raise UsageError(f"{EVENT_LOOP_ENV}=uvloop, but uvloop is not installed.") from None
        return asyncio.run
    return uvloop.run
