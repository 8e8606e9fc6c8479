"""The sandbox as a client sees it: a real server on 127.0.0.1, spoken to over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from backfill.errors import UsageError
from backfill.mapping.envelopes import APIS, TORQUE_INGEST, TORQUE_V1, Api, Event
from backfill.mapping.pubkey import b58encode
from backfill.sandbox.config import SandboxConfig
from backfill.sandbox.schemas import EventSchema, _schemas_from_json
from backfill.sandbox.server import Sandbox, serve
from backfill.sandbox.traffic import _max_in_window

PUBKEY = b58encode(bytes(range(1, 33)))
KEY = "test-key-not-a-secret"
REPO = Path(__file__).resolve().parent.parent
ORDER_SCHEMA = EventSchema(
    "STORE_ORDER",
    {"itemId": "string", "orderAmount": "number", "isPremiumUser": "boolean"},
    frozenset({"itemId", "orderAmount"}),
)


def event(**data: Any) -> Event:
    return Event(1731596206795, PUBKEY, "STORE_ORDER", data or {"itemId": "item_123"})


def v1_body(**overrides: Any) -> dict[str, Any]:
    body = TORQUE_V1.body(event(itemId="item_123", orderAmount=100, isPremiumUser=True))
    body.update(overrides)
    return body


@contextlib.asynccontextmanager
async def serving(
    timeout: float = 30.0, **options: Any
) -> AsyncIterator[tuple[Sandbox, httpx.AsyncClient]]:
    """A sandbox on a free port and a client pointed at it."""
    async with (
        Sandbox(SandboxConfig(port=0, **options)) as sandbox,
        httpx.AsyncClient(base_url=sandbox.url, timeout=timeout) as client,
    ):
        yield sandbox, client


async def post(
    client: httpx.AsyncClient,
    body: dict[str, Any] | bytes,
    api: Api = TORQUE_V1,
    key: str | None = KEY,
) -> httpx.Response:
    headers = {} if key is None else {api.key_header: key}
    if isinstance(body, bytes):
        headers["content-type"] = "application/json"
        return await client.post(api.path, content=body, headers=headers)
    return await client.post(api.path, json=body, headers=headers)


def send_one(body: dict[str, Any] | bytes, api: Api = TORQUE_V1, **options: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with serving(**options) as (_, client):
            return await post(client, body, api)

    return asyncio.run(go())


def statuses(count: int, body: dict[str, Any] | None = None, **options: Any) -> list[int]:
    async def go() -> list[int]:
        async with serving(**options) as (_, client):
            return [(await post(client, body or v1_body())).status_code for _ in range(count)]

    return asyncio.run(go())


def stored(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_valid_event_is_accepted_and_stored_while_running(tmp_path: Path) -> None:
    store = tmp_path / "store.jsonl"

    async def go() -> None:
        async with serving(store=store) as (_, client):
            response = await post(client, v1_body())
            assert response.status_code == 202
            assert response.json()["status"] == "SUCCESS"
            [line] = stored(store)  # flushed per line: readable before the server stops
            assert line["api"] == "torque-v1"
            assert line["event"] == v1_body()
            assert abs(line["received_at"] - time.time()) < 60

    asyncio.run(go())


@pytest.mark.parametrize("api", APIS.values(), ids=list(APIS))
def test_each_envelope_is_served_at_its_path_with_its_key_header(api: Api, tmp_path: Path) -> None:
    store = tmp_path / "store.jsonl"
    other_header = "x-api-key" if api.key_header != "x-api-key" else "x-torque-api-key"

    async def go() -> None:
        async with serving(store=store, key=KEY) as (_, client):
            body = api.body(event(itemId="a"))
            assert (await post(client, body, api)).status_code == 202
            wrong = await client.post(api.path, json=body, headers={other_header: KEY})
            assert wrong.status_code == 401

    asyncio.run(go())
    [line] = stored(store)
    assert line["api"] == api.name
    assert line["event"] == event(itemId="a").as_dict()


@pytest.mark.parametrize("key", [None, ""], ids=["absent", "empty"])
def test_missing_key_is_401(key: str | None) -> None:
    async def go() -> httpx.Response:
        async with serving() as (_, client):
            return await post(client, v1_body(), key=key)

    response = asyncio.run(go())
    assert response.status_code == 401
    assert response.json() == {"status": "UNAUTHORIZED", "message": "Missing API key"}


def test_wrong_key_is_403_and_never_echoed(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with serving(key=KEY) as (_, client):
            wrong = await post(client, v1_body(), key="sk-live-do-not-echo")
            right = await post(client, v1_body())
            return wrong, right

    wrong, right = asyncio.run(go())
    assert wrong.status_code == 403
    assert wrong.json() == {"status": "FORBIDDEN", "message": "Invalid API key"}
    assert "do-not-echo" not in wrong.text + str(wrong.headers) + caplog.text
    assert right.status_code == 202


SECONDS = 1731596206
BAD_BODIES: dict[str, tuple[dict[str, Any] | bytes, str]] = {
    "not json": (b"{not json", "body is not valid JSON"),
    "not utf-8": (b"\xff\xfe\x00", "body is not valid JSON"),
    "array": (b"[1, 2]", "body must be a JSON object, found array"),
    "NaN": (b'{"timestamp": NaN}', "NaN is not a JSON number"),
    "missing fields": ({"timestamp": 1731596206795}, "body/user Required, body/event_name"),
    "missing pubKey": (v1_body(user={}), "body/user/pubKey Required"),
    "timestamp string": (v1_body(timestamp="1731596206795"), "timestamp must be an integer"),
    "timestamp float": (v1_body(timestamp=1731596206795.5), "found number 1731596206795.5"),
    "timestamp bool": (v1_body(timestamp=True), "timestamp must be an integer"),
    "timestamp seconds": (v1_body(timestamp=SECONDS), f"timestamp {SECONDS} looks like seconds"),
    "pubkey short": (v1_body(user={"pubKey": "abc"}), "pubKey is not a Solana public key"),
    "pubkey alphabet": (v1_body(user={"pubKey": "0" * 44}), "not in the base58 alphabet"),
    "pubkey number": (v1_body(user={"pubKey": 5}), "expected base58 text, found int"),
    "name empty": (v1_body(event_name=""), "body/event_name must be a non-empty string"),
    "name number": (v1_body(event_name=7), "body/event_name must be a non-empty string"),
    "data array": (v1_body(event_data=[1]), "body/event_data must be an object, found array"),
    "data null": (v1_body(event_data={"a": None}), "event_data/a must be a string, number or"),
    "data nested": (v1_body(event_data={"a": {"b": 1}}), "found object"),
    "data infinite": (
        json.dumps(v1_body(event_data={})).replace("{}", '{"a": 1e999}').encode(),
        "body/event_data/a must be a finite number",
    ),
}


@pytest.mark.parametrize(("body", "expected"), BAD_BODIES.values(), ids=list(BAD_BODIES))
def test_invalid_body_is_400_with_a_precise_message(
    body: dict[str, Any] | bytes, expected: str
) -> None:
    response = send_one(body)
    assert response.status_code == 400
    assert response.json()["status"] == "BAD_REQUEST"
    assert expected in response.json()["message"]


def test_messages_use_the_envelope_field_names() -> None:
    body = TORQUE_INGEST.body(Event(SECONDS, PUBKEY, "", {"a": [1]}))
    message = send_one(body, TORQUE_INGEST).json()["message"]
    assert "body/timestamp 1731596206 looks like seconds" in message
    assert "body/eventName must be a non-empty string" in message
    assert "body/data/a must be a string, number or boolean, found array" in message


SCHEMA_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown event": (v1_body(event_name="OTHER"), "Event not found for this API key"),
    "unknown field": (
        v1_body(event_data={"itemId": "a", "orderAmount": 1, "color": "red"}),
        "body/event_data/color is not a field of event 'STORE_ORDER'",
    ),
    "string for number": (
        v1_body(event_data={"itemId": "a", "orderAmount": "100"}),
        "body/event_data/orderAmount must be a number, found string",
    ),
    "bool for number": (
        v1_body(event_data={"itemId": "a", "orderAmount": True}),
        "body/event_data/orderAmount must be a number, found boolean",
    ),
    "number for boolean": (
        v1_body(event_data={"itemId": "a", "orderAmount": 1, "isPremiumUser": 1}),
        "body/event_data/isPremiumUser must be a boolean, found number",
    ),
    "missing required": (
        v1_body(event_data={"itemId": "a"}),
        "body/event_data/orderAmount Required",
    ),
}


@pytest.mark.parametrize(("body", "expected"), SCHEMA_CASES.values(), ids=list(SCHEMA_CASES))
def test_schema_violations_are_400(body: dict[str, Any], expected: str) -> None:
    response = send_one(body, schemas=(ORDER_SCHEMA,))
    assert response.status_code == 400
    assert expected in response.json()["message"]


def test_schema_allows_optional_fields_to_be_absent() -> None:
    body = v1_body(event_data={"itemId": "a", "orderAmount": 2.5})
    assert send_one(body, schemas=(ORDER_SCHEMA,)).status_code == 202


def test_without_schemas_any_name_and_valid_fields_are_accepted() -> None:
    assert send_one(v1_body(event_name="ANYTHING", event_data={"x": False})).status_code == 202


@pytest.mark.parametrize(
    ("fields", "required", "expected"),
    [({"a": "int"}, frozenset(), "not one of"), ({"a": "string"}, {"b"}, "not declared")],
)
def test_bad_schema_declarations_are_refused(
    fields: dict[str, str], required: frozenset[str], expected: str
) -> None:
    with pytest.raises(UsageError, match=expected):
        EventSchema("X", fields, required)


def test_rate_limit_answers_429_with_retry_after_seconds() -> None:
    async def go() -> list[httpx.Response]:
        async with serving(rate=2) as (_, client):
            return [await post(client, v1_body()) for _ in range(3)]

    first, second, third = asyncio.run(go())
    assert (first.status_code, second.status_code, third.status_code) == (202, 202, 429)
    assert third.json() == {"status": "TOO_MANY_REQUESTS", "message": "Rate limit exceeded"}
    assert third.headers["Retry-After"] == "1"


def test_rate_limit_retry_after_as_http_date() -> None:
    async def go() -> list[httpx.Response]:
        async with serving(rate=1, retry_after_format="http-date") as (_, client):
            return [await post(client, v1_body()) for _ in range(2)]

    _, limited = asyncio.run(go())
    assert limited.status_code == 429
    wait = parsedate_to_datetime(limited.headers["Retry-After"]).timestamp() - time.time()
    assert 0 < wait <= 3


def test_rate_below_one_per_second_widens_the_window() -> None:
    async def go() -> list[httpx.Response]:
        async with serving(rate=0.5) as (_, client):
            return [await post(client, v1_body()) for _ in range(2)]

    accepted, limited = asyncio.run(go())
    assert (accepted.status_code, limited.status_code) == (202, 429)
    assert limited.headers["Retry-After"] == "2"


def test_503_faults_are_deterministic_for_a_seed() -> None:
    first = statuses(30, fail_rate=0.5, seed=7)
    assert first == statuses(30, fail_rate=0.5, seed=7)
    assert set(first) == {202, 503}
    assert first != statuses(30, fail_rate=0.5, seed=8)


def test_fault_first_n_guarantees_eventual_success() -> None:
    async def go() -> tuple[list[int], dict[str, Any]]:
        async with serving(faults={"503": 1.0}, fault_first_n=3) as (sandbox, client):
            codes = [(await post(client, v1_body())).status_code for _ in range(5)]
            return codes, sandbox.stats()

    codes, stats = asyncio.run(go())
    assert codes == [503, 503, 503, 202, 202]
    assert stats["faults_injected"] == {"503": 3}
    assert stats["rejected_by_status"] == {"503": 3}


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("500", 500, "INTERNAL_SERVER_ERROR"),
        ("502", 502, "BAD_GATEWAY"),
        ("504", 504, "GATEWAY_TIMEOUT"),
        ("499", 499, "ERROR"),
    ],
)
def test_status_faults_answer_that_status_with_a_json_body(
    kind: str, status: int, code: str
) -> None:
    response = send_one(v1_body(), faults={kind: 1.0})
    assert response.status_code == status
    assert response.json()["status"] == code
    assert "Injected fault" in response.json()["message"]


@pytest.mark.parametrize(
    ("kind", "retry_after"), [("429", "1"), ("429-no-retry-after", None)], ids=str
)
def test_429_faults_carry_retry_after_unless_told_not_to(
    kind: str, retry_after: str | None
) -> None:
    response = send_one(v1_body(), faults={kind: 1.0})
    assert response.status_code == 429
    assert response.headers.get("Retry-After") == retry_after


def test_reset_before_drops_the_connection_and_stores_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store.jsonl"

    async def go() -> dict[str, Any]:
        async with serving(store=store, faults={"reset-before": 1.0}) as (sandbox, client):
            with pytest.raises(httpx.TransportError):
                await post(client, v1_body())
            return sandbox.stats()

    stats = asyncio.run(go())
    assert stored(store) == []
    assert (stats["accepted"], stats["faults_injected"]) == (0, {"reset-before": 1})


def test_reset_after_loses_the_answer_but_keeps_the_event(tmp_path: Path) -> None:
    store = tmp_path / "store.jsonl"

    async def go() -> dict[str, Any]:
        options = {"store": store, "faults": {"reset-after": 1.0}, "fault_first_n": 1}
        async with serving(**options) as (sandbox, client):
            with pytest.raises(httpx.TransportError):
                await post(client, v1_body())
            assert len(stored(store)) == 1
            assert (await post(client, v1_body())).status_code == 202  # the retry
            return sandbox.stats()

    stats = asyncio.run(go())
    assert len(stored(store)) == 2
    assert (stats["accepted"], stats["duplicates"]) == (2, 1)


def test_slow_answer_exceeds_a_short_client_timeout() -> None:
    async def go() -> dict[str, Any]:
        # stop() cuts the 30 s pause short, so the test does not wait for it.
        async with serving(timeout=0.05, faults={"slow": 1.0}, slow_seconds=30) as (
            sandbox,
            client,
        ):
            with pytest.raises(httpx.TimeoutException):
                await post(client, v1_body())
        return sandbox.stats()

    started = time.monotonic()
    stats = asyncio.run(go())
    assert time.monotonic() - started < 5
    assert stats["faults_injected"] == {"slow": 1}
    assert stats["accepted"] == 1  # answered late to nobody: a retry would duplicate it


def test_duplicates_count_identical_events_across_envelopes() -> None:
    async def go() -> dict[str, Any]:
        async with serving() as (sandbox, client):
            same = event(itemId="a")
            await post(client, TORQUE_V1.body(same))
            await post(client, TORQUE_V1.body(same))
            await post(client, TORQUE_INGEST.body(same), TORQUE_INGEST)
            await post(client, TORQUE_V1.body(event(itemId="b")))
            return sandbox.stats()

    stats = asyncio.run(go())
    assert (stats["accepted"], stats["duplicates"]) == (4, 2)


def test_stats_count_every_request_and_peak_windows() -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        async with serving(rate=3) as (sandbox, client):
            await post(client, b"oops")  # before the limit bites: 429 is answered before parsing
            for _ in range(5):
                await post(client, v1_body())
            over_http = (await client.get("/_sandbox/stats")).json()
            return over_http, sandbox.stats()

    over_http, stats = asyncio.run(go())
    assert over_http == stats
    assert stats["requests"] == 6
    assert stats["accepted"] == 3
    assert stats["rejected_by_status"] == {"400": 1, "429": 2}
    assert stats["max_requests_in_any_1s_window"] == 6
    assert stats["max_accepted_in_any_1s_window"] == 3


@pytest.mark.parametrize(
    ("times", "expected"),
    [([], 0), ([5.0], 1), ([0, 0.5, 0.99, 1.0, 1.2, 3], 4), ([0, 1, 2, 3], 1)],
)
def test_window_peak_is_a_sliding_half_open_second(times: list[float], expected: int) -> None:
    assert _max_in_window(times) == expected


@pytest.mark.parametrize(
    "options",
    [
        {"faults": {"418x": 0.1}},
        {"faults": {"600": 0.1}},
        {"faults": {"503": 1.5}},
        {"faults": {"503": 0.6}, "fail_rate": 0.6},
        {"retry_after_format": "minutes"},
        {"rate": 0},
    ],
)
def test_impossible_settings_are_refused_early(options: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        SandboxConfig(**options)


def test_serve_runs_until_sigterm_and_returns_stats() -> None:
    urls: list[str] = []

    def ready(url: str) -> None:
        urls.append(url)
        os.kill(os.getpid(), signal.SIGTERM)  # handled by serve's loop, not the default action

    stats = serve(SandboxConfig(port=0), ready)
    assert urls[0].startswith("http://127.0.0.1:")
    assert stats["requests"] == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_module_entry_serves_and_prints_stats_on_signal(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    store = tmp_path / "store.jsonl"
    command = [sys.executable, "-m", "backfill.sandbox", "--port", "0", "--store", str(store)]
    command += ["--key", KEY, "--fault", "503=0.5", "--fault-first-n", "1", "--seed", "1"]

    async def go() -> tuple[str, bytes, int]:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=REPO, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), 15)).decode()
            url = line.removeprefix("listening on ").strip()
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                for _ in range(3):
                    if (await post(client, v1_body())).status_code == 202:
                        break
            process.send_signal(stop_signal)
            rest, _ = await asyncio.wait_for(process.communicate(), 15)
            return line, rest, await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    line, rest, code = asyncio.run(go())
    assert line.startswith("listening on http://127.0.0.1:")
    assert code == 0
    [stats_line] = rest.decode().splitlines()
    stats = json.loads(stats_line)
    assert stats["accepted"] == 1
    assert len(stored(store)) == 1


def test_schema_json_option_builds_event_schemas() -> None:
    text = json.dumps(
        [
            {
                "event_name": "STORE_ORDER",
                "fields": ORDER_SCHEMA.fields,
                "required": sorted(ORDER_SCHEMA.required),
            }
        ]
    )
    assert _schemas_from_json(text) == (ORDER_SCHEMA,)


# --- one command, two names ------------------------------------------------------------------


def _options(help_text: str) -> list[str]:
    return sorted({word for word in help_text.split() if word.startswith("--")})


def test_backfill_sandbox_and_python_m_backfill_sandbox_take_the_same_options() -> None:
    def help_of(*command: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", *command, "--help"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    via_cli = _options(help_of("backfill", "sandbox"))
    via_module = _options(help_of("backfill.sandbox"))
    assert via_cli == via_module
    for option in ("--latency", "--capacity", "--tls-cert", "--tls-key", "--redirect-to"):
        assert option in via_cli
    assert "--fault" in via_cli and "--mapping" in via_cli and "--fault-retry-after" in via_cli


@pytest.mark.parametrize("command", [["backfill", "sandbox"], ["backfill.sandbox"]])
def test_the_sandbox_runs_on_the_event_loop_the_sender_uses(command: list[str]) -> None:
    """Both names go through the one loop chooser (uvloop where installed): a loop it does
    not know is refused by the sandbox as by `run`, with exit 2 and no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", *command, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BACKFILL_EVENT_LOOP": "tokio"},
    )
    assert done.returncode == 2
    assert "BACKFILL_EVENT_LOOP='tokio': expected one of uvloop, asyncio." in done.stderr
    assert "Traceback" not in done.stderr


