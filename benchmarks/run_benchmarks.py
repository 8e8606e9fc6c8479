"""The benchmark harness: run by hand, never by the test suite.

    .venv/bin/python benchmarks/run_benchmarks.py            # about 7-10 minutes
    .venv/bin/python benchmarks/run_benchmarks.py --quick    # smoke test, 1-2 minutes
    .venv/bin/python benchmarks/run_benchmarks.py --big      # adds 10M rows (long)
    .venv/bin/python benchmarks/run_benchmarks.py --only send,rate

Prints a Markdown report and writes `benchmarks/out/results.json` (raw figures, rewritten
after every benchmark so an interrupted run keeps what it measured) and `results.md`.

The machine is small, noisy and shared, so:
- every throughput is paired with a reference measured alternately in the same run (ABBA
  order over the rounds), and the headline is the median of the per-round ratios;
- the measured command (backfill or a reference) is pinned to core 0 with `taskset`, and the
  sink to core 1, so the client under test never competes with the server it sends to.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import make_orders
import pyarrow.compute as pc
import pyarrow.parquet as pq
import report
from measure import Measured, Sink, bench_env, pinned, run_measured, running_sink

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
OUT = HERE / "out"
MAPPING = HERE / "map.yaml"
TOOL_CPU = 0
SINK_CPU = 1
CONCURRENCY = 32
BENCHMARKS = ("throughput", "rss", "send", "rate", "startup")
ALIASES = {"cpu": "send", "mapping": "throughput", "validate": "throughput"}


@dataclass(frozen=True)
class Plan:
    """How big and how many: the only difference between --quick, default and --big."""

    throughput_rows: tuple[int, ...]
    rss_rows: tuple[int, ...]
    send_rows: int
    rates: tuple[tuple[int, float], ...]  # (target events/s, seconds of sending)
    first_request_rows: int
    rounds: int
    help_runs: int
    first_request_runs: int


def make_plan(quick: bool, big: bool, rounds: int | None) -> Plan:
    if quick:
        return Plan(
            throughput_rows=(100_000,),
            rss_rows=(10_000, 100_000),
            send_rows=10_000,
            rates=((100, 2.0), (1000, 2.0), (5000, 2.0)),
            first_request_rows=100_000,
            rounds=rounds or 2,
            help_runs=5,
            first_request_runs=3,
        )
    return Plan(
        throughput_rows=(1_000_000, 10_000_000) if big else (1_000_000,),
        rss_rows=(100_000, 1_000_000, 10_000_000) if big else (100_000, 1_000_000),
        send_rows=50_000,
        rates=((100, 8.0), (1000, 8.0), (5000, 8.0)),
        first_request_rows=1_000_000,
        rounds=rounds or 3,
        help_runs=10,
        first_request_runs=5,
    )


def label(rows: int) -> str:
    """`1m`, `100k`, `2500`: short names for file names and tables."""
    for unit, size in (("m", 1_000_000), ("k", 1_000)):
        if rows % size == 0:
            return f"{rows // size}{unit}"
    return str(rows)


def ensure_data(rows: int, fmt: str) -> Path:
    """The generated orders file of this size and format, made once and then reused."""
    path = DATA / f"orders_{label(rows)}.{fmt}"
    if not path.exists():
        print(f"  generating {path.relative_to(HERE.parent)} ...", file=sys.stderr, flush=True)
        make_orders.write_orders(path, rows, fmt)
    return path


def paid_rows(rows: int) -> int:
    """How many rows of an `rows`-row file pass the mapping's filter (both formats agree)."""
    status = pq.read_table(ensure_data(rows, "parquet"), columns=["status"])["status"]
    return pc.sum(pc.cast(pc.equal(status, "paid"), "int64")).as_py()


