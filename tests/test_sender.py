"""The sender through `httpx.MockTransport`: what each answer means, retries, waits, the limiter.

No test sleeps: `Sender` takes the `sleep` it uses between attempts, and `AdaptiveLimiter`
takes its clock, so waits are recorded and time is moved by hand; the limiter's own timers
(aiolimiter's) run on `virtual_time`'s loop, whose clock jumps to the next timer. The `Run`
tests at the end drive the whole sending half over a small Parquet file with a mock endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TEST_KEY, make_pubkey
from virtual_time import run_virtual, virtual_now

from backfill.books.report import read_report
from backfill.errors import (
    AuthRejected,
    EventRejected,
    RateLimited,
    RedirectRefused,
    SendError,
    TransientSendError,
)
from backfill.look.validate import open_inputs
from backfill.mapping.envelopes import TORQUE_INGEST, TORQUE_V1, Api
from backfill.mapping.spec import load_mapping
from backfill.pipeline.run import Run, RunSummary, Target, plan_source_run
from backfill.send import sender as sender_module
from backfill.send.answers import (
    MAX_RETRY_AFTER,
    Reply,
    check_reply,
    is_final_rejection,
    retry_after_seconds,
)
from backfill.send.backoff import backoff_delay
from backfill.send.httpx_poster import HttpxPoster
from backfill.send.limiter import RECOVERY_FACTOR, RECOVERY_INTERVAL, AdaptiveLimiter
from backfill.send.sender import Delivery, Sender, SendPolicy

URL = "https://api.torque.so/events"
BODY = b'{"timestamp":1731596206795}'
Handler = Callable[[httpx.Request], Any]


class FakeClock:
    """A monotonic clock that moves only when told, or when the sender or limiter 'sleeps'."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []  # the sender's waits between attempts
        self.pauses: list[float] = []  # the limiter's waits (asyncio.sleep, patched)
        self.requests: list[float] = []  # when each request went out

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:  # the fake clock's: moves it
        self.sleeps.append(seconds)
        self.now += seconds

    async def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += max(seconds, 0.0)


def answer(status: int, message: str | None = None, **headers: str) -> httpx.Response:
    if message is None:
        return httpx.Response(status, headers=headers)
    body = {"status": "BAD_REQUEST", "message": message}
    return httpx.Response(status, json=body, headers=headers)