REDIRECT_ARGS = ["--redirect-to", "https://elsewhere.example", "--redirect-status", "308"]


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_backfill_sandbox_injects_faults_and_redirects_like_the_module() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "backfill", "sandbox", "--port", "0", *REDIRECT_ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        request = urllib.request.Request(
            url + "/events", data=b"{}", headers={"x-torque-api-key": KEY}, method="POST"
        )
        opener = urllib.request.build_opener(NoRedirects())
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open(request, timeout=10)
        assert caught.value.code == 308
        assert caught.value.headers["Location"] == "https://elsewhere.example/events"
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    stats = json.loads(out.splitlines()[-1])
    assert stats["requests"] == 1 and stats["rejected_by_status"] == {"308": 1}


def test_the_sandbox_slows_its_answers_by_latency_and_beyond_its_capacity() -> None:
    async def timed(count: int, **options: Any) -> tuple[float, dict[str, Any]]:
        async with serving(**options) as (sandbox, client):
            started = time.monotonic()
            await asyncio.gather(*(post(client, v1_body()) for _ in range(count)))
            return time.monotonic() - started, sandbox.stats()

    alone, stats = asyncio.run(timed(1, latency=0.2))
    assert alone >= 0.2 * 0.8
    [second] = stats["timeline"]  # the server's own answer time, per second of arrivals
    assert 0.2 * 0.8 * 1000 <= second["mean_answer_ms"] <= alone * 1000
    crowded, stats = asyncio.run(timed(8, latency=0.2, capacity=2))
    assert stats["max_in_flight"] == 8 and stats["accepted"] == 8
    assert crowded >= 0.2 * 0.8 * 8 / 2  # four times the latency: 8 in flight for capacity 2
    [second] = stats["timeline"]  # each answer stretched by the in-flight it came into
    assert second["mean_answer_ms"] >= 0.2 * 0.8 * 2 * 1000 and second["mean_in_flight"] > 2