class Bench:
    """What every benchmark needs: the plan, the tool, the sink, the environment."""

    def __init__(self, plan: Plan, tool: Path, sink: Sink) -> None:
        self.plan = plan
        self.tool = tool
        self.sink = sink
        self.env = bench_env()
        self.endpoint = f"{sink.url}/events"

    def measure(self, argv: list[str], timeout: float = 6 * 3_600) -> Measured:
        return run_measured(pinned(argv, TOOL_CPU), env=self.env, timeout=timeout)

    def validate(self, path: Path) -> Measured:
        argv = [str(self.tool), "validate", str(path), "--mapping", str(MAPPING), "--json"]
        return self.measure(argv).check()

    def run(self, path: Path, rate: int = 0, limit: int | None = None) -> Measured:
        """`backfill run` into the sink, with a fresh report and journal each time."""
        with tempfile.TemporaryDirectory(prefix="backfill-bench-") as scratch:
            argv = [
                *(str(self.tool), "run", str(path), "--mapping", str(MAPPING)),
                *("--endpoint", self.endpoint, "--rate", str(rate)),
                *("--concurrency", str(CONCURRENCY), "--quiet", "--json"),
                *("--report", str(Path(scratch) / "x.failures.jsonl"), "--restart"),
            ]
            if limit is not None:
                argv += ["--limit", str(limit)]
            return self.measure(argv).check()

    def reference_mapper(self, path: Path) -> Measured:
        argv = [sys.executable, str(HERE / "reference_mapper.py"), str(path)]
        return self.measure(argv).check()

    def reference_sender(self, events: int) -> Measured:
        argv = [sys.executable, str(HERE / "reference_sender.py"), "--url", self.endpoint]
        argv += ["--events", str(events), "--concurrency", str(CONCURRENCY)]
        return self.measure(argv).check()


def alternate(rounds: int, first: Callable[[], dict], second: Callable[[], dict]) -> list[dict]:
    """Run the pair `rounds` times in ABBA order, so a drift in machine load hits both alike."""
    results = []
    for index in range(rounds):
        pair = (first, second) if index % 2 == 0 else (second, first)
        results.extend(run() for run in pair)
    return results


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def per_event_us(cpu_seconds: float, events: int) -> float | None:
    return round(cpu_seconds / events * 1e6, 1) if events else None


def bench_throughput(bench: Bench) -> list[dict]:
    """`backfill validate` rows/s against the reference mapper, per size and format."""
    entries = []
    for rows in bench.plan.throughput_rows:
        for fmt in ("parquet", "csv"):
            path = ensure_data(rows, fmt)

            def tool(path: Path = path, rows: int = rows) -> dict:
                measured = bench.validate(path)
                output = measured.json_output()
                return {
                    "who": "backfill",
                    "rows_per_second": rows / measured.wall_seconds,
                    "output": output,
                    **measured.summary(),
                }

            def reference(path: Path = path, rows: int = rows) -> dict:
                measured = bench.reference_mapper(path)
                return {
                    "who": "reference",
                    "rows_per_second": rows / measured.wall_seconds,
                    "output": measured.json_output(),
                    **measured.summary(),
                }

            runs = alternate(bench.plan.rounds, tool, reference)
            entries.append(paired(runs, "rows_per_second") | {"rows": rows, "format": fmt})
    return entries


def paired(runs: list[dict], key: str) -> dict:
    """Medians of each side and the median of the per-round ratios backfill / reference."""
    tool = [run for run in runs if run["who"] == "backfill"]
    ref = [run for run in runs if run["who"] == "reference"]
    ratios = [t[key] / r[key] for t, r in zip(tool, ref, strict=True) if r[key]]
    return {
        "backfill": median([run[key] for run in tool]),
        "backfill_wall_seconds": median([run["wall_seconds"] for run in tool]),
        "backfill_max_rss_kb": max(run["max_rss_kb"] for run in tool),
        "reference": median([run[key] for run in ref]),
        "waited_for_cpu_seconds": {
            "backfill": median([run["waited_for_cpu_seconds"] or 0.0 for run in tool]),
            "reference": median([run["waited_for_cpu_seconds"] or 0.0 for run in ref]),
        },
        "ratio": median(ratios),
        "ratios": ratios,
        "runs": runs,
    }