def scripted(*steps: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler that plays `steps` in order (the last one repeats) and keeps the requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = steps[min(len(seen), len(steps)) - 1]
        if isinstance(step, Exception):
            raise step
        return step

    return handler, seen


def deliver(
    handler: Handler,
    policy: SendPolicy | None = None,
    *,
    clock: FakeClock | None = None,
    rng: random.Random | None = None,
    give_up: Callable[[], bool] = lambda: False,
) -> tuple[Delivery, Sender, FakeClock]:
    """One body through a `Sender` over `MockTransport`; waits go to the fake clock."""
    policy = policy or SendPolicy(rate=1000, max_retries=3)
    clock = clock or FakeClock()

    def timed(request: httpx.Request) -> Any:
        clock.requests.append(clock.now)
        return handler(request)

    async def go() -> tuple[Delivery, Sender]:
        transport = httpx.MockTransport(timed)
        poster = HttpxPoster(URL, {TORQUE_V1.key_header: TEST_KEY}, policy, transport=transport)
        limiter = AdaptiveLimiter(policy.rate, clock=clock)
        jitter = rng or random.Random(1)
        sender = Sender(poster, policy, limiter, sleep=clock.sleep, clock=clock, rng=jitter)
        try:
            return await sender.deliver(BODY, give_up=give_up), sender
        finally:
            await poster.aclose()

    with mock.patch.object(asyncio, "sleep", clock.pause):  # the limiter's pauses, too
        delivery, sender = asyncio.run(go())
    return delivery, sender, clock


# --- what each answer means --------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 202])
def test_2xx_is_accepted_at_the_first_attempt(status: int) -> None:
    handler, seen = scripted(answer(status))
    delivery, sender, clock = deliver(handler)
    assert delivery.accepted and delivery.attempts == 1
    assert len(seen) == 1 and sender.retries == 0 and clock.sleeps == []


def test_the_body_and_key_header_are_sent_unchanged() -> None:
    handler, seen = scripted(answer(202))
    deliver(handler)
    assert seen[0].method == "POST" and str(seen[0].url) == URL
    assert seen[0].content == BODY
    assert seen[0].headers[TORQUE_V1.key_header] == TEST_KEY


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
def test_4xx_is_not_retried_and_reports_the_servers_message(status: int) -> None:
    handler, seen = scripted(answer(status, "body/eventName Required, body/data Required"))
    delivery, sender, clock = deliver(handler)
    assert delivery == Delivery(
        accepted=False,
        attempts=1,
        status=status,
        kind=f"http {status}",
        message="body/eventName Required, body/data Required",
    )
    assert len(seen) == 1 and sender.retries == 0 and clock.sleeps == []


def test_a_rejection_without_json_reports_the_start_of_the_body() -> None:
    handler, _ = scripted(httpx.Response(400, text="  <html>Bad Request</html>\n"))
    delivery, _, _ = deliver(handler)
    assert delivery.message == "<html>Bad Request</html>"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_at_once_naming_the_status_and_location(status: int) -> None:
    handler, seen = scripted(answer(status, Location="https://elsewhere.example/events"))
    with pytest.raises(RedirectRefused) as caught:
        deliver(handler)
    assert caught.value.status == status and len(seen) == 1
    assert f"HTTP {status}, a redirect to https://elsewhere.example/events" in str(caught.value)


def test_a_429_is_not_a_failed_attempt_but_spends_the_rows_time_budget() -> None:
    handler, seen = scripted(*[answer(429, "slow down", **{"Retry-After": "10"})] * 5, answer(202))
    policy = SendPolicy(rate=1000, max_retries=0, rate_limit_budget=60)
    delivery, sender, _ = deliver(handler, policy)
    assert delivery.accepted and delivery.attempts == 6 and sender.retries == 5

    handler, seen = scripted(answer(429, "slow down", **{"Retry-After": "10"}))
    delivery, _, _ = deliver(handler, SendPolicy(rate=1000, max_retries=9, rate_limit_budget=25))
    assert not delivery.accepted and delivery.kind == "rate limited" and delivery.status == 429
    assert len(seen) == 3 and "--rate-limit-budget" in delivery.message  # 0 s, ~10 s, ~20 s


def test_retry_after_on_a_503_pauses_every_sender_and_a_long_one_is_announced() -> None:
    handler, _ = scripted(answer(503, "busy", **{"Retry-After": "900"}), answer(202))
    notices: list[str] = []
    clock = FakeClock()

    async def go() -> Delivery:
        transport = httpx.MockTransport(handler)
        policy = SendPolicy(rate=1000)
        poster = HttpxPoster(URL, {}, policy, transport=transport)
        limiter = AdaptiveLimiter(policy.rate, clock=clock)
        sender = Sender(
            poster, policy, limiter, sleep=clock.sleep, clock=clock, on_notice=notices.append
        )
        delivery = await sender.deliver(BODY)
        assert limiter.paused_until == pytest.approx(1000.0 + 900.0)
        assert limiter.rate == 1000  # a 503 pauses; only a 429 also halves the rate
        return delivery

    assert asyncio.run(go()).accepted
    assert 900 <= clock.sleeps[0] <= 990  # waited in full: never retried early
    [notice] = notices
    assert "asked to wait 15 min" in notice and "HTTP 503" in notice


def test_interrupting_a_delivery_that_waits_ends_it_at_once_as_interrupted() -> None:
    handler, seen = scripted(answer(429, "slow down", **{"Retry-After": "60"}))

    async def go() -> tuple[Delivery, float]:
        policy = SendPolicy(rate=1000)
        poster = HttpxPoster(URL, {}, policy, transport=httpx.MockTransport(handler))
        waiting = asyncio.Event()

        async def sleep(seconds: float) -> None:  # records the wait, then waits
            waiting.set()  # the 429 is answered: the delivery now waits out its 60 s
            await asyncio.sleep(seconds)  # virtual time: the clock jumps

        limiter = AdaptiveLimiter(policy.rate, clock=virtual_now)
        sender = Sender(poster, policy, limiter, sleep=sleep, clock=virtual_now)
        task = asyncio.create_task(sender.deliver(BODY))
        await asyncio.wait_for(waiting.wait(), 5)
        started = virtual_now()
        sender.interrupt_waits()  # the first Ctrl-C, during the 60 s wait
        return await asyncio.wait_for(task, 1), virtual_now() - started

    delivery, waited = run_virtual(go())
    assert delivery.kind == "interrupted" and not delivery.accepted and len(seen) == 1
    assert waited == 0  # at once: not one timer of the 60 s wait went off


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_raise_auth_rejected_at_once(status: int) -> None:
    handler, seen = scripted(answer(status, "Invalid API key"))
    with pytest.raises(AuthRejected) as caught:
        deliver(handler)
    assert caught.value.status == status
    assert "Invalid API key" in str(caught.value) and "TORQUE_API_KEY" in str(caught.value)
    assert len(seen) == 1


@pytest.mark.parametrize("status", [408, 425, 429])
def test_slow_down_answers_are_retried_honouring_retry_after_seconds(status: int) -> None:
    handler, seen = scripted(
        answer(status, "Rate limit exceeded", **{"Retry-After": "7"}), answer(202)
    )
    delivery, sender, clock = deliver(handler)
    assert delivery.accepted and delivery.attempts == 2 and len(seen) == 2
    assert sender.retries == 1
    # The retry waited the server's delay, plus at most 10% jitter to spread the senders.
    assert 7.0 <= clock.requests[1] - clock.requests[0] <= 7.0 * 1.1
    # The whole run slows down, not just this request: the shared limiter paused and halved.
    assert sender.limiter.paused_until == pytest.approx(1000.0 + 7.0)
    assert sender.limiter.slowdowns == 1 and sender.limiter.rate < sender.policy.rate


def test_retry_after_as_an_http_date_is_honoured() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    handler, _ = scripted(answer(429, "Rate limit exceeded", **{"Retry-After": when}), answer(202))
    delivery, _, clock = deliver(handler)
    assert delivery.accepted and delivery.attempts == 2
    assert 28.0 <= clock.requests[1] - clock.requests[0] <= 30.0 * 1.1


def test_a_429_without_retry_after_backs_off_exponentially() -> None:
    handler, _ = scripted(answer(429, "Rate limit exceeded"), answer(202))
    policy = SendPolicy(rate=1000, backoff_base=0.5)
    delivery, _, clock = deliver(handler, policy)
    assert delivery.accepted
    [wait] = clock.sleeps
    assert 0 <= wait <= 0.5 and clock.pauses == []


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_5xx_is_retried_with_full_jitter_exponential_backoff(status: int) -> None:
    policy = SendPolicy(rate=1000, max_retries=6, backoff_base=1.0, backoff_max=5.0)
    handler, seen = scripted(*[answer(status, "busy")] * 6, answer(202))
    delivery, sender, clock = deliver(handler, policy, rng=random.Random(42))
    assert delivery.accepted and delivery.attempts == 7 and len(seen) == 7
    assert sender.retries == 6
    ceilings = [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]  # base * 2**(n-1), capped at backoff_max
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(clock.sleeps, ceilings))
    replay = random.Random(42)
    assert clock.sleeps == [replay.uniform(0, ceiling) for ceiling in ceilings]


