"""The journal's cost per event alone: the `a` mark (accepted) with and without the `w`
mark (on the wire) that journal v2 writes before each request, and the fsync timer's
share. Run by hand: `.venv/bin/python benchmarks/micro_journal.py --events 200000`.

Each variant writes into a fresh journal in a temporary directory on the same disk as the
runs would; the figure is CPU seconds (process time) per event, median of the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from backfill.books.journal import JournalKey, JournalWriter

KEY = JournalKey("/bench/orders.parquet", "bench", "torque-v1", "http://127.0.0.1/events")


def one_round(directory: Path, events: int, wire: bool) -> float:
    writer = JournalWriter(directory / f"j-{wire}-{time.monotonic_ns()}.state", KEY, append=False)
    file_id = writer.declare("orders.parquet")
    started = time.process_time()
    for row in range(events):
        if wire:
            writer.on_wire(file_id, row)
        writer.accepted(file_id, row)
    elapsed = time.process_time() - started
    writer.close()
    return elapsed / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(dir=".") as directory:
        for _ in range(args.rounds):
            for wire in (False, True):  # alternate, so drifting load hits both alike
                results[wire].append(one_round(Path(directory), args.events, wire))
    accepted_only = statistics.median(results[False]) * 1e6
    with_wire = statistics.median(results[True]) * 1e6
    print(f"events per round: {args.events:,}; rounds: {args.rounds}")
    print(f"accepted mark only (v1 cost):  {accepted_only:.2f} µs CPU per event")
    print(f"on-the-wire + accepted (v2):   {with_wire:.2f} µs CPU per event")
    print(f"extra per event:               {with_wire - accepted_only:.2f} µs")


if __name__ == "__main__":
    main()
