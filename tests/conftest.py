"""Shared fixtures: sample files, a real sandbox process on 127.0.0.1, and the real CLI.

End-to-end tests run `backfill` as a subprocess against `python -m backfill.sandbox` as a
second subprocess: two real processes talking HTTP over loopback, nothing mocked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backfill.mapping.pubkey import b58encode

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
TEST_KEY = "test-key-Zq8sXw3LmN0pRt7vY"  # distinctive, so a leak is easy to grep for
CLI_TIMEOUT = 120
DEAD = "127.0.0.2"  # dead_address_and_port: an address whose SYNs are dropped
MUTATION_RUN = "MUTANT_UNDER_TEST" in os.environ  # mutmut sets it for all its test runs


def examples(count: int) -> int:
    """`count` generated examples for a property test, a tenth of them in a mutation run
    (docs/mutation.md): there the test runs again for every mutant it reaches, and the
    cases that must hold are explicit tests of their own."""
    return max(count // 10, 10) if MUTATION_RUN else count


def make_pubkey(seed: int) -> str:
    """A valid Solana public key, different for each seed."""
    return b58encode(seed.to_bytes(4, "big") * 8)


@pytest.fixture(autouse=True)
def own_ledger(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own ledger of delivered ids (the CLI's subprocesses inherit it): never
    the user's, which would outlive the test and hold ids for an endpoint whose port a
    later test's sandbox may get again (its rows would then count as already sent)."""
    ledger = tmp_path_factory.mktemp("ledger") / "ledger.sqlite3"
    monkeypatch.setenv("BACKFILL_LEDGER", str(ledger))
    return ledger


@pytest.fixture
def sample_parquet() -> Path:
    return SAMPLE / "orders.parquet"


@pytest.fixture
def sample_csv() -> Path:
    return SAMPLE / "orders.csv"


@pytest.fixture
def sample_mapping() -> Path:
    return SAMPLE / "map.yaml"


@dataclass
class SandboxProcess:
    """A sandbox in its own process; `events()` reads its store, `stats()` asks it."""

    url: str
    store: Path
    process: subprocess.Popen[str]
    final_stats: dict[str, Any] | None = field(default=None)

    def endpoint(self, path: str = "/events") -> str:
        return self.url + path

    def events(self) -> list[dict[str, Any]]:
        if not self.store.exists():
            return []
        lines = self.store.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def stats(self) -> dict[str, Any]:
        # An HTTPS sandbox's test certificate is checked by the tests that are about TLS.
        context = ssl._create_unverified_context() if self.url.startswith("https") else None
        url = self.url + "/_sandbox/stats"
        with urllib.request.urlopen(url, timeout=10, context=context) as answer:
            return json.loads(answer.read())

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            out, _ = self.process.communicate(timeout=30)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            self.final_stats = json.loads(lines[-1]) if lines else None
        return self.final_stats or {}


def start_sandbox(tmp_path: Path, *args: str, name: str = "store.jsonl") -> SandboxProcess:
    store = tmp_path / name
    process = subprocess.Popen(
        [sys.executable, "-m", "backfill.sandbox", "--port", "0", "--store", str(store), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"sandbox did not start: {line!r} {process.stderr.read()!r}")
    return SandboxProcess(url=line.split()[-1], store=store, process=process)


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[Callable[..., SandboxProcess]]:
    """Start sandboxes with any `python -m backfill.sandbox` flags; all stop at teardown."""
    started: list[SandboxProcess] = []

    def factory(*args: str, name: str = "store.jsonl") -> SandboxProcess:
        sandbox = start_sandbox(tmp_path, *args, name=name)
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in started:
        if sandbox.process.poll() is None:
            sandbox.process.kill()
            sandbox.process.wait(timeout=10)


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., SandboxProcess]) -> SandboxProcess:
    return sandbox_factory()


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TORQUE_API_KEY", "TORQUE_ENDPOINT")}
    env["TORQUE_API_KEY"] = TEST_KEY
    env.update(extra)
    return env


def run_cli(
    *args: str | Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = CLI_TIMEOUT,
) -> CliResult:
    """The real `backfill` entry point in a subprocess, as a user would run it."""
    done = subprocess.run(
        [sys.executable, "-m", "backfill", *map(str, args)],
        cwd=cwd,
        env=cli_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., CliResult]:
    """`cli("run", source, "--mapping", m, ...)` in `tmp_path`, with TEST_KEY in the env."""

    def invoke(*args: str | Path, env: dict[str, str] | None = None, **kw: Any) -> CliResult:
        return run_cli(*args, cwd=tmp_path, env=env, **kw)

    return invoke


VALID_ORDERS_MAPPING = """\
event_name: STORE_ORDER
timestamp: {column: created_at, unit: ms}
user: {pubKey: wallet}
event_data:
  orderId: order_id
  orderAmount: {column: total, type: number}
"""
FIRST_MS = 1_700_000_000_000