def test_backoff_spreads_over_the_whole_range_up_to_its_ceiling() -> None:
    policy = SendPolicy(backoff_base=0.5, backoff_max=30.0)
    rng = random.Random(3)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (4, 4.0), (7, 30.0), (20, 30.0)]:
        waits = [backoff_delay(attempt, policy, rng) for _ in range(2000)]
        assert 0 <= min(waits) < 0.05 * ceiling
        assert 0.95 * ceiling < max(waits) <= ceiling


def test_exhausted_retries_end_in_a_failed_delivery_that_says_it_gave_up() -> None:
    handler, seen = scripted(answer(503, "Service Unavailable"))
    delivery, sender, clock = deliver(handler, SendPolicy(rate=1000, max_retries=2))
    assert not delivery.accepted
    assert delivery.attempts == 3 and len(seen) == 3
    assert delivery.status == 503 and delivery.kind == "http 503"
    assert "Service Unavailable" in delivery.message
    assert "gave up after 3 attempts" in delivery.message
    assert sender.retries == 2 and len(clock.sleeps) == 2


def test_max_retries_zero_sends_once() -> None:
    handler, seen = scripted(answer(503))
    delivery, _, clock = deliver(handler, SendPolicy(rate=1000, max_retries=0))
    assert not delivery.accepted and delivery.attempts == 1 and len(seen) == 1
    assert clock.sleeps == []


NETWORK_ERRORS = [
    (httpx.ConnectError("connection refused"), "connect failed"),
    (httpx.ReadTimeout("timed out"), "timeout"),
    (httpx.ConnectTimeout("timed out"), "timeout"),
    (httpx.RemoteProtocolError("server disconnected"), "disconnected"),
    (httpx.ReadError("connection reset"), "connection error"),
]


@pytest.mark.parametrize(("error", "kind"), NETWORK_ERRORS)
def test_network_errors_are_retried(error: Exception, kind: str) -> None:
    handler, seen = scripted(error, error, answer(202))
    delivery, sender, _ = deliver(handler)
    assert delivery.accepted and delivery.attempts == 3 and len(seen) == 3
    assert sender.retries == 2


@pytest.mark.parametrize(("error", "kind"), NETWORK_ERRORS)
def test_network_errors_that_persist_report_their_kind(error: Exception, kind: str) -> None:
    handler, seen = scripted(error)
    delivery, _, _ = deliver(handler, SendPolicy(rate=1000, max_retries=1))
    assert not delivery.accepted and delivery.attempts == 2 and len(seen) == 2
    assert delivery.kind == kind and delivery.status is None
    assert "gave up after 2 attempts" in delivery.message


def test_an_answer_slower_than_the_timeout_is_a_timeout() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # never answers; the poster's timeout cuts it
        return answer(202)

    delivery, sender, _ = deliver(handler, SendPolicy(rate=1000, timeout=0.05))
    assert delivery.accepted and delivery.attempts == 2 and sender.retries == 1


def test_give_up_stops_retrying_as_interrupted() -> None:
    handler, seen = scripted(answer(503))
    stop = False

    def give_up() -> bool:
        return stop

    def handler_then_stop(request: httpx.Request) -> httpx.Response:
        nonlocal stop
        stop = True  # e.g. Ctrl-C arrives while the first attempt is in flight
        return handler(request)

    delivery, _, _ = deliver(handler_then_stop, give_up=give_up)
    assert delivery == Delivery(accepted=False, attempts=1, kind="interrupted")
    assert len(seen) == 1


# --- check_reply: each answer's class and message, exactly -----------------------------------

NO_LOCATION = "(no Location header)"
REDIRECT = (
    "the endpoint answered HTTP {status}, a redirect to {location}. backfill never follows "
    "redirects: the API key would travel to another address, and a redirected POST delivers "
    "nothing. Check --endpoint."
)


