"""Secrets and customer data: the API key goes nowhere but its header, the key never travels
in clear to another machine, and the files that hold customer data are the owner's alone.

A small HTTP server in a thread plays a careless Torque that echoes the key it received in
its error messages; the real CLI runs against it in a subprocess, then every file the runs
produced and every byte they printed is searched for the key.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TEST_KEY, CliResult, SandboxProcess, cli_env, make_pubkey

from backfill.cli.sending import check_endpoint
from backfill.errors import UsageError

pytestmark = pytest.mark.timeout(120)

MAPPING = """\
event_name: STORE_ORDER
timestamp: {column: created_at, unit: ms}
user: {pubKey: wallet}
event_data:
  orderId: order_id
"""
KEY_HEADERS = ("x-torque-api-key", "x-api-key")

Cli = Callable[..., CliResult]


def write_orders(tmp_path: Path, count: int, bad_every: int = 0) -> tuple[Path, Path]:
    """Orders ORD-0..; with `bad_every`, every such row has a wallet that fails mapping."""
    wallets = [
        "not-a-key" if bad_every and i % bad_every == bad_every - 1 else make_pubkey(i)
        for i in range(count)
    ]
    source = tmp_path / "orders.parquet"
    pq.write_table(
        pa.table(
            {
                "order_id": [f"ORD-{i}" for i in range(count)],
                "created_at": pa.array(range(1_700_000_000_000, 1_700_000_000_000 + count)),
                "wallet": wallets,
            }
        ),
        source,
    )
    mapping = tmp_path / "map.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    return source, mapping


# --- a server that echoes the key ------------------------------------------------------------


class EchoingHandler(BaseHTTPRequestHandler):
    """Answers by the order's number: accepts some, and puts the received key into every
    other answer: a 400's message, a 500's plain-text body, a 429's Retry-After and body,
    a message whose 500-character cut falls inside the key, and a 401 when told to."""

    refuse_key = False

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = next((self.headers[h] for h in KEY_HEADERS if self.headers.get(h)), "")
        number = int(body["event_data"]["orderId"].split("-")[1])
        headers = {"X-Echo-Key": key}
        if self.refuse_key:
            self.answer(401, {"status": "UNAUTHORIZED", "message": f"unknown key {key}"})
        elif number % 5 == 0:
            self.answer(202, {"status": "SUCCESS", "data": {"accepted": True}}, headers)
        elif number % 5 == 1:
            self.answer(400, {"status": "BAD_REQUEST", "message": f"no event for key {key}"})
        elif number % 5 == 2:
            self.answer(500, f"Internal error while serving key={key}", headers)
        elif number % 5 == 3:
            self.answer(429, {"message": f"slow down, {key}"}, {"Retry-After": key})
        else:
            self.answer(400, {"message": "x" * 495 + key})  # cut at 500 inside the key

    def answer(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        for name, value in {"Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def echo_server() -> Iterator[Callable[[bool], str]]:
    """Start an echoing server (refusing every key, if asked); returns its events URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(refuse_key: bool = False) -> str:
        handler = type("Handler", (EchoingHandler,), {"refuse_key": refuse_key})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/events"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def assert_key_nowhere(tmp_path: Path, *results: CliResult) -> list[Path]:
    """The key is in no output and no file; returns the files searched."""
    for result in results:
        assert TEST_KEY not in result.stdout and TEST_KEY not in result.stderr
        assert "Traceback" not in result.stderr
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    for path in files:
        assert TEST_KEY.encode() not in path.read_bytes(), f"the key leaked into {path.name}"
    return files


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_server_echoing_the_key_never_gets_it_into_output_reports_or_journals(
    tmp_path: Path, cli: Cli, echo_server: Callable[[bool], str], suffix: str
) -> None:
    count = 50
    source, mapping = write_orders(tmp_path, count)
    endpoint = echo_server(False)
    env = cli_env(BACKFILL_BACKOFF_BASE="0.01")
    report = f"failures{suffix}"
    common = ["--endpoint", endpoint, "--rate", "0", "--max-retries", "1"]
    common += ["--rate-limit-budget", "0.2"]  # its 429s never clear: bounded by time
    run = cli("run", source, "-m", mapping, "--report", report, *common, env=env)
    rerun = cli("rerun", report, "--report", f"again{suffix}", *common, "--json", env=env)

    assert (run.code, rerun.code) == (1, 1), run.stderr + rerun.stderr
    assert "Failure report: failures" in run.stdout  # the human summary, reasons and all
    summary = rerun.json()
    assert (summary["read"], summary["accepted"], summary["failed"]) == (40, 0, 40)
    files = assert_key_nowhere(tmp_path, run, rerun)
    names = {path.name for path in files}
    assert {report, f"{report}.state", f"again{suffix}", f"again{suffix}.state"} <= names
    for name in (report, f"again{suffix}"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert text.count("[redacted]") >= 40  # the key was echoed, and scrubbed
        assert "key=[redacted]" in text and "no event for key [redacted]" in text
        assert "x" * 495 + "[reda" in text  # scrubbed first, then cut at 500 characters


def test_a_401_echoing_the_key_stops_the_run_without_printing_it(
    tmp_path: Path, cli: Cli, echo_server: Callable[[bool], str]
) -> None:
    source, mapping = write_orders(tmp_path, 20)
    result = cli("run", source, "-m", mapping, "--endpoint", echo_server(True), "--rate", "0")

    assert result.code == 2
    assert result.stdout.startswith("Stopped: the server refused the API key.")
    assert "HTTP 401: unknown key [redacted]" in result.stdout
    assert_key_nowhere(tmp_path, result)


@pytest.mark.parametrize("key", [TEST_KEY + "\n", TEST_KEY + "\r", " " + TEST_KEY, "ké-y-1234567"])
def test_a_key_that_cannot_go_in_a_header_is_refused_without_showing_it(
    tmp_path: Path, cli: Cli, sandbox: SandboxProcess, key: str
) -> None:
    source, mapping = write_orders(tmp_path, 3)
    env = cli_env(TORQUE_API_KEY=key)
    result = cli("run", source, "-m", mapping, "--endpoint", sandbox.endpoint(), env=env)

    assert result.code == 2
    assert result.stderr == (
        "Error: TORQUE_API_KEY holds a space, line break or other character that cannot go "
        "in an HTTP header (a newline left from a file?); set it to the key alone.\n"
    )
    assert key.strip() not in result.stdout + result.stderr
    assert sandbox.stats()["requests"] == 0
    made = sorted(p.name for p in tmp_path.iterdir() if p != sandbox.store)
    assert made == ["map.yaml", "orders.parquet"]  # no report, no journal


# --- plain http only to this machine ---------------------------------------------------------

REFUSED = [
    "http://example.com/events",
    "HTTP://API.TORQUE.SO/events",
    "http://10.0.0.8:8787/events",
    "http://0.0.0.0:8787/events",
    "http://[2001:db8::1]/events",
    "http://localhost.example.com/events",
    "http://127.0.0.1.nip.io/events",
    "http://127.0.0.1:80@example.com/events",  # userinfo: the host is example.com
    "http://example.com#@127.0.0.1/events",
]


@pytest.mark.parametrize("endpoint", REFUSED)
def test_plain_http_to_another_machine_is_refused(endpoint: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_endpoint(endpoint, allow_insecure=False)
    assert str(caught.value) == (
        f"--endpoint {endpoint} is plain http to another machine: the API key would travel "
        "in clear text. Use https, or --allow-insecure if you mean it."
    )


@pytest.mark.parametrize(
    ("endpoint", "given_as"),
    [
        ("http://10.0.0.8:8787/events", "option"),
        ("http://127.0.0.1:80@example.com/events", "option"),
        ("http://example.com/events", "environment"),
    ],
)
def test_the_cli_refuses_plain_http_elsewhere_before_anything_is_written_or_sent(
    tmp_path: Path, cli: Cli, endpoint: str, given_as: str
) -> None:
    source, mapping = write_orders(tmp_path, 3)
    if given_as == "option":
        result = cli("run", source, "-m", mapping, "--endpoint", endpoint)
    else:
        result = cli("run", source, "-m", mapping, env=cli_env(TORQUE_ENDPOINT=endpoint))

    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: --endpoint {endpoint} is plain http to another")
    assert len(result.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.yaml", "orders.parquet"]


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://api.torque.so/events",
        "https://ingest.torque.so/events",
        "https://203.0.113.9:8443/events",
        "http://127.0.0.1:8787/events",
        "http://localhost:8787/events",
        "http://LOCALHOST/events",
        "http://[::1]:8787/events",
    ],
)
def test_https_anywhere_and_plain_http_to_this_machine_are_allowed(endpoint: str) -> None:
    check_endpoint(endpoint, allow_insecure=False)  # raises if refused


def test_allow_insecure_is_the_only_way_to_plain_http_elsewhere() -> None:
    with pytest.raises(UsageError, match="plain http to another machine"):
        check_endpoint("http://example.com/events", allow_insecure=False)
    check_endpoint("http://example.com/events", allow_insecure=True)


@pytest.mark.parametrize("endpoint", ["ftp://example.com/events", "example.com", "http:///x"])
def test_an_endpoint_that_is_not_an_http_url_is_refused(endpoint: str) -> None:
    with pytest.raises(UsageError, match="is not an http\\(s\\) URL"):
        check_endpoint(endpoint, allow_insecure=True)


# --- files with customer data: owner only ----------------------------------------------------


def run_open_umask(tmp_path: Path, *args: str | Path) -> CliResult:
    """The CLI under umask 000 (proved by the `umask-probe` file the same shell creates):
    the files' modes must come from backfill, not from the umask."""
    command = ["sh", "-c", 'umask 000 && touch umask-probe && exec "$@"', "sh"]
    done = subprocess.run(
        [*command, sys.executable, "-m", "backfill", *map(str, args)],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_reports_and_journals_of_run_rerun_and_validate_are_the_owners_alone(
    tmp_path: Path, sandbox: SandboxProcess, suffix: str
) -> None:
    source, mapping = write_orders(tmp_path, 30, bad_every=3)
    (tmp_path / f"failures{suffix}").write_text("")
    (tmp_path / f"failures{suffix}").chmod(0o644)  # an old report, readable by all
    endpoint = ["--endpoint", sandbox.endpoint(), "--rate", "0", "-q"]
    run = run_open_umask(
        tmp_path, "run", source, "-m", mapping, "--report", f"failures{suffix}", *endpoint
    )
    rerun = run_open_umask(tmp_path, "rerun", f"failures{suffix}", *endpoint)
    checked = run_open_umask(tmp_path, "validate", source, "-m", mapping, "--report", f"v{suffix}")

    assert (run.code, rerun.code, checked.code) == (1, 1, 1), run.stderr + rerun.stderr
    produced = [
        f"failures{suffix}",
        f"failures{suffix}.state",
        f"failures.rerun{suffix}",
        f"failures.rerun{suffix}.state",
        f"v{suffix}",
    ]
    for name in produced:
        assert mode(tmp_path / name) == 0o600, name
        assert (tmp_path / name).stat().st_size > 0, name
    assert mode(tmp_path / "umask-probe") == 0o666  # the umask was open indeed


# --- the library checks what the CLI checks ----------------------------------------------------


def test_a_target_never_shows_the_key_in_its_repr() -> None:
    from backfill.mapping.envelopes import TORQUE_V1
    from backfill.pipeline.target import Target

    target = Target(TORQUE_V1, "https://api.torque.so/events", TEST_KEY)

    assert TEST_KEY not in repr(target) and TEST_KEY not in str(target)
    assert target.headers()[TORQUE_V1.key_header] == TEST_KEY


@pytest.mark.parametrize(
    ("endpoint", "key", "expected"),
    [
        ("http://example.com/events", TEST_KEY, "clear text"),
        ("ftp://example.com/events", TEST_KEY, "not an http(s) URL"),
        ("https://api.torque.so/events", "", "TORQUE_API_KEY is not set"),
        ("https://api.torque.so/events", TEST_KEY + "\n", "cannot go in an HTTP header"),
    ],
    ids=["plain-http", "not-http", "no-key", "newline-in-key"],
)
def test_the_library_refuses_a_target_the_cli_would_refuse(
    endpoint: str, key: str, expected: str
) -> None:
    from backfill.mapping.envelopes import TORQUE_V1
    from backfill.pipeline.target import Target

    with pytest.raises(UsageError, match=re.escape(expected)) as refused:
        Target(TORQUE_V1, endpoint, key)
    assert key.strip() == "" or key.strip() not in str(refused.value)
    Target(TORQUE_V1, endpoint.replace("ftp", "https"), TEST_KEY, allow_insecure=True)
