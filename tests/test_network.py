"""The real network path, end to end: redirects, TLS, proxies, Retry-After, Ctrl-C.

The real CLI in a subprocess against `python -m backfill.sandbox` in another, over 127.0.0.1,
with certificates made by `trustme` and (for proxies) a real forward proxy, `proxy.py`.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import CliResult, SandboxProcess, cli_env
from test_faults import assert_accounted, run_args, stored_ids, write_orders

pytestmark = pytest.mark.timeout(120)

Cli = Callable[..., CliResult]
Factory = Callable[..., SandboxProcess]


# --- a server that only records what reaches it ------------------------------------------------


class Recorder:
    """An HTTP server on 127.0.0.1 that answers 200 to anything and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers)}
                    | {"body": body.decode("utf-8", "replace")}
                )
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = _record

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


# --- certificates --------------------------------------------------------------------------


class Certificates:
    """A private CA and a certificate it issued for 127.0.0.1 and localhost, as PEM files."""

    def __init__(self, folder: Path) -> None:
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1", "localhost")
        self.ca = folder / "ca.pem"
        self.cert = folder / "server.pem"
        self.key = folder / "server.key"
        ca.cert_pem.write_to_path(str(self.ca))
        issued.private_key_pem.write_to_path(str(self.key))
        with self.cert.open("wb") as handle:
            for blob in issued.cert_chain_pems:
                handle.write(blob.bytes())

    def sandbox_args(self) -> list[str]:
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("tls"))


def trusting(certificates: Certificates, **extra: str) -> dict[str, str]:
    """The CLI's environment with the private CA trusted through SSL_CERT_FILE."""
    return cli_env(SSL_CERT_FILE=str(certificates.ca), BACKFILL_BACKOFF_BASE="0.01", **extra)


# --- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 307])
def test_a_redirect_stops_the_run_at_once_and_the_key_never_reaches_its_target(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory, recorder: Recorder, status: int
) -> None:
    count, concurrency = 40, 4
    source, mapping = write_orders(tmp_path, count)
    sandbox = sandbox_factory("--redirect-to", recorder.url, "--redirect-status", str(status))
    args = run_args(source, mapping, sandbox.endpoint(), "--rate", "0")
    started = time.monotonic()
    result = cli(*args, "--concurrency", str(concurrency))
    elapsed = time.monotonic() - started

    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    summary = result.json()
    assert summary["stopped"] == "endpoint" and summary["accepted"] == 0
    assert f"HTTP {status}, a redirect to {recorder.url}/events" in summary["message"]
    assert summary["read"] >= summary["unsent"] > 0
    assert recorder.requests == []  # neither the key nor the event went to the other origin
    assert 1 <= sandbox.stats()["requests"] <= concurrency  # only what was already in flight
    assert not stored_ids(sandbox.store)
    assert elapsed < 30


def test_a_redirect_is_one_line_naming_the_status_and_location_in_the_text_summary(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory, recorder: Recorder
) -> None:
    source, mapping = write_orders(tmp_path, 5)
    sandbox = sandbox_factory(
        "--redirect-to", "https://elsewhere.example/", "--redirect-status", "301"
    )
    args = [a for a in run_args(source, mapping, sandbox.endpoint()) if a != "--json"]
    result = cli(*args)

    assert result.code == 2
    first = result.stdout.splitlines()[0]
    assert first.startswith("Stopped: the endpoint answered HTTP 301, a redirect to ")
    assert "https://elsewhere.example/events" in first and "never follows redirects" in first
    assert result.stdout.count("https://elsewhere.example/events") == 1


# --- TLS -----------------------------------------------------------------------------------


def test_an_https_sandbox_whose_ca_is_trusted_through_ssl_cert_file_gets_every_row(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory, certificates: Certificates
) -> None:
    count = 30
    source, mapping = write_orders(tmp_path, count)
    sandbox = sandbox_factory(*certificates.sandbox_args())
    assert sandbox.url.startswith("https://127.0.0.1:")
    result = cli(
        *run_args(source, mapping, sandbox.endpoint(), "--rate", "0"), env=trusting(certificates)
    )

    assert result.code == 0, result.stderr
    summary = result.json()
    assert_accounted(summary, count)
    assert summary["accepted"] == count
    assert sorted(stored_ids(sandbox.store)) == sorted(f"ORD-{i}" for i in range(count))


