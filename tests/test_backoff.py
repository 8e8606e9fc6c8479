"""The waits between attempts as the user meets them: the notice for a long `Retry-After`,
the longest one in the summary, and durations as people say them. No time passes: the
limiter's clock is a number."""

from __future__ import annotations

import random

import pytest

from backfill.errors import TransientSendError
from backfill.send.backoff import RetryWaits, duration
from backfill.send.limiter import AdaptiveLimiter
from backfill.send.sender import SendPolicy


def waits_with_notices() -> tuple[RetryWaits, list[str]]:
    notices: list[str] = []
    limiter = AdaptiveLimiter(1000, clock=lambda: 1000.0)
    return RetryWaits(SendPolicy(rate=1000), limiter, random.Random(1), notices.append), notices


def busy(retry_after: float | None) -> TransientSendError:
    return TransientSendError("HTTP 503: busy", status=503, retry_after=retry_after)


@pytest.mark.parametrize("seconds", [0.0, 7.0, 300.0])
def test_a_retry_after_of_five_minutes_or_less_is_waited_without_a_notice(seconds: float) -> None:
    waits, notices = waits_with_notices()
    waits.before_retry(busy(seconds), 1)
    assert notices == []


def test_a_retry_after_past_five_minutes_is_announced_once_with_how_to_stop() -> None:
    waits, notices = waits_with_notices()
    waits.before_retry(busy(301.0), 1)
    waits.before_retry(busy(301.0), 1)  # the same pause again: already told
    assert notices == [
        "The server asked to wait 5 min before sending again (HTTP 503, Retry-After). "
        "Waiting as asked; Ctrl-C stops, and --resume continues later."
    ]


@pytest.mark.parametrize(
    ("asked", "longest"), [([], 0.0), ([0.0], 0.0), ([0.5], 0.5), ([2.0, 9.0, 4.0], 9.0)]
)
def test_the_summarys_longest_retry_after_is_the_longest_the_server_asked_for(
    asked: list[float], longest: float
) -> None:
    waits, _ = waits_with_notices()
    for seconds in asked:
        waits.before_retry(busy(seconds), 1)
    waits.before_retry(busy(None), 1)  # no Retry-After: backoff, nothing recorded
    assert waits.longest_retry_after == longest


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.5, "0.5 s"),
        (119.5, "119.5 s"),
        (120, "2 min"),
        (5400, "90 min"),
        (7199, "120 min"),
        (7200, "2.0 h"),
        (8101, "2.3 h"),
        (604800, "168.0 h"),
    ],
)
def test_waits_are_told_in_seconds_minutes_or_hours_as_people_say_them(
    seconds: float, said: str
) -> None:
    assert duration(seconds) == said
