"""The ledger of delivered ids at 10 million ids: rate of checking and recording, memory.

    .venv/bin/python benchmarks/bench_id_ledger.py --ids 10000000 --ledger /tmp/ledger.sqlite3

As a run uses it: chunks of 16,384 ids (`ORD-` + 10 digits) are checked against the ledger
and claimed for the run (`check`: delivered before? met before in this run?) and, once
"accepted", recorded (`record_many`, then a commit, as the 0.5 s timer does). `--order
sequential` is an export in order-id order (ids grow with time, as most shops' do);
`--order shuffled` ids in no order (UUIDs). The ledger keeps digests, so both orders land at
random places in its segments and should cost the same; both are kept to show it. A second pass
checks the same ids again, all of them now delivered (the second, overlapping export).
Prints one JSON line per million ids (rate so far, RSS now, peak RSS) and a summary.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil

from backfill.books.id_ledger import IdLedger, LedgerScope
from backfill.read.source import DEFAULT_CHUNK_ROWS


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def chunks(count: int, seed: int, shuffled: bool) -> Iterator[np.ndarray]:
    """Order numbers 0..count-1, a chunk at a time; shuffled, by an affine permutation
    (n -> n * step + offset mod count, step coprime with count) that holds no array of
    `count` numbers, so the peak RSS is the ledger's, not the benchmark's."""
    rng = np.random.default_rng(seed)
    step = int(rng.integers(count // 3, count)) | 1
    while math.gcd(step, count) != 1:
        step += 2
    offset = int(rng.integers(0, count))
    for start in range(0, count, DEFAULT_CHUNK_ROWS):
        numbers = np.arange(start, min(start + DEFAULT_CHUNK_ROWS, count), dtype=np.int64)
        yield (numbers * step + offset) % count if shuffled else numbers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--ledger", type=Path, default=Path("/tmp/bench-ledger.sqlite3"))
    parser.add_argument("--order", choices=["sequential", "shuffled"], default="sequential")
    args = parser.parse_args()
    for suffix in ("", "-wal", "-shm"):
        Path(str(args.ledger) + suffix).unlink(missing_ok=True)
    ledger = IdLedger(args.ledger, LedgerScope.of("https://api.torque.so/events", "v1", "E"))
    timings = {"check": 0.0, "record": 0.0}
    cpu = 0.0  # process CPU seconds of checking and recording: the rate less the machine's load
    shuffled = args.order == "shuffled"
    done, next_report, started = 0, 1_000_000, time.perf_counter()
    for part in chunks(args.ids, 1, shuffled):
        ids = [f"ORD-{n:010d}" for n in part.tolist()]
        t0, c0 = time.perf_counter(), time.process_time()
        checked = ledger.check(ids, ["f.csv"] * len(ids))
        t1 = time.perf_counter()
        ledger.record_many(ids)
        ledger.commit()
        t2 = time.perf_counter()
        cpu += time.process_time() - c0
        assert not checked.already_sent.any() and not checked.duplicates
        timings["check"] += t1 - t0
        timings["record"] += t2 - t1
        done += len(ids)
        if done >= next_report:
            elapsed = sum(timings.values())
            print(json.dumps({"ids": done, "ids_per_second": round(done / elapsed),
                              "rss_mb": round(rss_mb()), "peak_mb": round(peak_mb())}),
                  flush=True)  # fmt: skip
            next_report += 1_000_000
    ledger.commit()
    first_pass = time.perf_counter() - started
    again = 0.0
    for part in chunks(args.ids, 2, shuffled):
        ids = [f"ORD-{n:010d}" for n in part.tolist()]
        t0 = time.perf_counter()
        assert ledger.delivered(ids).all()
        again += time.perf_counter() - t0
    ledger.close()
    size = args.ledger.stat().st_size
    print(
        json.dumps(
            {
                "ids": args.ids,
                "first_pass_seconds": round(first_pass, 1),
                "order": args.order,
                "check_and_record_ids_per_second": round(args.ids / sum(timings.values())),
                "check_and_record_ids_per_cpu_second": round(args.ids / cpu),
                "seconds": {k: round(v, 1) for k, v in timings.items()},
                "second_pass_check_ids_per_second": round(args.ids / again),
                "ledger_mb": round(size / 2**20),
                "peak_rss_mb": round(peak_mb()),
            }
        )
    )


if __name__ == "__main__":
    main()