def test_an_https_sandbox_with_an_untrusted_ca_stops_the_run_at_once_saying_how_to_trust_it(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory, certificates: Certificates
) -> None:
    count = 30
    source, mapping = write_orders(tmp_path, count)
    sandbox = sandbox_factory(*certificates.sandbox_args())
    env = cli_env(BACKFILL_BACKOFF_BASE="5")  # a retried certificate error would take minutes
    env.pop("SSL_CERT_FILE", None)
    started = time.monotonic()
    result = cli(*run_args(source, mapping, sandbox.endpoint(), "--concurrency", "4"), env=env)
    elapsed = time.monotonic() - started

    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    summary = result.json()
    assert summary["stopped"] == "endpoint" and summary["accepted"] == 0
    assert summary["retries"] == 0 and summary["failed"] == 0
    message = summary["message"]
    assert "certificate" in message and "127.0.0.1" in message and "SSL_CERT_FILE" in message
    assert sandbox.stats()["accepted"] == 0
    assert elapsed < 15


def test_ssl_cert_file_naming_a_missing_file_is_one_line_and_nothing_is_sent(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory, certificates: Certificates
) -> None:
    source, mapping = write_orders(tmp_path, 3)
    sandbox = sandbox_factory(*certificates.sandbox_args())
    env = cli_env(SSL_CERT_FILE=str(tmp_path / "nowhere.pem"))
    result = cli(*run_args(source, mapping, sandbox.endpoint()), env=env)

    assert result.code == 2
    assert (
        result.stderr.strip()
        == f"Error: SSL_CERT_FILE={tmp_path / 'nowhere.pem'}: no such file; name a PEM CA bundle."
    )
    assert sandbox.stats()["requests"] == 0


# --- proxies -------------------------------------------------------------------------------

PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


class ForwardProxy:
    """`proxy.py` (from PyPI) on 127.0.0.1, in its own process group; its access log says
    which requests and tunnels went through it."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        port_file, self.log = folder / "proxy.port", folder / "proxy.log"
        command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0"]
        command += ["--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1"]
        command += ["--log-file", str(self.log), "--log-level", "INFO"]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert self.process.poll() is None, "proxy.py did not start"
            assert time.monotonic() < deadline, "proxy.py did not say its port within 30 s"
            time.sleep(0.05)  # polls for the port file (an event), up to the 30 s deadline
        self.url = f"http://127.0.0.1:{int(port_file.read_text())}"

    def lines_for(self, port: int) -> list[str]:
        """Access-log lines of requests or tunnels to 127.0.0.1:<port>."""
        if not self.log.exists():
            return []
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [line for line in text.splitlines() if f"127.0.0.1:{port}" in line and " - " in line]

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@pytest.fixture
def forward_proxy(tmp_path: Path) -> Iterator[ForwardProxy]:
    proxy = ForwardProxy(tmp_path / "proxy")
    yield proxy
    proxy.close()


def through(proxy: ForwardProxy | None, upper: bool = True, **extra: str) -> dict[str, str]:
    """The CLI's environment with only the proxy variables given (in either case)."""
    env = {k: v for k, v in cli_env().items() if k.lower() not in PROXY_VARIABLES}
    if proxy is not None:
        for name in ("http_proxy", "https_proxy"):
            env[name.upper() if upper else name] = proxy.url
    return env | extra