@pytest.mark.parametrize(
    ("status", "headers", "text", "raised", "message"),
    [
        (200, {}, "", None, ""),
        (299, {}, "", None, ""),
        (
            300,
            {},
            "",
            RedirectRefused,
            REDIRECT.format(status=300, location="(no Location header)"),
        ),
        (399, {"location": "/x"}, "", RedirectRefused, REDIRECT.format(status=399, location="/x")),
        (400, {}, '{"message": "bad"}', EventRejected, "bad"),
        (400, {}, "", EventRejected, "HTTP 400"),
        (400, {}, "[1, 2]", EventRejected, "[1, 2]"),  # JSON, but not Torque's envelope
        (400, {}, '{"message": ""}', EventRejected, '{"message": ""}'),
        (
            401,
            {},
            '{"message": "Invalid key"}',
            AuthRejected,
            "the server refused the API key (HTTP 401: Invalid key); check TORQUE_API_KEY and "
            "that the key belongs to this endpoint and --api.",
        ),
        (429, {}, '{"message": "slow down"}', RateLimited, "HTTP 429: slow down"),
        (503, {}, "", TransientSendError, "HTTP 503"),
        (503, {}, " busy ", TransientSendError, "HTTP 503: busy"),
    ],
)
def test_check_reply_names_each_answers_class_and_message_exactly(
    status: int,
    headers: dict[str, str],
    text: str,
    raised: type[SendError] | None,
    message: str,
) -> None:
    reply = Reply(status, headers, text)
    if raised is None:
        assert check_reply(reply) == status
        return
    with pytest.raises(SendError) as caught:
        check_reply(reply)
    assert type(caught.value) is raised
    assert str(caught.value) == message and caught.value.status == status


@pytest.mark.parametrize(
    ("status", "final"),
    [
        *[(status, True) for status in (400, 404, 499)],
        *[(status, False) for status in (None, 399, 408, 425, 429, 500, 503)],
    ],
)
def test_only_a_4xx_that_is_not_a_slow_down_is_the_rows_own_rejection(
    status: int | None, final: bool
) -> None:
    """The report says "rejected: HTTP 4xx" for these and "gave up" for every other end."""
    assert is_final_rejection(status) is final


# --- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", None),  # not delay-seconds: the usual backoff applies
        ("nan", None),
        ("inf", None),
        ("1_000", None),
        ("86400", 86400.0),  # a day: waited in full, and the user is told (see the Sender)
        ("99999999", MAX_RETRY_AFTER),  # years: nonsense, read as the longest wait
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # a date in the past: go now
        ("Thu, 22 Oct 2015 07:28:00 GMT", 86400.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("Wed, 32 Foo 2015", None),
    ],
)
def test_retry_after_seconds_reads_seconds_and_http_dates(
    value: str | None, seconds: float | None
) -> None:
    now = dt.datetime(2015, 10, 21, 7, 28, tzinfo=dt.timezone.utc).timestamp()
    assert retry_after_seconds(value, now=now) == seconds


# --- the adaptive limiter --------------------------------------------------------------------


def test_limiter_halves_on_slow_down_at_most_once_per_interval() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(100, clock=clock)
    limiter.slow_down(None)
    assert limiter.rate == 50 and limiter.slowdowns == 1
    clock.now += RECOVERY_INTERVAL / 2
    limiter.slow_down(None)  # the same overload, seen by another request
    assert limiter.rate == 50 and limiter.slowdowns == 1
    clock.now += RECOVERY_INTERVAL / 2
    limiter.slow_down(None)
    assert limiter.rate == 25 and limiter.slowdowns == 2


def test_limiter_never_goes_below_its_minimum_rate() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(3, clock=clock)
    for _ in range(5):
        limiter.slow_down(None)
        clock.now += RECOVERY_INTERVAL
    assert limiter.rate == 1.0


def test_limiter_pauses_everyone_until_retry_after() -> None:
    clock = FakeClock(now=10.0)
    limiter = AdaptiveLimiter(100, clock=clock)
    limiter.slow_down(3.0)
    assert limiter.paused_until == 13.0
    clock.now = 10.5
    limiter.slow_down(1.0)  # a shorter wait never shortens the pause
    assert limiter.paused_until == 13.0
    clock.now = 11.0
    limiter.slow_down(4.0)
    assert limiter.paused_until == 15.0


def test_limiter_acquire_waits_out_the_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(now=10.0)
    monkeypatch.setattr(sender_module.asyncio, "sleep", clock.pause)
    limiter = AdaptiveLimiter(1000, clock=clock)
    limiter.slow_down(2.5)

    async def go() -> None:
        await limiter.acquire()

    asyncio.run(go())
    assert clock.pauses == [2.5] and clock.now >= limiter.paused_until


