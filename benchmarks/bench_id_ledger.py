"""The ledger of delivered ids at 10 million ids: rate of checking and recording, memory.

    .venv/bin/python benchmarks/bench_id_ledger.py --ids 10000000 --ledger /tmp/ledger.sqlite3

As a run uses it: chunks of 16,384 ids (`ORD-` + 10 digits) are checked against the ledger
and claimed for the run (`check`: delivered before? met before in this run?) and, once
"accepted", recorded (`record_many`, then a commit, as the 0.5 s timer does). `--order
sequential` is an export in order-id order (ids grow with time, as most shops' do);
`--order shuffled` the worst case, every id at a random place in the index. A second pass
checks the same ids again, all of them now delivered (the second, overlapping export).
Prints one JSON line per million ids (rate so far, RSS now, peak RSS) and a summary.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import psutil

from backfill.id_ledger import IdLedger, LedgerScope
from backfill.source import DEFAULT_CHUNK_ROWS


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def chunks(count: int, seed: int, shuffled: bool) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(count) if shuffled else np.arange(count)
    return [order[i : i + DEFAULT_CHUNK_ROWS] for i in range(0, count, DEFAULT_CHUNK_ROWS)]


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
    shuffled = args.order == "shuffled"
    done, next_report, started = 0, 1_000_000, time.perf_counter()
    for part in chunks(args.ids, 1, shuffled):
        ids = [f"ORD-{n:010d}" for n in part.tolist()]
        t0 = time.perf_counter()
        checked = ledger.check(ids, ["f.csv"] * len(ids))
        t1 = time.perf_counter()
        ledger.record_many(ids)
        ledger.commit()
        t2 = time.perf_counter()
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
                "seconds": {k: round(v, 1) for k, v in timings.items()},
                "second_pass_check_ids_per_second": round(args.ids / again),
                "ledger_mb": round(size / 2**20),
                "peak_rss_mb": round(peak_mb()),
            }
        )
    )


if __name__ == "__main__":
    main()