def bench_rss(bench: Bench) -> list[dict]:
    """Peak RSS of validate (both formats) and of an unthrottled run (Parquet) per size."""
    entries = []
    for rows in bench.plan.rss_rows:
        for fmt in ("parquet", "csv"):
            measured = bench.validate(ensure_data(rows, fmt))
            entries.append(
                {"command": "validate", "rows": rows, "format": fmt, **measured.summary()}
            )
        bench.sink.reset()
        measured = bench.run(ensure_data(rows, "parquet"))
        accepted = int(measured.json_output().get("accepted", 0))
        entries.append(
            {
                "command": "run",
                "rows": rows,
                "format": "parquet",
                "accepted": accepted,
                "cpu_us_per_event": per_event_us(measured.cpu_seconds, accepted),
                **measured.summary(),
            }
        )
    return entries


def bench_send(bench: Bench) -> dict:
    """Unthrottled send rate of `backfill run` against the reference sender, alternately."""
    rows = bench.plan.send_rows
    path = ensure_data(rows, "parquet")
    events = paid_rows(rows)

    def tool() -> dict:
        bench.sink.reset()
        measured = bench.run(path)
        output = measured.json_output()
        accepted = int(output.get("accepted", 0))
        in_tool = output.get("events_per_second")
        if not in_tool and output.get("elapsed_seconds"):
            in_tool = accepted / float(output["elapsed_seconds"])
        return {
            "who": "backfill",
            "events": accepted,
            "events_per_second": accepted / measured.wall_seconds,
            "in_tool_events_per_second": in_tool,
            "cpu_us_per_event": per_event_us(measured.cpu_seconds, accepted),
            "output": output,
            "sink": bench.sink.stats(),
            **measured.summary(),
        }

    def reference() -> dict:
        bench.sink.reset()
        measured = bench.reference_sender(events)
        output = measured.json_output()
        sent = int(output["events"]) - int(output["errors"])
        return {
            "who": "reference",
            "events": sent,
            "events_per_second": float(output["events_per_second"]),
            "whole_process_events_per_second": sent / measured.wall_seconds,
            "cpu_us_per_event": per_event_us(float(output["cpu_seconds"]), sent),
            "output": output,
            "sink": bench.sink.stats(),
            **measured.summary(),
        }

    runs = alternate(bench.plan.rounds, tool, reference)
    result = paired(runs, "events_per_second") | {"rows": rows, "events": events}
    tool_runs = [run for run in runs if run["who"] == "backfill"]
    ref_runs = [run for run in runs if run["who"] == "reference"]
    in_tool = [run["in_tool_events_per_second"] or 0.0 for run in tool_runs]
    result["backfill_in_tool"] = median(in_tool)
    result["ratio_in_tool"] = median(
        [t / r["events_per_second"] for t, r in zip(in_tool, ref_runs, strict=True)]
    )
    result["cpu_us_per_event"] = {
        "backfill": median([run["cpu_us_per_event"] for run in tool_runs]),
        "reference": median([run["cpu_us_per_event"] for run in ref_runs]),
    }
    result["sink_busy"] = {
        "backfill": median([sink_busy(run["sink"]) or 0.0 for run in tool_runs]),
        "reference": median([sink_busy(run["sink"]) or 0.0 for run in ref_runs]),
    }
    result["checks"] = send_checks(runs)
    return result


def sink_busy(stats: dict) -> float | None:
    """The sink's CPU over the span of arrivals: near 1.0, the sink was the bottleneck."""
    span = (stats["last_at"] or 0) - (stats["first_at"] or 0)
    return stats["cpu_seconds"] / span if span > 0 else None


