"""The README's quick start, timed: `backfill run sample_data/orders.parquet --mapping
sample_data/map.yaml --sandbox`, from the command to its summary, as a new user runs it.

    .venv/bin/python benchmarks/quick_start.py [--times 3]

Each run is in a fresh temporary folder (a rehearsal starts fresh anyway). Prints, per run,
the wall time of the whole command (interpreter start, imports, reading, the sandbox, the
sending) and the run's own `elapsed_seconds`, then the best and the median; and the load
average, since a loaded machine moves both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable, "-m", "backfill", "run", str(ROOT / "sample_data/orders.parquet"),
            "--mapping", str(ROOT / "sample_data/map.yaml"), "--sandbox", "--json", "--quiet",
        ]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
    summary = json.loads(done.stdout)
    return wall, float(summary["elapsed_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=3)
    args = parser.parse_args()
    walls, sends = [], []
    for number in range(args.times):
        wall, send = one_run()
        walls.append(wall)
        sends.append(send)
        print(f"run {number + 1}: {wall:.2f} s wall, {send:.2f} s sending")
    print(f"best {min(walls):.2f} s wall, median {statistics.median(walls):.2f} s wall")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