def port_of(sandbox: SandboxProcess) -> int:
    return int(sandbox.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("upper", [True, False], ids=["HTTP_PROXY", "http_proxy"])
def test_a_run_goes_through_the_forward_proxy_to_an_http_sandbox(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory, forward_proxy: ForwardProxy, upper: bool
) -> None:
    count = 20
    source, mapping = write_orders(tmp_path, count)
    sandbox = sandbox_factory()
    args = run_args(source, mapping, sandbox.endpoint(), "--rate", "0")
    result = cli(*args, env=through(forward_proxy, upper))

    assert result.code == 0, result.stderr
    assert result.json()["accepted"] == count
    assert sorted(stored_ids(sandbox.store)) == sorted(f"ORD-{i}" for i in range(count))
    lines = forward_proxy.lines_for(port_of(sandbox))
    # One access-log line per connection the proxy carried (kept alive across requests).
    assert lines and all(" POST 127.0.0.1:" in line for line in lines), lines[:3]


def test_a_run_goes_through_the_forward_proxy_to_an_https_sandbox_in_a_connect_tunnel(
    tmp_path: Path,
    cli: Cli,
    sandbox_factory: Factory,
    forward_proxy: ForwardProxy,
    certificates: Certificates,
) -> None:
    count = 20
    source, mapping = write_orders(tmp_path, count)
    sandbox = sandbox_factory(*certificates.sandbox_args())
    env = through(forward_proxy, SSL_CERT_FILE=str(certificates.ca))
    result = cli(*run_args(source, mapping, sandbox.endpoint(), "--rate", "0"), env=env)

    assert result.code == 0, result.stderr
    assert result.json()["accepted"] == count
    assert sorted(stored_ids(sandbox.store)) == sorted(f"ORD-{i}" for i in range(count))
    lines = forward_proxy.lines_for(port_of(sandbox))
    assert lines and all(" CONNECT " in line for line in lines), lines[:3]
    assert not any(" POST " in line for line in lines)  # the proxy saw a tunnel, not events


@pytest.mark.parametrize(
    "no_proxy", ["NO_PROXY=127.0.0.1", "no_proxy=localhost,127.0.0.1", "NO_PROXY=*"]
)
def test_no_proxy_sends_directly(
    tmp_path: Path,
    cli: Cli,
    sandbox_factory: Factory,
    forward_proxy: ForwardProxy,
    no_proxy: str,
) -> None:
    source, mapping = write_orders(tmp_path, 5)
    sandbox = sandbox_factory()
    name, value = no_proxy.split("=")
    env = through(forward_proxy, **{name: value})
    result = cli(*run_args(source, mapping, sandbox.endpoint(), "--rate", "0"), env=env)

    assert result.code == 0, result.stderr
    assert result.json()["accepted"] == 5
    assert forward_proxy.lines_for(port_of(sandbox)) == []


def test_a_proxy_that_is_not_there_fails_rows_saying_so(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory
) -> None:
    source, mapping = write_orders(tmp_path, 3)
    sandbox = sandbox_factory()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = through(None, HTTP_PROXY=dead, BACKFILL_BACKOFF_BASE="0.01")
    args = run_args(source, mapping, sandbox.endpoint(), "--rate", "0", "--max-retries", "1")
    result = cli(*args, env=env)

    assert result.code == 1, result.stderr
    assert result.json()["failed_by_reason"] == {"gave up: connect failed": 3}
    assert "cannot connect to the proxy 127.0.0.1:" in (tmp_path / "failures.jsonl").read_text()
    assert sandbox.stats()["requests"] == 0


def test_an_https_proxy_url_is_refused_before_anything_is_written_or_sent(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory
) -> None:
    source, mapping = write_orders(tmp_path, 3)
    sandbox = sandbox_factory()
    env = through(None, HTTP_PROXY="https://me:secret@proxy.example:3128")
    result = cli(*run_args(source, mapping, sandbox.endpoint()), env=env)

    assert result.code == 2
    assert result.stderr.startswith("Error: HTTP_PROXY is https://proxy.example:3128: only http://")
    assert "secret" not in result.stderr + result.stdout
    assert sandbox.stats()["requests"] == 0
    assert not (tmp_path / "failures.jsonl").exists()


# --- retries that keep their promises ------------------------------------------------------


def test_retry_after_on_a_503_is_honoured_by_every_sender(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory
) -> None:
    """End to end, so on the wall clock: the server asked for a second, and the run cannot
    end sooner (a lower bound only: a loaded machine makes it later, never earlier)."""
    count = 10
    source, mapping = write_orders(tmp_path, count)
    faults = ["--fault", "503=1", "--fault-first-n", "2", "--fault-retry-after", "1"]
    sandbox = sandbox_factory(*faults)
    args = run_args(source, mapping, sandbox.endpoint(), "--rate", "0", "--concurrency", "2")
    started = time.monotonic()
    result = cli(*args, env=cli_env(BACKFILL_BACKOFF_BASE="0.001"))
    elapsed = time.monotonic() - started
    stats = sandbox.stop()

    assert result.code == 0, result.stderr
    summary = result.json()
    assert_accounted(summary, count)
    assert summary["accepted"] == count and summary["retries"] == 2
    assert stats["faults_injected"] == {"503": 2}
    # Without Retry-After the backoff would be a millisecond; the server asked for a second.
    assert elapsed >= 1.0


def test_a_429_storm_longer_than_max_retries_still_delivers_every_row(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory
) -> None:
    count, storm = 5, 6
    source, mapping = write_orders(tmp_path, count)
    faults = ["--fault", "429-no-retry-after=1", "--fault-first-n", str(storm)]
    sandbox = sandbox_factory(*faults)
    args = run_args(source, mapping, sandbox.endpoint(), "--rate", "50", "--concurrency", "1")
    result = cli(*args, "--max-retries", "1", env=cli_env(BACKFILL_BACKOFF_BASE="0.01"))
    stats = sandbox.stop()

    assert result.code == 0, result.stderr
    summary = result.json()
    assert_accounted(summary, count)
    assert (summary["accepted"], summary["failed"]) == (count, 0)
    # The first row alone met six 429s in a row, five more than --max-retries allows failures.
    assert stats["faults_injected"] == {"429-no-retry-after": storm} and summary["retries"] == storm
    assert sorted(stored_ids(sandbox.store)) == sorted(f"ORD-{i}" for i in range(count))


@pytest.mark.parametrize("fault", ["429", "429-no-retry-after"])
def test_a_429_that_never_clears_sends_each_row_to_the_report_once_its_budget_is_spent(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory, fault: str
) -> None:
    count = 3
    source, mapping = write_orders(tmp_path, count)
    sandbox = sandbox_factory("--fault", f"{fault}=1")
    args = run_args(source, mapping, sandbox.endpoint(), "--rate", "0", "--concurrency", "3")
    budget = ["--rate-limit-budget", "0.3", "--max-retries", "0"]
    result = cli(*args, *budget, env=cli_env(BACKFILL_BACKOFF_BASE="0.01"))
    stats = sandbox.stop()

    assert result.code == 1, result.stderr
    summary = result.json()
    assert_accounted(summary, count)
    assert summary["failed_by_reason"] == {"gave up: rate limited": count}
    failures = [json.loads(line) for line in (tmp_path / "failures.jsonl").read_text().splitlines()]
    for failure in failures:
        assert failure["status"] == 429 and "--rate-limit-budget" in failure["error"]
    if fault == "429":  # Retry-After: 1 is beyond the 0.3 s budget: no point waiting for it
        assert stats["requests"] == count
    else:  # --max-retries 0, yet retried: a 429 is not a failed attempt
        assert stats["requests"] > count


class StderrWatch:
    """A running CLI's stderr, read on a thread, so a test can wait for a line of it (a
    notice) with a deadline instead of sleeping; then `finish` gives the exit and the output."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._grown = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._grown:
                self.lines.append(line)
                self._grown.notify_all()
        with self._grown:
            self.lines.append("")  # the end
            self._grown.notify_all()

    def wait_for(self, text: str, deadline: float = 30) -> None:
        with self._grown:
            self._grown.wait_for(lambda: any(text in line for line in self.lines), deadline)
        assert any(text in line for line in self.lines), f"no {text!r} in {self.lines}"

    def finish(self, timeout: float = 30) -> tuple[str, str]:
        """Wait for the exit; (stdout, stderr)."""
        self.process.wait(timeout=timeout)
        assert self.process.stdout is not None
        self._reader.join(timeout)
        return self.process.stdout.read(), "".join(self.lines)


LONG_WAIT_NOTICE = "before sending again"  # the line a Retry-After over 5 minutes prints


def test_ctrl_c_during_a_long_retry_after_exits_at_once_and_resume_delivers_the_rest(
    tmp_path: Path,
    sandbox_factory: Factory,
    cli: Cli,
    cli_process: Callable[..., subprocess.Popen[str]],
) -> None:
    """The Ctrl-C comes once the run has said it waits out the 10 minutes (the notice is the
    event). "At once" is a promise about wall time: the bound, 10 s against a 600 s wait,
    leaves room for a loaded machine."""
    count = 40
    source, mapping = write_orders(tmp_path, count)
    faults = ["--fault", "429=1", "--fault-first-n", "1", "--fault-retry-after", "600"]
    sandbox = sandbox_factory(*faults)
    args = run_args(source, mapping, sandbox.endpoint(), "--rate", "0", "--concurrency", "4")
    process = cli_process(*args)
    stderr = StderrWatch(process)
    stderr.wait_for(LONG_WAIT_NOTICE)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    out, err = stderr.finish()
    waited = time.monotonic() - signalled

    assert process.returncode == 130, err
    assert waited < 10.0
    summary = json.loads(out)
    assert summary["stopped"] == "interrupted" and summary["unsent"] > 0
    assert summary["accepted"] + summary["unsent"] == count and summary["failed"] == 0

    resumed = cli(*args, "--resume")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["accepted"] == summary["unsent"]
    stored = stored_ids(sandbox.store)
    assert sorted(stored) == sorted(f"ORD-{i}" for i in range(count))
    assert max(stored.values()) == 1


def test_a_retry_after_longer_than_five_minutes_is_announced_and_waited_not_cut_short(
    tmp_path: Path, sandbox_factory: Factory, cli_process: Callable[..., subprocess.Popen[str]]
) -> None:
    """End to end: the notice, and no request after the 503 for as long as the run lived.
    That the wait is the whole 600 s (plus jitter, never less) is proven on a fake clock in
    test_sender.py, test_retry_after_on_a_503_pauses_every_sender_and_a_long_one_is_announced."""
    source, mapping = write_orders(tmp_path, 5)
    faults = ["--fault", "503=1", "--fault-first-n", "1", "--fault-retry-after", "600"]
    sandbox = sandbox_factory(*faults)
    args = run_args(source, mapping, sandbox.endpoint(), "--rate", "0", "--concurrency", "1")
    process = cli_process(*args)
    stderr = StderrWatch(process)
    stderr.wait_for(LONG_WAIT_NOTICE)
    process.send_signal(signal.SIGINT)
    out, err = stderr.finish()

    assert process.returncode == 130
    assert "The server asked to wait 10 min before sending again (HTTP 503" in err
    assert sandbox.stats()["requests"] == 1  # not retried early: the one 503, nothing after it
    assert json.loads(out)["unsent"] == 5


# --- concurrency that follows the network ----------------------------------------------------


def test_auto_concurrency_carries_the_rate_with_in_flight_bounded_by_littles_law(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory
) -> None:
    """The one end-to-end check of the rate, with a wide bound (1.1 × in any second, as the
    server counts on a loaded machine): the exact burst and rate are proven on the client's
    own timeline in test_sender.py (test_the_limiters_timeline_never_passes_...)."""
    count, rate, latency = 600, 400, 0.1  # 40 in flight carry it; a fixed 16 could not
    source, mapping = write_orders(tmp_path, count)
    sandbox = sandbox_factory("--latency", str(latency))
    result = cli(*run_args(source, mapping, sandbox.endpoint(), "--rate", str(rate)))
    stats = sandbox.stop()

    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary["accepted"] == count
    assert 16 < stats["max_in_flight"] <= 2 * rate * latency * 1.2  # latency ± 20 %
    assert summary["peak_in_flight"] <= 2 * rate * latency * 1.2  # as the client counts them
    assert summary["median_answer_ms"] >= latency * 1000 * 0.8
    assert stats["max_requests_in_any_1s_window"] <= 1.1 * rate


def test_a_fixed_cap_that_holds_the_rate_back_is_named_in_one_line_of_the_summary(
    tmp_path: Path, cli: Cli, sandbox_factory: Factory
) -> None:
    source, mapping = write_orders(tmp_path, 60)
    sandbox = sandbox_factory("--latency", "0.05")
    args = [a for a in run_args(source, mapping, sandbox.endpoint()) if a != "--json"]
    result = cli(*args, "--rate", "500", "--concurrency", "2")

    assert result.code == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if "cap 2 reached" in line]
    assert "ms per answer, so at most" in line and "raise --concurrency" in line
    assert "in flight     2 at most" in result.stdout