def send_checks(runs: list[dict]) -> list[str]:
    """What the sink saw that disagrees with what the sender says it did, or limited it."""
    problems = []
    for run in runs:
        busy = sink_busy(run["sink"])
        if busy and busy > 0.9:
            problems.append(
                f"the sink used {busy:.0%} of its core during a {run['who']} round: "
                "the sink, not the sender, may have set the rate"
            )
        if run["who"] != "backfill":
            continue
        sink = run["sink"]
        if sink["requests"] != run["events"]:
            problems.append(
                f"backfill said {run['events']} accepted, the sink saw "
                f"{sink['requests']} requests (retries or double sends?)"
            )
        if sink["missing_key"]:
            problems.append(f"{sink['missing_key']} requests came without an API key header")
    return sorted(set(problems))


def bench_rate(bench: Bench) -> list[dict]:
    """Does `--rate R` give R events/s: the mean over the run and the busiest second."""
    entries = []
    for target, seconds in bench.plan.rates:
        events = max(2, int(target * seconds))
        rows = bench.plan.send_rows if events <= paid_rows(bench.plan.send_rows) else 1_000_000
        bench.sink.reset()
        measured = bench.run(ensure_data(rows, "parquet"), rate=target, limit=events)
        stats = bench.sink.stats()
        span = (stats["last_at"] or 0) - (stats["first_at"] or 0)
        achieved = (stats["requests"] - 1) / span if span > 0 else None
        entries.append(
            {
                "target": target,
                "events": events,
                "sink": stats,
                "span_seconds": span,
                "achieved_mean": achieved,
                "mean_over_target": achieved / target if achieved else None,
                "worst_1s_window": stats["max_in_any_1s_window"],
                "worst_1s_window_starts_after": stats["max_window_starts_after"],
                "worst_over_target": stats["max_in_any_1s_window"] / target,
                "cpu_us_per_event": per_event_us(measured.cpu_seconds, stats["requests"]),
                "output": measured.json_output(),
                **measured.summary(),
            }
        )
    return entries


