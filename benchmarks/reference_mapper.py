"""The reference for mapping throughput: a plain vectorised pass over an orders file.

    python benchmarks/reference_mapper.py benchmarks/data/orders_1m.parquet

It does by hand, with pyarrow compute, what `benchmarks/map.yaml` asks of each row: the
`status == 'paid'` filter, the ISO-8601 timestamp to epoch milliseconds, the total and
quantity to numbers, the tier to a boolean from its true/false lists, and the wallet checked
as a 32-byte base58 key (with backfill's own check, once per distinct wallet in a batch).
It reads in batches as backfill must, and builds no events.

The machine is noisy and shared, so `backfill validate`'s rows/s means little on its own;
the harness runs this alternately with it, both pinned to the same core, and reports the
tool's rate as a ratio to this one. A ratio of 0.5 reads: backfill validates at half the
speed of a straightforward vectorised pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from backfill.mapping.pubkey import pubkey_problem

BATCH_ROWS = 65_536
TRUE_TIERS = pa.array(["premium", "gold"])
FALSE_TIERS = pa.array(["basic"])


def batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The file in batches; CSV columns as text, as backfill reads them."""
    if path.suffix == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
        return
    header = pacsv.open_csv(path).schema.names
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header}, strings_can_be_null=False
    )
    read = pacsv.ReadOptions(block_size=1 << 24)
    yield from pacsv.open_csv(path, read_options=read, convert_options=convert)


def map_batch(batch: pa.RecordBatch) -> tuple[int, int, int]:
    """Rows (mapped, filtered out, failed) in one batch."""
    paid = pc.equal(batch.column("status"), "paid")
    table = pa.Table.from_batches([batch]).filter(paid)
    filtered = batch.num_rows - table.num_rows

    ok = pc.is_valid(pc.cast(table["created_at"], pa.timestamp("ms", tz="UTC"), safe=False))
    ok = pc.and_(ok, pc.is_valid(pc.cast(table["total"], pa.float64())))
    ok = pc.and_(ok, pc.is_valid(pc.cast(table["quantity"], pa.float64())))
    tier = table["tier"]
    ok = pc.and_(ok, pc.or_(pc.is_in(tier, TRUE_TIERS), pc.is_in(tier, FALSE_TIERS)))
    wallets = table["wallet"]
    distinct = pc.unique(wallets)
    keys = [text for text in distinct.to_pylist() if pubkey_problem(text) is None]
    good = pa.array(keys, pa.string())
    ok = pc.and_(ok, pc.is_in(wallets, good))
    mapped = pc.sum(pc.cast(ok, pa.int64())).as_py() or 0
    return mapped, filtered, table.num_rows - mapped


def map_file(path: Path) -> dict[str, float | int]:
    started = time.perf_counter()
    rows = mapped = filtered = failed = 0
    for batch in batches(path):
        rows += batch.num_rows
        counts = map_batch(batch)
        mapped, filtered, failed = (a + b for a, b in zip((mapped, filtered, failed), counts))
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "mapped": mapped,
        "filtered": filtered,
        "failed": failed,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    print(json.dumps(map_file(args.file)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
