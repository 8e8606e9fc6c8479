"""The network benchmarks of issue 13: run by hand, never by the test suite.

    .venv/bin/python benchmarks/network.py                    # everything, 10-20 minutes
    .venv/bin/python benchmarks/network.py --only rate --rounds 1
    .venv/bin/python benchmarks/network.py --only rate --server sandbox
    .venv/bin/python benchmarks/network.py --only capacity,tls
    .venv/bin/python benchmarks/network.py --only tls --tls-senders backfill,aiohttp

Every figure is the whole `backfill run` process (or a reference sender) against a server
in another process, over 127.0.0.1: the sandbox (`python -m backfill.sandbox`), or for the
`rate` cells, by default, `benchmarks/far_server.py`.

- `rate`: nothing but `--rate` (concurrency auto) for rate x server latency. The server is
  `--server far` (default): far_server.py, a bare HTTP server standing in for a Torque on
  other machines (65-100 µs of CPU a request here, a third to a quarter of the sandbox's); or
  `--server sandbox`, whose 250-310 µs a request take 1.4 of this machine's 2 cores at
  5000/s, so that the cell measures the machine, not backfill. The delivered rate is
  accepted events over the span from the first to the last acceptance, as the server
  saw it (the process's start-up is reported apart); the busiest one-second window and the
  most requests in flight are the server's counts. "steady" is the median of the server's
  whole seconds of requests, the first and the last left out: the rate once the ramp is over
  (the delivered rate counts the ramp, as it should; steady says how much of a miss it is).
  With `--ceiling`, each round also runs the plain aiohttp sender unthrottled with
  1.2 x rate x latency requests in flight against the same kind of server: what this machine
  can carry at that many in flight. Below the rate, the machine, not the gate, is the limit.
  The 1-minute load average at the start of each round is kept with the figures.
  With `--pin 0:1`, the server runs on CPU 0 and the sender on CPU 1 (`taskset`), so the
  two do not take each other's core (other work on the machine still may).
- `capacity`: a sandbox whose answers slow down beyond `--capacity` requests in flight;
  unthrottled (`--rate 0`), auto against a fixed 256: per second, the requests, the requests
  in flight and the time the server took to answer them.
- `cpu`: the CPU each side spends per event, unthrottled at 64 in flight against a 20 ms
  sandbox: backfill (its start-up, measured by a run of 100 events, taken off), the plain
  aiohttp sender (its own figure, sending only) and the sandbox (from /proc, Linux only).
  At `--rate R` on one machine the pair needs R × (client + sandbox) of CPU, and backfill's
  sending loop is one thread: 1 s / its cost per event is the most it can send on one core.
- `tls`: unthrottled over HTTPS (a `trustme` CA trusted through SSL_CERT_FILE): backfill
  against a plain aiohttp sender and an httpx sender posting the same bodies; the server
  counts connections, each one a TLS handshake.

The results go to stdout as Markdown and to benchmarks/out/network.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
OUT = HERE / "out"
MAPPING = HERE / "map.yaml"
RATES = (100, 1000, 5000)
LATENCIES = (0.02, 0.08, 0.25)
SENDING_SECONDS = 6.0
PY = sys.executable
PINNED: dict[str, list[str]] = {"server": [], "client": []}  # `taskset -c N`, with --pin
SERVERS = {  # how to start each server; both print their URL, then their stats on SIGTERM
    "far": [PY, str(HERE / "far_server.py")],
    "sandbox": [PY, "-m", "backfill.sandbox"],
}
SERVER_TITLES = {"far": "benchmarks/far_server.py", "sandbox": "python -m backfill.sandbox"}


def orders(rows: int) -> Path:
    path = DATA / f"orders_{rows}.parquet"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [PY, str(HERE / "make_orders.py"), "--rows", str(rows), "--out", str(path)], check=True
        )
    return path


class Server:
    """One of SERVERS in its own process, on a free port, until `stop()` returns its stats."""

    def __init__(self, kind: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [*PINNED["server"], *SERVERS[kind], "--port", "0", *args],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().split()[-1]

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def backfill(url: str, rows: int, *args: str, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        source = orders(max(rows * 21 // 20 + 100, 1000))  # 5 % of the orders are filtered
        command = [*PINNED["client"], PY, "-m", "backfill", "run", str(source)]
        command += ["--mapping", str(MAPPING)]
        command += ["--endpoint", url + "/events", "--limit", str(rows), "--json", "--quiet"]
        done = subprocess.run(
            [*command, "--report", str(Path(folder) / "r.jsonl"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"backfill exited {done.returncode}: {done.stderr[-2000:]}")
    return {**json.loads(done.stdout), "wall_seconds": round(wall, 2)}


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["TORQUE_API_KEY"] = "bench-key"
    return env | extra


# --- rate x latency --------------------------------------------------------------------------


def rate_cell(
    rate: int,
    latency: float,
    rounds: int,
    ceiling: bool = False,
    server: str = "far",
    seconds: float = SENDING_SECONDS,
) -> dict[str, Any]:
    rows = int(rate * seconds)
    runs = []
    for _ in range(rounds):
        load = os.getloadavg()[0]
        running = Server(server, "--latency", str(latency))
        summary = backfill(running.url, rows, "--rate", str(rate), env=env_with())
        stats = running.stop()
        span = stats["accepted_span_seconds"] or 1e-9
        runs.append(
            {
                "load": round(load, 1),
                "delivered_per_s": round((stats["accepted"] - 1) / span, 1),
                "steady_per_s": steady(stats["timeline"]),
                "max_1s_window": stats["max_requests_in_any_1s_window"],
                "server_max_in_flight": stats["max_in_flight"],
                "client_peak_in_flight": summary["peak_in_flight"],
                "median_answer_ms": summary["median_answer_ms"],
                "wall_seconds": summary["wall_seconds"],
                "accepted": summary["accepted"],
            }
        )
        if ceiling:
            runs[-1]["ceiling_per_s"] = machine_ceiling(
                rows, math.ceil(1.2 * rate * latency), latency, server
            )
    delivered = statistics.median(r["delivered_per_s"] for r in runs)
    return {
        "rate": rate,
        "latency_ms": latency * 1000,
        "delivered_per_s": delivered,
        "ratio": round(delivered / rate, 3),
        "steady_per_s": statistics.median(r["steady_per_s"] for r in runs),
        "load": [r["load"] for r in runs],
        "ceiling_per_s": (statistics.median(r["ceiling_per_s"] for r in runs) if ceiling else None),
        "max_1s_window": max(r["max_1s_window"] for r in runs),
        "max_in_flight": max(r["server_max_in_flight"] for r in runs),
        "bound_2rl": 2 * rate * latency,
        "median_answer_ms": statistics.median(r["median_answer_ms"] for r in runs),
        "runs": runs,
    }


def steady(timeline: list[dict[str, Any]]) -> float:
    """Requests per whole second once the ramp is over: the first and last seconds left out."""
    middle = [second["requests"] for second in timeline[1:-1]]
    return statistics.median(middle) if middle else 0.0


def machine_ceiling(rows: int, in_flight: int, latency: float, server: str = "far") -> float:
    """The plain aiohttp sender, unthrottled, `in_flight` workers, against the same server."""
    running = Server(server, "--latency", str(latency))
    reference(running.url, rows, "reference_sender.py", env_with(), concurrency=in_flight)
    stats = running.stop()
    return round(stats["accepted"] / (stats["accepted_span_seconds"] or 1e-9), 1)


# --- a server that slows with load -----------------------------------------------------------


def capacity_runs(rows: int) -> list[dict[str, Any]]:
    results = []
    for concurrency in ("auto", "256"):
        load = os.getloadavg()[0]
        sandbox = Server("sandbox", "--latency", "0.05", "--capacity", "20")
        args = ("--rate", "0", "--concurrency", concurrency)
        summary = backfill(sandbox.url, rows, *args, env=env_with())
        stats = sandbox.stop()
        results.append(
            {
                "concurrency": concurrency,
                "load": round(load, 1),
                "delivered_per_s": round(stats["accepted"] / stats["accepted_span_seconds"], 1),
                "median_answer_ms": summary["median_answer_ms"],
                "server_max_in_flight": stats["max_in_flight"],
                "timeline": stats["timeline"],
            }
        )
    return results


# --- CPU per event ---------------------------------------------------------------------------


def cpu_runs(rows: int, rounds: int) -> list[dict[str, Any]]:
    orders(rows * 21 // 20 + 100)  # made before any clock starts
    runs = []
    for _ in range(rounds):
        sandbox = Server("sandbox")
        start_up = backfill_cpu(sandbox.url, 100)
        sandbox.stop()
        figures: dict[str, Any] = {"load": round(os.getloadavg()[0], 1)}
        for name in ("backfill", "aiohttp"):
            sandbox = Server("sandbox", "--latency", "0.02")
            sandbox_before = process_cpu(sandbox.process.pid)
            if name == "backfill":
                spent = backfill_cpu(sandbox.url, rows, "--rate", "0", "--concurrency", "64")
                client = (spent - start_up) / rows
            else:
                sent = reference(sandbox.url, rows, "reference_sender.py", env_with(), 64)
                client = sent["cpu_seconds"] / sent["events"]
            server = (process_cpu(sandbox.process.pid) - sandbox_before) / rows
            sandbox.stop()
            figures[name] = {"client_us": round(client * 1e6), "sandbox_us": round(server * 1e6)}
        figures["start_up_s"] = round(start_up, 2)
        runs.append(figures)
    return runs


def backfill_cpu(url: str, rows: int, *args: str) -> float:
    """CPU seconds (user + system) of one `backfill run`, start-up included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    backfill(url, rows, *args, env=env_with())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def process_cpu(pid: int) -> float:
    """CPU seconds of a running process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- unthrottled over TLS --------------------------------------------------------------------


def tls_runs(rows: int, rounds: int, only: set[str]) -> dict[str, Any]:
    import trustme

    folder = Path(tempfile.mkdtemp())
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    issued.private_key_pem.write_to_path(str(folder / "key.pem"))
    (folder / "cert.pem").write_bytes(b"".join(b.bytes() for b in issued.cert_chain_pems))
    tls = ("--tls-cert", str(folder / "cert.pem"), "--tls-key", str(folder / "key.pem"))
    env = env_with(SSL_CERT_FILE=str(folder / "ca.pem"))
    senders = {
        "backfill": lambda url: backfill(url, rows, "--rate", "0", env=env),
        "aiohttp": lambda url: reference(url, rows, "reference_sender.py", env),
        "httpx": lambda url: reference(url, rows, "httpx_sender.py", env),
    }
    senders = {name: send for name, send in senders.items() if name in only}
    figures: dict[str, list[dict[str, Any]]] = {name: [] for name in senders}
    for _ in range(rounds):
        for name, send in senders.items():
            load = os.getloadavg()[0]
            sandbox = Server("sandbox", *tls, env=env)
            summary = send(sandbox.url)
            stats = sandbox.stop()
            figures[name].append(
                {
                    "per_s": round(stats["accepted"] / stats["accepted_span_seconds"], 1),
                    "load": round(load, 1),
                    "connections": stats["connections"],
                    "server_max_in_flight": stats["max_in_flight"],
                    "client_peak_in_flight": summary.get("peak_in_flight"),
                }
            )
    medians = {name: statistics.median(r["per_s"] for r in runs) for name, runs in figures.items()}
    return {"medians": medians, "runs": figures}


def reference(
    url: str, rows: int, script: str, env: dict[str, str], concurrency: int = 32
) -> dict[str, Any]:
    command = [*PINNED["client"], PY, str(HERE / script), "--url", url + "/events"]
    command += ["--events", str(rows)]
    done = subprocess.run(
        [*command, "-c", str(concurrency)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


# --- report ----------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    lines = []
    if "rate" in results:
        server = results.get("server", "sandbox")
        lines += [
            f"### --rate × latency, server: {server} ({SERVER_TITLES[server]})",
            "",
            "| --rate | latency | delivered/s (median) | ratio | steady/s | max 1-s window"
            " | max in flight (server) | 2 × rate × latency | median answer | machine ceiling"
            " | load (1 min) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for cell in results["rate"]:
            ceiling = cell.get("ceiling_per_s")
            lines.append(
                f"| {cell['rate']} | {cell['latency_ms']:.0f} ms | {cell['delivered_per_s']:,.0f}"
                f" | {cell['ratio']:.3f} | {cell['steady_per_s']:,.0f}"
                f" | {cell['max_1s_window']:,} | {cell['max_in_flight']:,}"
                f" | {cell['bound_2rl']:,.0f} | {cell['median_answer_ms']:.0f} ms"
                f" | {'' if ceiling is None else f'{ceiling:,.0f}'}"
                f" | {', '.join(str(load) for load in cell['load'])} |"
            )
    if "capacity" in results:
        for run in results["capacity"]:
            lines += [
                "",
                f"--concurrency {run['concurrency']}: {run['delivered_per_s']:,.0f} events/s, "
                f"median answer {run['median_answer_ms']:.0f} ms, "
                f"at most {run['server_max_in_flight']} in flight (load {run['load']})",
                "",
                "| second | requests | mean in flight | max in flight | mean answer (server) |",
                "| ---: | ---: | ---: | ---: | ---: |",
            ]
            lines += [
                f"| {t['second']} | {t['requests']} | {t['mean_in_flight']} "
                f"| {t['max_in_flight']} | {t.get('mean_answer_ms', '')} ms |"
                for t in run["timeline"]
            ]
    if "cpu" in results:
        lines += [
            "",
            "| round | load | backfill: client / sandbox, µs per event | aiohttp sender:"
            " client / sandbox | backfill's start-up |",
            "| --- | --- | --- | --- | --- |",
        ]
        for number, run in enumerate(results["cpu"], 1):
            ours, plain = run["backfill"], run["aiohttp"]
            lines.append(
                f"| {number} | {run['load']} | {ours['client_us']} / {ours['sandbox_us']}"
                f" | {plain['client_us']} / {plain['sandbox_us']} | {run['start_up_s']} s |"
            )
    if "tls" in results:
        medians = results["tls"]["medians"]
        runs = results["tls"]["runs"]
        lines += ["", "| sender (TLS, unthrottled) | events/s per round | median | vs aiohttp |"]
        lines += ["| --- | --- | ---: | ---: |"]
        for name, value in medians.items():
            rounds = ", ".join(f"{run['per_s']:,.0f}" for run in runs[name])
            lines.append(f"| {name} | {rounds} | {value:,.0f} | {value / medians['aiohttp']:.2f} |")
        loads = ", ".join(str(run["load"]) for run in runs["backfill"])
        lines.append(f"\nload (1 min) at the start of backfill's rounds: {loads}")
        for run in results["tls"]["runs"]["backfill"]:
            lines.append(
                f"\nbackfill: {run['connections']} connections (TLS handshakes) for "
                f"{run['client_peak_in_flight']} requests in flight at most"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="rate,capacity,tls")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--latencies", default=",".join(map(str, LATENCIES)))
    parser.add_argument(
        "--tls-senders",
        default="backfill,aiohttp,httpx",
        help="which of backfill, aiohttp, httpx to run over TLS (httpx takes minutes a round)",
    )
    parser.add_argument(
        "--server",
        choices=sorted(SERVERS),
        default="far",
        help="the server of the rate cells and --ceiling: far (far_server.py) or the sandbox",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=SENDING_SECONDS,
        help="seconds of sending per rate cell: rate x this many events (default 6)",
    )
    parser.add_argument(
        "--ceiling", action="store_true", help="also the plain aiohttp sender's rate per cell"
    )
    parser.add_argument(
        "--pin", metavar="SERVER:CLIENT", help="CPUs for taskset, e.g. 0:1 (Linux only)"
    )
    args = parser.parse_args()
    if args.pin:
        server_cpus, client_cpus = args.pin.split(":")
        PINNED["server"] = ["taskset", "-c", server_cpus]
        PINNED["client"] = ["taskset", "-c", client_cpus]
    only = set(args.only.split(","))
    results: dict[str, Any] = {"rounds": args.rounds, "started": time.strftime("%FT%TZ")}
    results["pin"] = args.pin
    results["seconds"] = args.seconds
    results["server"] = args.server  # of the rate cells; capacity, cpu and tls use the sandbox
    OUT.mkdir(exist_ok=True)
    if "rate" in only:
        results["rate"] = []
        for rate in map(int, args.rates.split(",")):
            for latency in map(float, args.latencies.split(",")):
                cell = rate_cell(
                    rate, latency, args.rounds, args.ceiling, args.server, args.seconds
                )
                results["rate"].append(cell)
                print(json.dumps({k: v for k, v in cell.items() if k != "runs"}), flush=True)
                (OUT / "network.json").write_text(json.dumps(results, indent=1))
    if "capacity" in only:
        results["capacity"] = capacity_runs(8000)
        (OUT / "network.json").write_text(json.dumps(results, indent=1))
    if "cpu" in only:
        results["cpu"] = cpu_runs(30000, args.rounds)
        (OUT / "network.json").write_text(json.dumps(results, indent=1))
    if "tls" in only:
        results["tls"] = tls_runs(10000, args.rounds, set(args.tls_senders.split(",")))
        (OUT / "network.json").write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
