"""Running a command and measuring it: wall time, CPU time, peak memory; and the sink.

Peak memory comes from GNU time (`/usr/bin/time -v`, "Maximum resident set size"): the
kernel's high-water mark of the process's resident set, reported by wait4() when it exits.
Sampling (psutil every 50 ms) can miss a short peak; the kernel's figure cannot. `taskset`
execs the tool in place, so the process GNU time waits for is the tool itself.

One limit: for a process that starts children, wait4() reports the largest single process,
not the sum of the tree. So a psutil sampler runs alongside and records how many processes
the tree ever had and the peak of their summed RSS; when the tree had more than one process,
the harness shows that sum too. CPU time (user + sys) also comes from GNU time, and it does
include reaped children.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

try:
    import psutil
except ImportError:  # the harness still works; it just cannot see child processes
    psutil = None

GNU_TIME = Path("/usr/bin/time")
SAMPLE_SECONDS = 0.05
STDERR_TAIL = 2_000
_TIME_FIELDS = {
    "Maximum resident set size (kbytes)": "max_rss_kb",
    "User time (seconds)": "user_seconds",
    "System time (seconds)": "sys_seconds",
}


class CommandFailed(RuntimeError):
    """A measured command exited non-zero or printed something we could not read."""


@dataclass
class Measured:
    """One run of a command. Times in seconds, memory in kB (as GNU time reports it)."""

    argv: list[str]
    returncode: int
    launched_at: float  # time.time() just before the launch, to compare with the sink's clock
    wall_seconds: float
    user_seconds: float
    sys_seconds: float
    max_rss_kb: int
    tree_peak_rss_kb: int | None = None
    tree_max_processes: int | None = None
    tree_max_threads: int | None = None
    waited_for_cpu_seconds: float | None = None
    stdout: str = field(default="", repr=False)
    stderr_tail: str = field(default="", repr=False)

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.sys_seconds

    def json_output(self) -> dict[str, object]:
        """The last line of stdout that parses as a JSON object (tools may print more)."""
        for line in reversed(self.stdout.strip().splitlines()):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    return value
        with contextlib.suppress(ValueError):
            value = json.loads(self.stdout)
            if isinstance(value, dict):
                return value
        raise CommandFailed(f"{' '.join(self.argv)} printed no JSON object: {self.stdout[-500:]!r}")

    def check(self) -> Measured:
        if self.returncode != 0:
            raise CommandFailed(
                f"{' '.join(self.argv)} exited {self.returncode}: {self.stderr_tail.strip()}"
            )
        return self

    def summary(self) -> dict[str, object]:
        """The figures, without the captured output, for results.json."""
        return {
            "returncode": self.returncode,
            "wall_seconds": round(self.wall_seconds, 4),
            "user_seconds": self.user_seconds,
            "sys_seconds": self.sys_seconds,
            "max_rss_kb": self.max_rss_kb,
            "tree_peak_rss_kb": self.tree_peak_rss_kb,
            "tree_max_processes": self.tree_max_processes,
            "tree_max_threads": self.tree_max_threads,
            "waited_for_cpu_seconds": self.waited_for_cpu_seconds,
        }


def run_delay_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU, so far.

    On a shared machine this is mostly the noise itself: a run that waited 2 s for a core was
    slowed by its neighbours, not by its own code. But a process with several busy threads,
    pinned to one core, also waits for its own threads: read it beside `tree_max_threads`.
    Read from /proc/PID/task/*/schedstat (Linux).
    """
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(stat.read_text().split()[1])
    return total / 1e9


class TreeSampler(threading.Thread):
    """Peak summed RSS, process count and CPU wait of a process's descendants, sampled."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss_kb = 0
        self.max_processes = 0
        self.max_threads = 0
        self.run_delay: dict[int, float] = {}  # pid -> last seen wait; lost: the final <50 ms
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stopping.wait(SAMPLE_SECONDS):
            try:
                tree = root.children(recursive=True)  # the tool and its children, not `time`
            except psutil.Error:
                return
            rss = threads = 0
            for process in tree:
                with contextlib.suppress(psutil.Error):
                    rss += process.memory_info().rss
                    threads += process.num_threads()
                    self.run_delay[process.pid] = run_delay_seconds(process.pid)
            self.max_threads = max(self.max_threads, threads)
            self.peak_rss_kb = max(self.peak_rss_kb, rss // 1024)
            self.max_processes = max(self.max_processes, len(tree))


def _parse_gnu_time(text: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.strip().rpartition(": ")
        if name in _TIME_FIELDS:
            figures[_TIME_FIELDS[name]] = float(value)
    missing = set(_TIME_FIELDS.values()) - set(figures)
    if missing:
        raise CommandFailed(f"GNU time gave no {sorted(missing)}: {text[-500:]!r}")
    return figures


def run_measured(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    sample_tree: bool = True,
) -> Measured:
    """Run `argv` under GNU time and return what it cost; never raises on a non-zero exit."""
    if not GNU_TIME.exists():
        raise SystemExit(f"{GNU_TIME} is needed for CPU and peak-memory figures (apt install time)")
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        wrapped = [str(GNU_TIME), "-v", "-o", report.name, *argv]
        launched_at = time.time()
        started = time.perf_counter()
        process = subprocess.Popen(
            wrapped, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        sampler = TreeSampler(process.pid) if sample_tree and psutil else None
        if sampler:
            sampler.start()
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise CommandFailed(f"{' '.join(argv)} took more than {timeout} s") from None
        finally:
            if sampler:
                sampler.stopping.set()
                sampler.join()
        wall = time.perf_counter() - started
        figures = _parse_gnu_time(Path(report.name).read_text())
    return Measured(
        argv=list(argv),
        returncode=process.returncode,
        launched_at=launched_at,
        wall_seconds=wall,
        user_seconds=figures["user_seconds"],
        sys_seconds=figures["sys_seconds"],
        max_rss_kb=int(figures["max_rss_kb"]),
        tree_peak_rss_kb=sampler.peak_rss_kb if sampler else None,
        tree_max_processes=sampler.max_processes if sampler else None,
        tree_max_threads=sampler.max_threads if sampler else None,
        waited_for_cpu_seconds=round(sum(sampler.run_delay.values()), 3) if sampler else None,
        stdout=stdout,
        stderr_tail=stderr[-STDERR_TAIL:],
    )


class Sink:
    """`benchmarks/sink.py` in its own process, pinned to its own core when asked."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    def _call(self, method: str, path: str) -> dict[str, object]:
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        self._call("POST", "/reset")

    def stats(self) -> dict[str, object]:
        return self._call("GET", "/stats")


@contextlib.contextmanager
def running_sink(cpu: int | None) -> Iterator[Sink]:
    """Start the sink, wait for its `listening on` line, and stop it on the way out."""
    script = Path(__file__).with_name("sink.py")
    argv = [sys.executable, str(script), "--port", "0"]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            raise RuntimeError(f"the sink did not start: {line!r}")
        yield Sink(process, match.group(1))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """`argv` run on one core only, or as is when `cpu` is None."""
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else list(argv)


def bench_env(**extra: str) -> dict[str, str]:
    """The harness's environment with the bench API key and the venv first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TORQUE_API_KEY"] = "bench-key"
    env.update(extra)
    return env
