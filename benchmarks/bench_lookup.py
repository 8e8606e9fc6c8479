"""A lookup of N customers: the table's load time, the join's cost per row, and memory.

    .venv/bin/python benchmarks/bench_lookup.py --customers 1000000 --rows 2000000

Writes `customers.csv` (customer id -> wallet) to a temporary folder, loads it through a
mapping as `backfill` does, then joins chunks of 16,384 order rows (random customers) the way
`EventMapper` does: one vectorised call per chunk. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

from backfill.mapping.spec import load_mapping
from backfill.read.source import DEFAULT_CHUNK_ROWS


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def write_customers(folder: Path, count: int) -> Path:
    ids = pa.array([f"CUST-{n:08d}" for n in range(count)])
    wallets = pa.array([f"{n:044d}".replace("0", "A") for n in range(count)])  # 44 chars
    path = folder / "customers.csv"
    pacsv.write_csv(pa.table({"customer_id": ids, "wallet": wallets}), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        write_customers(folder, args.customers)
        spec = {"column": "customer", "lookup": "customers.csv", "key": "customer_id",
                "value": "wallet"}  # fmt: skip
        mapping_path = folder / "map.yaml"
        mapping_path.write_text(
            yaml.safe_dump(
                {
                    "event_name": "E",
                    "timestamp": "t",
                    "user": {"pubKey": spec},
                    "event_data": {"x": "t"},
                }
            )
        )
        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        mapping = load_mapping(mapping_path)
        load_seconds = time.perf_counter() - started
        lookup = mapping.pubkey_lookup
        assert lookup is not None
        after_load = rss_mb()
        rng = np.random.default_rng(1)
        joined = unknown_total = 0
        join_seconds = 0.0
        for start in range(0, args.rows, DEFAULT_CHUNK_ROWS):
            size = min(DEFAULT_CHUNK_ROWS, args.rows - start)
            picks = rng.integers(0, int(args.customers * 1.01), size)  # ~1% unknown
            keys = pa.array([f"CUST-{n:08d}" for n in picks.tolist()])
            began = time.perf_counter()
            values, unknown = lookup.translate(keys)
            join_seconds += time.perf_counter() - began
            joined += len(values)
            unknown_total += int(unknown.sum())
        print(
            json.dumps(
                {
                    "customers": args.customers,
                    "rows_joined": joined,
                    "unknown": unknown_total,
                    "load_seconds": round(load_seconds, 2),
                    "join_seconds": round(join_seconds, 2),
                    "join_us_per_row": round(join_seconds / joined * 1e6, 3),
                    "rows_per_second": round(joined / join_seconds),
                    "rss_mb_before_load": round(before),
                    "rss_mb_after_load": round(after_load),
                    "index_mb": round(after_load - before),
                    "peak_rss_mb": round(peak_mb()),
                }
            )
        )


if __name__ == "__main__":
    main()