def bench_startup(bench: Bench) -> dict:
    """`backfill --help` against bare Python, and the time until the first request lands."""
    walls: dict[str, list[float]] = {
        "backfill --help": [],
        "python -c pass": [],
        "python -c 'import pandas, pyarrow, aiohttp, httpx'": [],
    }
    commands = {
        "backfill --help": [str(bench.tool), "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import pandas, pyarrow, aiohttp, httpx'": [
            sys.executable,
            "-c",
            "import pandas, pyarrow, aiohttp, httpx",
        ],
    }
    for _ in range(bench.plan.help_runs):
        for name, argv in commands.items():
            walls[name].append(bench.measure(argv).check().wall_seconds)
    first_request = []
    for fmt in ("parquet", "csv"):
        path = ensure_data(bench.plan.first_request_rows, fmt)
        delays = []
        for _ in range(bench.plan.first_request_runs):
            bench.sink.reset()
            measured = bench.run(path, limit=200)
            first_at = bench.sink.stats()["first_at"]
            if first_at is not None:
                delays.append(first_at - measured.launched_at)
        first_request.append(
            {
                "rows": bench.plan.first_request_rows,
                "format": fmt,
                "median_seconds": median(delays),
                "seconds": delays,
            }
        )
    return {
        "median_wall_seconds": {name: median(values) for name, values in walls.items()},
        "walls": walls,
        "time_to_first_request": first_request,
    }


def cpu_summary(results: dict) -> list[dict]:
    """CPU per event from every measured `backfill run`, gathered in one place."""
    benchmarks = results["benchmarks"]
    rows = []
    send = benchmarks.get("send")
    if isinstance(send, dict) and "cpu_us_per_event" in send:
        for who, value in send["cpu_us_per_event"].items():
            what = "unthrottled run" if who == "backfill" else "reference sender, sending only"
            per_event = {"events": send["events"], "cpu_us_per_event": value}
            rows.append({"who": who, "what": f"{what} (median of rounds)", **per_event})
    for entry in benchmarks.get("rate") or []:
        if isinstance(entry, dict):
            rows.append(
                {
                    "who": "backfill",
                    "what": f"--rate {entry['target']}",
                    "events": entry["events"],
                    "cpu_seconds": entry["user_seconds"] + entry["sys_seconds"],
                    "cpu_us_per_event": entry["cpu_us_per_event"],
                }
            )
    for entry in benchmarks.get("rss") or []:
        if isinstance(entry, dict) and entry.get("command") == "run":
            rows.append(
                {
                    "who": "backfill",
                    "what": f"unthrottled run, {label(entry['rows'])} rows",
                    "events": entry["accepted"],
                    "cpu_seconds": entry["user_seconds"] + entry["sys_seconds"],
                    "cpu_us_per_event": entry["cpu_us_per_event"],
                }
            )
    return rows


def machine() -> dict:
    """Enough about the machine and the software to compare two results files."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    meminfo = Path("/proc/meminfo").read_text().split()
    ram_gb = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024 / 1024
    versions = {}
    for package in ("backfill", "pandas", "pyarrow", "aiohttp", "uvloop", "httpx", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True, capture_output=True
    ).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gb": round(ram_gb, 1),
        "load_average_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        # the tool's loop: uvloop where installed, unless BACKFILL_EVENT_LOOP=asyncio
        "event_loop": os.environ.get("BACKFILL_EVENT_LOOP")
        or ("uvloop" if versions["uvloop"] else "asyncio"),
        "git_commit": commit or None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


RUNNERS: dict[str, Callable[[Bench], object]] = {
    "throughput": bench_throughput,
    "rss": bench_rss,
    "send": bench_send,
    "rate": bench_rate,
    "startup": bench_startup,
}


def selected(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [ALIASES.get(name.strip(), name.strip()) for name in only.split(",")]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        known = ", ".join([*BENCHMARKS, *ALIASES])
        raise SystemExit(f"--only: unknown benchmark {', '.join(unknown)}; choose from {known}")
    return [name for name in BENCHMARKS if name in names]


def save(results: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    results["cpu"] = cpu_summary(results)
    (OUT / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (OUT / "results.md").write_text(report.render(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a 1-2 minute smoke test")
    parser.add_argument("--big", action="store_true", help="add 10M rows (slow)")
    parser.add_argument("--only", help=f"comma-separated: {', '.join([*BENCHMARKS, 'cpu'])}")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 3, quick 2)")
    parser.add_argument(
        "--send-rows",
        type=make_orders.parse_rows,
        help="rows of the unthrottled send benchmark (default 50k), e.g. 1m: start-up weighs less",
    )
    parser.add_argument(
        "--tool",
        type=Path,
        default=Path(sys.executable).parent / "backfill",
        help="the backfill executable (default: the venv's)",
    )
    args = parser.parse_args(argv)
    if args.quick and args.big:
        parser.error("--quick and --big do not go together")
    plan = make_plan(args.quick, args.big, args.rounds)
    if args.send_rows:
        plan = replace(plan, send_rows=args.send_rows)
    names = selected(args.only)
    if not args.tool.exists():
        print(
            f"warning: {args.tool} does not exist; backfill's figures will be errors",
            file=sys.stderr,
        )
    results: dict = {
        "machine": machine(),
        "plan": asdict(plan),
        "tool": str(args.tool),
        "benchmarks": {},
        "errors": {},
    }
    with running_sink(SINK_CPU if (os.cpu_count() or 1) > 1 else None) as sink:
        bench = Bench(plan, args.tool, sink)
        for name in names:
            print(f"== {name}", file=sys.stderr, flush=True)
            try:
                results["benchmarks"][name] = RUNNERS[name](bench)
            except Exception as error:  # one broken benchmark must not lose the others
                results["errors"][name] = f"{type(error).__name__}: {error}"
                traceback.print_exc(file=sys.stderr)
            save(results)
    save(results)
    print(report.render(results))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
