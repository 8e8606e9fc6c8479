"""`AdaptiveLimiter` at its edges: rates below one a second, the window that "halve" measures
with no --rate, whether a sender had to wait, and senders queued when the rate is lifted.
The limiter's clock is a number moved by hand; its timers run on `virtual_time`'s loop.
`test_sender.py` has the bucket, the halving and the recovery."""

from __future__ import annotations

import asyncio

from virtual_time import run_virtual, virtual_now

from backfill.send.limiter import RECOVERY_INTERVAL, AdaptiveLimiter


class Clock:
    """The limiter's clock: moves only when the test says."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_rate_below_one_a_second_is_never_raised_by_a_slowdown() -> None:
    limiter = AdaptiveLimiter(0.5, clock=Clock(1000.0))
    limiter.slow_down(None)
    assert limiter.rate == 0.5  # its own minimum: halving never speeds it up


def test_an_unlimited_limiter_slowed_again_and_again_stays_at_one_a_second() -> None:
    clock = Clock(1000.0)
    limiter = AdaptiveLimiter(0, clock=clock)
    for _ in range(3):
        limiter.slow_down(None)
        clock.now += RECOVERY_INTERVAL
    assert limiter.rate == 1.0 and limiter.slowdowns == 3


def test_a_clock_that_starts_at_zero_is_not_paused() -> None:
    limiter = AdaptiveLimiter(100, clock=Clock(0.0))
    assert limiter.pause(0.5) is True and limiter.paused_until == 0.5


def test_with_no_rate_a_slowdown_halves_the_rate_of_the_last_second_not_of_the_run() -> None:
    clock = Clock(1000.0)
    limiter = AdaptiveLimiter(0, clock=clock)

    async def send(count: int) -> None:
        for _ in range(count):
            await limiter.acquire()

    asyncio.run(send(50))  # 50 in the first second
    clock.now += 1.0  # a second later exactly: a new window
    asyncio.run(send(10))
    clock.now += 0.5
    limiter.slow_down(None)
    assert limiter.rate == 10  # half of 10 in 0.5 s; the run's average (60 in 1.5 s) is 40/s


def test_acquire_says_whether_the_rate_or_a_pause_held_the_sender_back() -> None:
    async def go() -> list[bool]:
        limiter = AdaptiveLimiter(100, clock=virtual_now)
        said = [await limiter.acquire()]  # a fresh bucket: goes at once
        while limiter._limiter is not None and limiter._limiter.has_capacity():
            await limiter.acquire()
        said.append(await limiter.acquire())  # the bucket is empty: waits for a token
        await asyncio.sleep(1)  # virtual: the bucket fills again
        limiter.pause(0.5)
        said.append(await limiter.acquire())  # waits out the pause
        return said

    assert run_virtual(go()) == [False, True, True]


def test_senders_queued_when_the_rate_is_lifted_all_go_at_once() -> None:
    """With no --rate, a 429 gives the run a rate; enough quiet seconds lift it again, and the
    senders queued for the old bucket's tokens then go without waiting for them."""
    clock = Clock(1000.0)

    async def go() -> tuple[list[bool], float]:
        limiter = AdaptiveLimiter(0, clock=clock)
        limiter.slow_down(None)  # 1/s: a bucket of one
        await limiter.acquire()
        waiting = [asyncio.ensure_future(limiter.acquire()) for _ in range(20)]
        await asyncio.sleep(0)  # the twenty queue up; no time passes
        started = virtual_now()
        while limiter.rate:  # quiet seconds on the limiter's clock until it is unlimited
            clock.now += RECOVERY_INTERVAL
            limiter.on_success()
        waited = await asyncio.wait_for(asyncio.gather(*waiting), 60)
        return waited, virtual_now() - started

    waited, seconds = run_virtual(go())
    assert waited == [True] * 20
    assert seconds <= 1.0  # the one token the dispenser was waiting for; not 20 s at 1/s