def test_limiter_recovers_by_its_factor_each_interval_up_to_the_users_rate() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(100, clock=clock)
    limiter.slow_down(None)
    assert limiter.rate == 50
    clock.now += RECOVERY_INTERVAL / 2
    limiter.on_success()
    assert limiter.rate == 50  # not yet: one step per interval
    rates = []
    for _ in range(6):
        clock.now += RECOVERY_INTERVAL
        limiter.on_success()
        rates.append(limiter.rate)
    step1 = 50 * RECOVERY_FACTOR + 1
    step2 = step1 * RECOVERY_FACTOR + 1
    assert rates[:2] == [pytest.approx(step1), pytest.approx(step2)]
    assert rates[-1] == 100 and max(rates) == 100  # never above the user's --rate
    clock.now += RECOVERY_INTERVAL
    limiter.slow_down(None)  # a new overload after recovering: halves again
    assert limiter.rate == 50 and limiter.slowdowns == 2


def test_a_pause_as_long_as_the_one_in_force_does_not_extend_it() -> None:
    """Only a longer pause is news (a long one is announced once, not per answer)."""
    clock = FakeClock(now=10.0)
    limiter = AdaptiveLimiter(100, clock=clock)
    assert limiter.pause(5.0) is True
    assert limiter.pause(5.0) is False and limiter.pause(4.0) is False
    assert limiter.paused_until == 15.0
    assert limiter.pause(5.5) is True and limiter.paused_until == 15.5


def test_an_unlimited_limiter_slowed_before_any_request_halves_from_two_a_second() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(0, clock=clock)
    limiter.slow_down(None)
    assert limiter.rate == 1.0  # half of the 2/s floor, and the minimum rate


def test_unlimited_limiter_gets_a_finite_rate_after_a_429() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(0, clock=clock)

    async def send(count: int) -> None:
        for _ in range(count):
            await limiter.acquire()

    asyncio.run(send(40))
    clock.now += 0.5
    limiter.slow_down(None)
    assert limiter.rate == pytest.approx(40)  # half of the 80/s it was reaching
    assert limiter.slowdowns == 1
    clock.now += RECOVERY_INTERVAL
    limiter.on_success()
    assert limiter.rate == pytest.approx(40 * RECOVERY_FACTOR + 1)  # climbs, not back to 0
    # ...and climbs back to unlimited after enough quiet intervals.
    for _ in range(200):
        clock.now += RECOVERY_INTERVAL
        limiter.on_success()
        if limiter.rate == 0:
            break
    assert limiter.rate == 0


