"""The sizing rule of `--concurrency auto`, window by window, with the answer times given
exactly: when the gate counts as the bottleneck, the first step, Little's law with its
ceiling, queueing, slow start and its end, and low rates; the cap's line in the summary.
`test_concurrency.py` drives the whole gate through many windows."""

from __future__ import annotations

import asyncio

import pytest

from backfill.send.gate import ConcurrencyGate
from backfill.send.gate_sizing import (
    BASE_SECONDS,
    MIN_WINDOW_SAMPLES,
    CapNote,
    LimitSizing,
    Lowest,
    Window,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def auto(rate: float) -> tuple[LimitSizing, Clock]:
    clock = Clock()
    return LimitSizing(2048, adaptive=True, rate_in_force=lambda: rate, clock=clock), clock


def window(
    sizing: LimitSizing,
    clock: Clock,
    rtt: float | None,
    limit: float,
    *,
    saturated: bool,
    samples: int = MIN_WINDOW_SAMPLES,
) -> float | None:
    """One window long enough to decide, of `samples` answers taking `rtt` (None: one
    overloaded answer); senders found the gate full when `saturated`. Its decision."""
    current = sizing.window
    current.full = 1 if saturated else 0
    clock.now += max(1.0, 3 * (rtt or 0))
    if rtt is None:
        return sizing.answered(clock.now, None, int(limit))
    for _ in range(samples):
        decided = sizing.answered(clock.now, rtt, int(limit))
        if sizing.window is not current:  # decided: a new window began
            return decided
    return None


@pytest.mark.parametrize(
    ("full", "rate_waits", "requests", "bottleneck"),
    [
        *[(0, 0, 10, False), (1, 0, 10, True), (1, 5, 10, True)],
        *[(1, 6, 10, False), (1, 1, 1, False), (1, 0, 0, True)],
    ],
)
def test_the_gate_is_the_bottleneck_when_it_was_full_and_at_most_half_waited_for_the_rate(
    full: int, rate_waits: int, requests: int, bottleneck: bool
) -> None:
    seen = Window(0.0)
    seen.full, seen.rate_waits, seen.requests = full, rate_waits, requests
    assert seen.saturated() is bottleneck


def test_a_full_window_whose_one_request_waited_for_the_rate_is_the_rates_doing() -> None:
    seen = Window(0.0)
    seen.full += 1  # as the gate counts: a sender found no slot
    seen.requests += 1  # as `rate_waited` counts: one request, and it waited
    seen.rate_waits += 1
    assert not seen.saturated()


def test_the_cap_is_named_only_when_it_held_the_run_below_nine_tenths_of_the_rate() -> None:
    note = CapNote(4)
    note.observe(False, 4, 1.0)  # the gate was not full: the network held it back
    assert note.bottleneck(100, 10) is None
    note.observe(True, 4, 1.0)
    assert note.bottleneck(100, 90) is None  # nine tenths of the rate: near enough
    assert note.bottleneck(100, 89) == (
        "cap 4 reached at 1000 ms per answer, so at most 4 events/s; raise --concurrency "
        "(or use auto)."
    )


def test_a_first_answer_of_exactly_the_early_step_time_sizes_the_limit_at_once() -> None:
    sizing, clock = auto(100)
    assert sizing.answered(clock.now, 0.1, 4) == pytest.approx(10)


def test_after_a_slow_first_answer_the_rate_binds_room_stops_at_the_fastest_answers_ceiling() -> (
    None
):
    sizing, clock = auto(100)
    assert sizing.answered(clock.now, 0.2, 4) == pytest.approx(20)  # rate × the first answer
    # 1.5 × 100/s × 0.4 s = 60 would carry the rate, but 1.6 × 100/s × 0.2 s (the fastest
    # answer, the first one) is the ceiling.
    assert window(sizing, clock, 0.4, 20, saturated=False) == 32


def test_the_rate_binding_keeps_room_for_rate_times_answer_time_with_headroom() -> None:
    sizing, clock = auto(100)
    assert sizing.answered(clock.now, 0.4, 4) == pytest.approx(40)
    assert window(sizing, clock, 0.4, 40, saturated=False) == pytest.approx(60)


def test_answers_slower_than_the_first_one_under_load_shrink_the_limit_in_proportion() -> None:
    sizing, clock = auto(100)
    sizing.answered(clock.now, 0.2, 4)
    # Twice the no-load answer time: the target is 20 × 1.5 × 0.2 / 0.4 = 15, moved halfway.
    assert window(sizing, clock, 0.4, 20, saturated=True) == pytest.approx(17.5)


def test_with_no_rate_slow_start_doubles_from_the_first_window_then_grows_by_its_root() -> None:
    sizing, clock = auto(0)
    assert window(sizing, clock, 0.01, 4, saturated=True) == 8  # the first (cold) window
    assert window(sizing, clock, 0.01, 8, saturated=True) == 16
    assert window(sizing, clock, None, 16, saturated=True) == 12  # overload: a quarter off
    assert window(sizing, clock, 0.01, 12, saturated=True) == pytest.approx(12 + 12**0.5)


def test_queueing_ends_slow_start_too() -> None:
    sizing, clock = auto(0)
    window(sizing, clock, 0.01, 4, saturated=True)
    assert window(sizing, clock, 0.02, 8, saturated=True) == pytest.approx(7)  # queueing
    assert window(sizing, clock, 0.01, 7, saturated=True) == pytest.approx(7 + 7**0.5)


def test_answers_exactly_at_the_tolerance_are_not_queueing() -> None:
    sizing, clock = auto(0)
    window(sizing, clock, 0.25, 4, saturated=True)  # no-load: 0.25 s
    assert window(sizing, clock, 0.375, 8, saturated=True) == 16  # 1.5 × 0.25: still grows


@pytest.mark.parametrize(
    ("rate", "rtt", "saturated", "limit", "after"),
    [
        (1, 0.5, False, 3, 1),  # 1.6 × 1/s × 0.5 s: one in flight at most
        (1, 0.65, False, 1, 1),  # 1.5 × 0.65 is below one: one carries the rate
        (0, 0.01, False, 1, 1),  # no rate, nobody waiting: the limit stays
        (0, 0.05, True, 1, 1),  # queueing never shrinks below one
    ],
)
def test_one_in_flight_is_where_the_limit_goes_when_one_is_enough(
    rate: float, rtt: float, saturated: bool, limit: int, after: int
) -> None:
    sizing, clock = auto(rate)
    sizing.answered(clock.now, 0.01 if saturated else rtt, 1)  # the no-load answer time
    window(sizing, clock, 0.01 if saturated else rtt, 1, saturated=False)
    assert window(sizing, clock, rtt, limit, saturated=saturated) == after


def test_with_no_rate_a_slow_first_answer_takes_no_step_of_its_own() -> None:
    """The first window decides, its median the no-load answer time: 0.4 s, not the cold
    first answer's 0.2 s, so 0.4 s answers are not queueing and slow start goes on."""
    sizing, clock = auto(0)
    assert sizing.answered(clock.now, 0.2, 4) is None
    assert window(sizing, clock, 0.4, 4, saturated=True) == 8


def test_the_no_load_answer_time_is_remembered_for_thirty_seconds() -> None:
    lowest = Lowest()
    assert lowest.add(0.0, 0.02) == 0.02
    assert lowest.add(BASE_SECONDS, None) == 0.02  # thirty seconds on: still remembered
    assert lowest.add(BASE_SECONDS + 0.001, None) is None


def test_with_no_rate_a_sender_past_the_first_limit_waits_for_an_answer() -> None:
    async def go() -> int:
        gate = ConcurrencyGate(64, adaptive=True)
        tries = [asyncio.ensure_future(gate.acquire()) for _ in range(5)]
        await asyncio.sleep(0)  # yields to the loop once; no time passes
        through = sum(task.done() for task in tries)
        for task in tries:
            task.cancel()
        await asyncio.gather(*tries, return_exceptions=True)
        return through

    assert asyncio.run(go()) == 4


def test_the_median_answer_time_is_of_the_answers_seen_and_none_before_any() -> None:
    clock = Clock()
    gate = ConcurrencyGate(4, adaptive=False, clock=clock)
    assert gate.median_answer_time() is None
    for seconds in (0.01, 0.03, 0.02):
        started = gate.sent()
        clock.now += seconds
        gate.answered(started, overloaded=False)
    assert gate.median_answer_time() == pytest.approx(0.02)


def test_a_window_lasts_one_typical_answer_time_in_slow_start_then_three() -> None:
    sizing, clock = auto(0)
    start = clock.now
    sizing.window.full = 1
    assert sizing.answered(start, 0.1, 4) is None  # the first answer: no step of its own
    for rtt in (0.1, 0.1, 0.1, 0.5, 0.5, 0.5, 0.5):  # the middle one to arrive: 0.5 s
        assert sizing.answered(start + 0.4, rtt, 4) is None  # 0.4 s: not one answer time
    assert sizing.answered(start + 0.5, 0.5, 4) == 8  # 0.5 s: the window decides
    assert sizing.answered(start + 0.7, None, 8) == 6  # overload: slow start ends
    start += 0.7
    for _ in range(MIN_WINDOW_SAMPLES):
        assert sizing.answered(start + 1.0, 0.5, 6) is None  # two answer times: too soon
    assert sizing.answered(start + 1.5, 0.5, 6) is not None  # three