def write_valid_orders(tmp_path: Path, count: int) -> tuple[Path, Path]:
    """`count` valid orders, ORD-0 .. ORD-<count-1>, and the mapping that sends them all."""
    source = tmp_path / "orders.parquet"
    table = pa.table(
        {
            "order_id": [f"ORD-{i}" for i in range(count)],
            "created_at": pa.array(range(FIRST_MS, FIRST_MS + count), pa.int64()),
            "wallet": [make_pubkey(i % 64) for i in range(count)],
            "total": [i + 0.5 for i in range(count)],
        }
    )
    pq.write_table(table, source)
    mapping = tmp_path / "map.yaml"
    mapping.write_text(VALID_ORDERS_MAPPING, encoding="utf-8")
    return source, mapping


# --- rerun and resume end to end (tests/test_rerun.py, tests/test_resume.py) ------------------


def write_sample_mapping(
    path: Path,
    *,
    true_words: tuple[str, ...] = ("premium", "gold"),
    false_words: tuple[str, ...] = ("basic",),
) -> Path:
    """A copy of sample_data/map.yaml with its `isPremiumUser` words replaced: the defaults
    are the right mapping; leaving a word out makes a wrong one that fails a known set of rows."""
    import yaml

    raw = yaml.safe_load((SAMPLE / "map.yaml").read_text(encoding="utf-8"))
    spec = raw["event_data"]["isPremiumUser"]
    for key in (True, False, "true", "false"):  # YAML reads a bare `true:` key as a boolean
        spec.pop(key, None)
    spec["true"], spec["false"] = list(true_words), list(false_words)
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def journal_accepted_rows(journal: Path) -> list[int]:
    """The rows a journal says the server accepted, read the way `--resume` reads them."""
    from backfill.books.journal import read_journal

    state = read_journal(journal)
    assert state is not None, f"no journal at {journal}"
    return [row for rows in state.accepted.values() for row in rows.rows()]


def canonical_event(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class SampleOutcome:
    """What a correct run of orders.csv sends: every valid row's exact event, and the bad rows."""

    rows_by_event: dict[str, int]
    bad_rows: frozenset[int]
    tiers: dict[int, str]  # valid row -> its `tier` cell, lower case

    @property
    def valid_rows(self) -> frozenset[int]:
        return frozenset(self.rows_by_event.values())

    def rows_with_tier(self, *tiers: str) -> frozenset[int]:
        """Valid rows whose tier is one of `tiers`: those a mapping without the word fails."""
        return frozenset(row for row, tier in self.tiers.items() if tier in tiers)

    def stored_rows(self, sandbox: SandboxProcess) -> list[int | None]:
        """The row of each event in the sandbox's store, in arrival order; None: unexpected."""
        return [self.rows_by_event.get(canonical_event(line["event"])) for line in sandbox.events()]


@pytest.fixture(scope="session")
def sample_outcome(tmp_path_factory: pytest.TempPathFactory) -> SampleOutcome:
    import csv

    from backfill.look.validate import mapped_chunks, open_inputs

    mapping = write_sample_mapping(tmp_path_factory.mktemp("sample") / "map.yaml")
    source, opened = open_inputs(SAMPLE / "orders.csv", mapping)
    rows_by_event: dict[str, int] = {}
    bad: set[int] = set()
    for chunk in mapped_chunks(source, opened):
        for row, event in chunk.events():
            rows_by_event[canonical_event(event.as_dict())] = row
        bad.update(f.row for f in chunk.failures if f.row is not None)
    with (SAMPLE / "orders.csv").open(encoding="utf-8", newline="") as handle:
        cells = list(csv.DictReader(handle))
    valid = set(rows_by_event.values())
    tiers = {row: cells[row]["tier"].lower() for row in valid}
    return SampleOutcome(rows_by_event, frozenset(bad), tiers)


@pytest.fixture
def cli_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `backfill` in the background in `tmp_path`, to signal or kill it part-way;
    whatever is still running at teardown is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "backfill", *map(str, args)],
            cwd=tmp_path,
            env=cli_env() if env is None else env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


@pytest.fixture
def dead_address_and_port() -> Iterator[tuple[socket.socket, int]]:
    """A live port P on 127.0.0.1 (the caller listens there) and 127.0.0.2:P dropping SYNs.

    A dropped SYN without root: 127.0.0.2 listens with a backlog of 0 and its accept queue is
    filled by connections nobody accepts; Linux then drops every further SYN (with
    net.ipv4.tcp_abort_on_overflow at its default, 0), and a client waits as it would for a
    broken route.
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("a full accept queue drops SYNs on Linux; other systems may refuse them")
    live = socket.socket()
    live.bind(("127.0.0.1", 0))
    port = live.getsockname()[1]
    dead = socket.socket()
    dead.bind((DEAD, port))
    dead.listen(0)
    queued = [socket.socket() for _ in range(3)]
    for filler in queued:
        filler.setblocking(False)
        filler.connect_ex((DEAD, port))
    probe = socket.create_connection
    try:
        probe((DEAD, port), timeout=0.5).close()
        pytest.skip("this system answers SYNs to a full accept queue")
    except TimeoutError:
        pass  # the SYN was dropped: the situation the test needs
    yield live, port
    for sock in (*queued, dead, live):
        sock.close()