# --- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": -1}, "rate must be 0 (no limit) or positive; got -1"),
        ({"concurrency": 0}, "concurrency must be at least 1; got 0"),
        ({"max_retries": -1}, "max retries must be 0 or more; got -1"),
        ({"timeout": 0}, "timeout must be positive; got 0"),
    ],
)
def test_send_policy_refuses_values_that_cannot_work(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SendPolicy(**options)


# --- a whole run over a mock endpoint --------------------------------------------------------

MAPPING = """\
event_name: STORE_ORDER
timestamp: {column: created_at, unit: auto, timezone: UTC}
user: {pubKey: wallet}
event_data:
  orderId: order_id
  itemId: {column: sku, type: string}
  orderAmount: {column: total, type: number}
  quantity: {column: quantity, type: number}
  isPremiumUser: {column: tier, type: boolean, "true": [gold], "false": [basic]}
  country: {column: country, type: string}
  channel: {value: backfill}
filter: "status == 'paid'"
"""
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
COUNTRIES = ["Côte d'Ivoire", "Korea, Republic of", "Japan"]


def make_orders(tmp_path: Path, count: int = 60) -> tuple[Path, Path, dict[int, dict[str, Any]]]:
    """A Parquet file of orders, its mapping, and the body each sendable row must become.

    Rows 7, 17, 27... are refunded (filtered); rows 5, 15, 25... have a bad wallet (failed).
    The expected events are written out by hand from the contract, not by the library.
    """
    rows: dict[str, list[Any]] = {
        c: [] for c in ("order_id", "created_at", "wallet", "sku", "quantity", "total")
    }
    rows.update(tier=[], status=[], country=[])
    expected: dict[int, dict[str, Any]] = {}
    for i in range(count):
        moment = dt.datetime(2024, 3, 5, 14, 22, 31, tzinfo=dt.timezone.utc)
        moment += dt.timedelta(minutes=17 * i, milliseconds=37 * i + 3)
        millis = (moment - EPOCH) // dt.timedelta(milliseconds=1)
        stamp = (
            moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            if i % 2
            else moment.astimezone(IST).isoformat(timespec="milliseconds")
        )
        wallet = make_pubkey(i) if i % 10 != 5 else "0OIl" + make_pubkey(i)[4:]
        total, amount = ("49.90", 49.9) if i % 3 else (f"{100 + i}", 100 + i)
        tier = "gold" if i % 4 else "basic"
        paid = i % 10 != 7
        rows["order_id"].append(f"ORD-{i:06d}")
        rows["created_at"].append(stamp)
        rows["wallet"].append(wallet)
        rows["sku"].append(f"{i:05d}")
        rows["quantity"].append(i % 5 + 1)
        rows["total"].append(total)
        rows["tier"].append(tier)
        rows["status"].append("paid" if paid else "refunded")
        rows["country"].append(COUNTRIES[i % 3])
        if paid and i % 10 != 5:
            expected[i] = {
                "timestamp": millis,
                "user": {"pubKey": wallet},
                "event_name": "STORE_ORDER",
                "event_data": {
                    "orderId": f"ORD-{i:06d}",
                    "itemId": f"{i:05d}",
                    "orderAmount": amount,
                    "quantity": i % 5 + 1,
                    "isPremiumUser": tier == "gold",
                    "country": COUNTRIES[i % 3],
                    "channel": "backfill",
                },
            }
    source = tmp_path / "orders.parquet"
    pq.write_table(pa.table(rows), source)
    mapping = tmp_path / "map.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    return source, mapping, expected


def run_with(
    tmp_path: Path,
    handler: Handler,
    *,
    api: Api = TORQUE_V1,
    concurrency: int = 4,
    count: int = 60,
    key: str = TEST_KEY,
) -> tuple[RunSummary, dict[int, dict[str, Any]]]:
    source, mapping_path, expected = make_orders(tmp_path, count)
    opened, mapping = open_inputs(source, load_mapping(mapping_path))
    plan = plan_source_run(opened, mapping, api, tmp_path / "failures.jsonl", chunk_rows=16)
    policy = SendPolicy(rate=0, concurrency=concurrency, max_retries=2, backoff_base=0.001)
    target = Target(api=api, endpoint=api.default_endpoint, api_key=key, policy=policy)

    def poster(url: str, headers: dict[str, str], policy: SendPolicy) -> HttpxPoster:
        return HttpxPoster(url, headers, policy, transport=httpx.MockTransport(handler))

    async def go() -> RunSummary:
        return await Run(plan, target, poster_factory=poster).execute()

    return asyncio.run(go()), expected


def assert_every_row_accounted_for(summary: RunSummary) -> None:
    c = summary.counts
    assert c.accepted + c.filtered + c.failed + c.unsent + c.already_done == c.read


def test_run_sends_exactly_the_contracts_body_for_every_mapped_row(tmp_path: Path) -> None:
    handler, seen = scripted(answer(202))
    summary, expected = run_with(tmp_path, handler)

    assert summary.stopped is None
    counts = summary.counts
    assert (counts.read, counts.accepted, counts.filtered, counts.failed) == (60, 48, 6, 6)
    assert counts.unsent == counts.already_done == counts.retries == 0
    assert_every_row_accounted_for(summary)
    assert len(seen) == len(expected)
    bodies = sorted((request.content for request in seen), key=lambda b: json.loads(b)["timestamp"])
    for body, (_, event) in zip(bodies, sorted(expected.items())):
        # Compact JSON, keys in the contract's order, UTF-8 text as is, integers as integers.
        assert body == json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        assert json.loads(body) == event
        assert type(json.loads(body)["event_data"]["quantity"]) is int
        assert type(json.loads(body)["timestamp"]) is int
    for request in seen:
        assert request.headers["x-torque-api-key"] == TEST_KEY
        assert request.headers["content-type"] == "application/json"
        assert str(request.url) == TORQUE_V1.default_endpoint
    failures = list(read_report(tmp_path / "failures.jsonl"))
    assert sorted(f.row for f in failures) == [5, 15, 25, 35, 45, 55]
    assert {f.stage for f in failures} == {"mapping"}


def test_run_speaks_the_ingest_envelope_with_its_own_key_header(tmp_path: Path) -> None:
    handler, seen = scripted(answer(202))
    summary, expected = run_with(tmp_path, handler, api=TORQUE_INGEST)
    assert summary.counts.accepted == len(expected) == len(seen)
    by_time = {event["timestamp"]: event for event in expected.values()}
    for request in seen:
        assert request.headers["x-api-key"] == TEST_KEY
        assert "x-torque-api-key" not in request.headers
        assert str(request.url) == TORQUE_INGEST.default_endpoint
        body = json.loads(request.content)
        event = by_time[body["timestamp"]]
        assert body == {
            "userPubkey": event["user"]["pubKey"],
            "timestamp": event["timestamp"],
            "eventName": "STORE_ORDER",
            "data": event["event_data"],
        }


def test_run_reports_rejected_events_with_status_message_and_event(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["event_data"]["quantity"] == 3:
            return answer(400, "body/event_data/quantity must be less than 3")
        return answer(202)

    summary, expected = run_with(tmp_path, handler)
    rejected = {row for row, event in expected.items() if event["event_data"]["quantity"] == 3}
    assert summary.counts.accepted == len(expected) - len(rejected)
    assert_every_row_accounted_for(summary)
    sent_failures = [f for f in read_report(tmp_path / "failures.jsonl") if f.stage == "send"]
    assert {f.row for f in sent_failures} == rejected
    for failure in sent_failures:
        assert failure.status == 400 and failure.attempts == 1
        assert failure.error == "body/event_data/quantity must be less than 3"
        assert failure.reason.startswith("rejected: HTTP 400: ")
        assert failure.event == expected[failure.row]
        assert failure.record["order_id"] == f"ORD-{failure.row:06d}"


def test_run_stops_at_the_first_401_and_sends_nothing_more(tmp_path: Path) -> None:
    arrivals = 0
    arrivals_at_first_401: int | None = None

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal arrivals, arrivals_at_first_401
        arrivals += 1
        number = arrivals
        await asyncio.sleep(0)  # yields: other senders interleave, as over a network
        if number <= 10:
            return answer(202)
        if arrivals_at_first_401 is None:
            arrivals_at_first_401 = arrivals
        return answer(401, "Missing API key")

    concurrency = 4
    summary, _ = run_with(tmp_path, handler, concurrency=concurrency, count=400)
    assert arrivals_at_first_401 is not None
    assert arrivals - arrivals_at_first_401 <= concurrency  # only what was already in flight
    assert summary.stopped == "auth"
    assert "refused the API key" in summary.message and "HTTP 401" in summary.message
    assert summary.counts.accepted == 10
    assert summary.counts.read < 400 and summary.counts.unsent > 0  # reading stopped too
    assert_every_row_accounted_for(summary)
    assert "done" not in (tmp_path / "failures.jsonl.state").read_text()  # not finished


def test_a_run_stopped_now_counts_every_row_it_read_including_those_in_flight(
    tmp_path: Path,
) -> None:
    source, mapping_path, _ = make_orders(tmp_path, 400)
    opened, mapping = open_inputs(source, load_mapping(mapping_path))
    plan = plan_source_run(opened, mapping, TORQUE_V1, tmp_path / "failures.jsonl", chunk_rows=64)
    policy = SendPolicy(rate=0, concurrency=4, max_retries=0)
    target = Target(TORQUE_V1, TORQUE_V1.default_endpoint, TEST_KEY, policy)
    answered = 0

    async def go() -> RunSummary:
        run: Run

        async def handler(request: httpx.Request) -> httpx.Response:
            nonlocal answered
            if answered == 10:  # the second Ctrl-C, while every sender waits for an answer
                asyncio.get_running_loop().call_soon(run.abort)
                await asyncio.sleep(3600)  # never answers: the abort ends it
            answered += 1
            return answer(202)

        def poster(url: str, headers: dict[str, str], policy: SendPolicy) -> HttpxPoster:
            return HttpxPoster(url, headers, policy, transport=httpx.MockTransport(handler))

        run = Run(plan, target, poster_factory=poster)
        return await asyncio.wait_for(run.execute(), 30)

    summary = asyncio.run(go())
    assert summary.counts.accepted == answered == 10
    assert summary.counts.unsent >= 4  # at least the four in flight
    assert_every_row_accounted_for(summary)


def test_a_server_echoing_the_key_does_not_get_it_into_any_output(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["x-torque-api-key"]
        quantity = json.loads(request.content)["event_data"]["quantity"]
        if quantity == 3:
            return answer(400, f"event refused for API key {key}")
        if quantity == 4:
            return answer(503, f"overloaded serving key {key}")
        return answer(202)

    summary, _ = run_with(tmp_path, handler)
    assert summary.counts.failed > 6
    assert TEST_KEY not in json.dumps(summary.as_dict())
    for path in tmp_path.iterdir():
        assert TEST_KEY.encode() not in path.read_bytes(), path.name


def test_a_401_echoing_the_key_does_not_get_it_into_the_summary(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return answer(401, f"unknown key {request.headers['x-torque-api-key']}")

    summary, _ = run_with(tmp_path, handler)
    assert summary.stopped == "auth"
    assert TEST_KEY not in json.dumps(summary.as_dict())
    for path in tmp_path.iterdir():
        assert TEST_KEY.encode() not in path.read_bytes(), path.name


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(5000, 150), (2000, 60), (1000, 30), (400, 12), (100, 5), (40, 2), (10, 1), (0.5, 1)],
)
def test_a_fresh_limiter_lets_exactly_its_burst_through_at_once(rate: float, burst: int) -> None:
    """The bucket holds 30 ms of the rate (at least 5 requests, or 50 ms' worth if that is
    fewer, and at least one): that many go at once, and not one more until the clock moves."""

    async def go() -> tuple[int, float]:
        limiter = AdaptiveLimiter(rate, clock=virtual_now)
        started = virtual_now()
        tries = [asyncio.ensure_future(limiter.acquire()) for _ in range(2 * burst + 5)]
        for _ in range(5):
            await asyncio.sleep(0)  # every sender tries; the virtual clock stays where it is
        through = sum(task.done() for task in tries)
        moved = virtual_now() - started
        for task in tries:
            task.cancel()
        await asyncio.gather(*tries, return_exceptions=True)
        return through, moved

    assert run_virtual(go()) == (burst, 0.0)


def send_times(rate: float, count: int, senders: int) -> list[float]:
    """When each of `count` requests got its token from a fresh limiter at `rate`, with
    `senders` asking at once and again as soon as they get one: the client's own timeline."""

    async def go() -> list[float]:
        limiter = AdaptiveLimiter(rate, clock=virtual_now)
        started = virtual_now()
        times: list[float] = []

        async def sender() -> None:
            while len(times) < count:
                await limiter.acquire()
                times.append(virtual_now() - started)

        await asyncio.wait_for(asyncio.gather(*(sender() for _ in range(senders))), 3600)
        return times[:count]

    return run_virtual(go())


@pytest.mark.parametrize(("rate", "burst"), [(5000, 150), (1000, 30), (100, 5), (10, 1)])
@pytest.mark.parametrize("senders", [1, 64])
def test_the_limiters_timeline_never_passes_its_burst_plus_the_rate(
    rate: float, burst: int, senders: int
) -> None:
    """On the client's own timeline: the n-th request goes no sooner than (n - burst) / rate,
    so no one-second window holds more than rate + burst; and the rate is kept up (the last
    request goes no more than a wake-up later than that)."""
    count = int(3 * rate) + burst
    times = send_times(rate, count, senders)
    slack = 1e-9 * count  # floating point, summed over the run
    for n, moment in enumerate(times, start=1):
        assert moment >= (n - burst) / rate - slack, (n, moment)
    assert times[-1] <= (count - burst) / rate + 0.01
    window = [t for t in times if 1.0 <= t < 2.0]
    assert len(window) <= rate + burst


def test_senders_waiting_when_the_rate_halves_wait_again_at_the_new_rate() -> None:
    """Two buckets must never drain side by side: that would send at the old rate plus the
    new one while a 429 asks everyone to slow down."""

    async def go() -> tuple[float, float]:
        limiter = AdaptiveLimiter(100, clock=virtual_now)
        for _ in range(10):  # use up the burst
            await limiter.acquire()
        waiting = [asyncio.ensure_future(limiter.acquire()) for _ in range(20)]
        await asyncio.sleep(0)  # the twenty queue up; no time passes
        limiter.slow_down(None)  # 100/s -> 50/s while twenty wait on the old bucket
        started = virtual_now()
        await asyncio.wait_for(asyncio.gather(*waiting), 60)
        return limiter.rate, virtual_now() - started

    rate, seconds = run_virtual(go())
    assert rate == 50
    # Twenty tokens at 50/s, less the new bucket's burst of 2, take 18 / 50 = 0.36 s; drained
    # at the old rate they took 0.2 s, and both buckets side by side less still.
    assert seconds == pytest.approx(0.36, abs=0.01)


def test_waiting_senders_get_their_tokens_in_order_a_few_per_wake_up() -> None:
    """One dispenser takes tokens for everyone who waits: 2 ms' worth per wake-up (4 at
    2000/s), not one aiolimiter wake-up (and timer) per sender."""

    async def go() -> tuple[list[int], list[int], float]:
        limiter = AdaptiveLimiter(2000, clock=virtual_now)
        bucket = limiter._limiter
        assert bucket is not None
        while bucket.has_capacity():  # use up the burst
            await limiter.acquire()
        taken_for_queued: list[int] = []  # what each wake-up took while senders were queued
        take = bucket.acquire

        async def counted(amount: float = 1) -> None:
            if limiter._waiting:  # not a sender that found room on a slow machine
                taken_for_queued.append(int(amount))
            await take(amount)

        bucket.acquire = counted  # type: ignore[method-assign]
        served: list[int] = []

        async def one(i: int) -> None:
            await limiter.acquire()
            served.append(i)

        started = virtual_now()
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(100))), 5)
        return served, taken_for_queued, virtual_now() - started

    served, taken, seconds = run_virtual(go())
    assert served == list(range(100))
    assert taken == [4] * 25  # one wake-up for four senders
    assert seconds == pytest.approx(0.05, abs=1e-4)  # still at the rate: 100 at 2000/s


