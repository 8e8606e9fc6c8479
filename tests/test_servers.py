"""The real CLI against real HTTP servers no one here wrote (tests/real_servers.py), each
started here on 127.0.0.1 and stopped after: every event arrives once, the summary says so,
also when the server closes connections idle for 1 s and events come once a second (the
keep-alive race: a request written as the server closes is lost, a possible duplicate).

The 30-event race takes 30 s per server: CI runs it against uvicorn and cheroot; hypercorn
and tornado are marked `keepalive_race`, run by hand (`pytest tests/test_servers.py -k race
-m ''` runs all four; docs/sending.md has the results).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_env, run_cli, write_valid_orders
from tests.real_servers import STORE_ENV

START_SECONDS = 30  # a server that does not listen by then fails its test
Command = Callable[[int, int], list[str]]
PY = sys.executable


def _script(name: str) -> Command:
    return lambda port, keep_alive: [PY, "tests/real_servers.py", name, str(port), str(keep_alive)]


def _uvicorn(http: str) -> Command:
    return lambda port, keep_alive: [
        PY, "-m", "uvicorn", "tests.real_servers:asgi_app", "--host", "127.0.0.1",
        "--port", str(port), "--http", http, "--timeout-keep-alive", str(keep_alive),
        "--lifespan", "off", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def _gunicorn(worker: str) -> Command:
    return lambda port, keep_alive: [
        PY, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-k", worker, "--threads", "4",
        "--keep-alive", str(keep_alive), "tests.real_servers:wsgi_app",
    ]  # fmt: skip


def _hypercorn(port: int, keep_alive: int) -> list[str]:
    return [
        PY, "-m", "hypercorn", "tests.real_servers:asgi_app", "--bind", f"127.0.0.1:{port}",
        "--keep-alive", str(keep_alive),
    ]  # fmt: skip


def _waitress(port: int, keep_alive: int) -> list[str]:
    return [
        PY, "-m", "waitress", "--host=127.0.0.1", f"--port={port}",
        f"--channel-timeout={keep_alive}", "--cleanup-interval=1", "tests.real_servers:wsgi_app",
    ]  # fmt: skip


SERVERS: dict[str, Command] = {
    "uvicorn-h11": _uvicorn("h11"),
    "uvicorn-httptools": _uvicorn("httptools"),
    "hypercorn": _hypercorn,
    "waitress": _waitress,
    "gunicorn-sync": _gunicorn("sync"),
    "gunicorn-gthread": _gunicorn("gthread"),
    "tornado": _script("tornado"),
    "cheroot": _script("cheroot"),
    "http.server HTTP/1.0": _script("http.server"),
}
if sys.platform == "win32":  # gunicorn is for Unix
    del SERVERS["gunicorn-sync"], SERVERS["gunicorn-gthread"]


class RealServer:
    """One server in its own process, keeping what it is sent in `store`."""

    def __init__(self, command: Command, keep_alive: int, tmp_path: Path) -> None:
        self.port = _free_port()
        self.store = tmp_path / "kept.jsonl"
        self.log = tmp_path / "server.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command(self.port, keep_alive),
                cwd=ROOT,
                env=cli_env(**{STORE_ENV: str(self.store)}),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_listening()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def kept(self) -> Counter[str]:
        """orderId -> how many times the server kept it."""
        if not self.store.exists():
            return Counter()
        lines = self.store.read_text().splitlines()
        return Counter(json.loads(line)["event_data"]["orderId"] for line in lines)

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)  # polling a process we do not control: no event to wait on
        raise AssertionError(f"the server did not listen within {START_SECONDS} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def real_server(tmp_path: Path) -> Iterator[Callable[[str, int], RealServer]]:
    started: list[RealServer] = []

    def start(name: str, keep_alive: int) -> RealServer:
        server = RealServer(SERVERS[name], keep_alive, tmp_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def send(tmp_path: Path, url: str, events: int, *options: str) -> dict[str, object]:
    """The CLI sends `events` events; its summary (the run must exit 0)."""
    source, mapping = write_valid_orders(tmp_path, events)
    args = ["run", source, "--mapping", mapping, "--endpoint", url, "--json", "--quiet"]
    done = run_cli(*args, *options, cwd=tmp_path, env=cli_env(BACKFILL_BACKOFF_BASE="0.05"))
    assert done.code == 0, done.stderr
    assert "Traceback" not in done.stderr
    return dict(json.loads(done.stdout))


def assert_each_once(server: RealServer, summary: dict[str, object], events: int) -> None:
    assert server.kept() == Counter({f"ORD-{i}": 1 for i in range(events)})
    assert (summary["read"], summary["accepted"], summary["failed"]) == (events, events, 0)
    assert (summary["retries"], summary["uncertain"]) == (0, 0)


TRAFFIC = [  # (the server's keep-alive seconds, events, --rate, --concurrency)
    pytest.param(5, 40, "400", "8", id="busy"),
    pytest.param(1, 4, "1", "1", id="idle-connections-closed-after-1s-at-1-per-s"),
]


@pytest.mark.parametrize("name", list(SERVERS))
@pytest.mark.parametrize(("keep_alive", "events", "rate", "concurrency"), TRAFFIC)
def test_every_event_arrives_once_at_a_real_server(
    tmp_path: Path,
    real_server: Callable[[str, int], RealServer],
    name: str,
    keep_alive: int,
    events: int,
    rate: str,
    concurrency: str,
) -> None:
    """Busy, and at 1 event/s against a server that closes idle connections after 1 s: the
    client must see each close and never lose or repeat an event to it."""
    server = real_server(name, keep_alive)
    summary = send(tmp_path, server.url, events, "--rate", rate, "--concurrency", concurrency)
    assert_each_once(server, summary, events)


RACE = pytest.mark.keepalive_race


@pytest.mark.parametrize(
    "name",
    [
        "uvicorn-httptools",
        "cheroot",
        pytest.param("uvicorn-h11", marks=RACE),
        pytest.param("hypercorn", marks=RACE),
        pytest.param("tornado", marks=RACE),
    ],
)
def test_the_keep_alive_race_costs_no_retry_in_30_events_at_1_per_second(
    tmp_path: Path, real_server: Callable[[str, int], RealServer], name: str
) -> None:
    server = real_server(name, 1)
    summary = send(tmp_path, server.url, 30, "--rate", "1", "--concurrency", "2")
    assert_each_once(server, summary, 30)
