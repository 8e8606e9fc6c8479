"""Two parts of mapping alone, on one core: the filter and epoch timestamps.

    .venv/bin/python benchmarks/micro_mapping.py [--rows 1m]

The filter runs on the generated orders (`make_orders.py`, generated on first use); the
timestamps on synthetic columns: float64 epoch ms with 5% gaps (what pandas writes for an
integer column with a gap), float64 seconds with a fraction, the same seconds as text, and
int64 ms for comparison. Best of 3 of each, in ms. To compare with another checkout, run it
with PYTHONPATH pointing at that checkout.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from backfill.mapping.row_filter import RowFilter
from backfill.mapping.times import TimestampRule, to_epoch_ms

HERE = Path(__file__).resolve().parent
FILTERS = [
    "status == 'paid'",
    "status in ['paid', 'shipped'] and `Country/Region` != 'FR'",
    "number(total) >= 10 and not isna(coupon)",
]
NOW_MS = 1_900_000_000_000


def best_ms(work: Callable[[], object], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def orders(label: str) -> pa.Table:
    path = HERE / "data" / f"orders_{label}.parquet"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, str(HERE / "make_orders.py"), "--rows", label, "--out", str(path)],
            check=True,
        )
    return pq.read_table(path)


def epoch_columns(rows: int) -> dict[str, pa.Array]:
    rng = np.random.default_rng(1)
    ms = rng.integers(1_600_000_000_000, 1_731_596_206_795, rows)
    gaps = rng.random(rows) < 0.05
    return {
        "float64 ms, 5% gaps": pa.array(np.where(gaps, np.nan, ms.astype(float)), from_pandas=True),
        "float64 seconds.mmm": pa.array(ms / 1000.0),
        "text seconds.mmm": pa.array([f"{m // 1000}.{m % 1000:03d}" for m in ms.tolist()]),
        "text ms digits": pa.array([str(m) for m in ms.tolist()]),
        "int64 ms": pa.array(ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1m", help="e.g. 100k, 1m")
    args = parser.parse_args()
    rows = int(float(args.rows.lower().replace("k", "e3").replace("m", "e6")))
    table = orders(args.rows)
    numbers = np.arange(table.num_rows)
    print(f"{rows:,} rows; best of 3, ms")
    for expression in FILTERS:
        keep = functools.partial(RowFilter(expression, "map.yaml", "orders").keep, table, numbers)
        print(f"filter {expression!r}: {best_ms(keep):.1f}")
    for name, column in epoch_columns(rows).items():
        convert = functools.partial(to_epoch_ms, column, TimestampRule(), NOW_MS)
        print(f"timestamp {name} (auto): {best_ms(lambda c=convert: c().materialize()):.1f}")


if __name__ == "__main__":
    main()