def test_a_pause_while_senders_wait_for_tokens_makes_each_wait_it_out() -> None:
    async def go() -> float:
        limiter = AdaptiveLimiter(1000, clock=virtual_now)
        bucket = limiter._limiter
        assert bucket is not None
        while bucket.has_capacity():
            await limiter.acquire()
        waiting = [asyncio.ensure_future(limiter.acquire()) for _ in range(20)]
        await asyncio.sleep(0)  # the twenty queue up; no time passes
        started = virtual_now()
        limiter.pause(0.3)  # a Retry-After while twenty wait for the rate
        await asyncio.wait_for(asyncio.gather(*waiting), 5)
        return virtual_now() - started

    # The pause, and by its end the bucket has room for all twenty at once.
    assert run_virtual(go()) == pytest.approx(0.3, abs=1e-6)


def test_senders_cancelled_while_waiting_for_tokens_leave_no_task_behind() -> None:
    async def go() -> int:
        limiter = AdaptiveLimiter(100, clock=virtual_now)
        waiting = [asyncio.ensure_future(limiter.acquire()) for _ in range(40)]
        await asyncio.sleep(0.01)  # virtual: the burst goes, the rest queue for tokens
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await asyncio.sleep(0.01)  # virtual: a dispenser waits one token's time, sees none
        return len(asyncio.all_tasks()) - 1

    assert run_virtual(go()) == 0


def test_the_last_events_of_a_run_are_posted_side_by_side(tmp_path: Path) -> None:
    """Each sender takes one event at a time: a sender that took several would post them one
    after another, an answer time each, while the others sat idle at the end of the input."""
    events = 10  # 12 rows: row 5 has a bad wallet, row 7 is refunded
    in_flight = most = 0
    all_out = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == events:
            all_out.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_out.wait(), 2)
        in_flight -= 1
        return answer(202)

    summary, _ = run_with(tmp_path, handler, concurrency=16, count=12)
    assert summary.counts.accepted == events
    assert most == events
