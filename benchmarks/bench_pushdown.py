"""The filter pushed down to Parquet row groups, and only the mapped columns read: the saving.

    .venv/bin/python benchmarks/bench_pushdown.py --rows 2m --rounds 3

Makes `make_orders.py`'s orders (cached in benchmarks/data/), then a copy sorted by `status`
in row groups of 65,536 rows (an export ordered by status, as warehouses often cluster
them). Maps every row as `validate` does (`mapped_chunks_of` + `EventMapper`, one thread)
with `benchmarks/map.yaml`'s mapping and a filter, in three ways, alternately each round:

- `every column`: all columns of every row group read (as before this change);
- `mapped columns`: only the columns the mapping uses, every row group read;
- `pushdown`: only those columns, and row groups whose statistics rule the filter out unread.

`--wide N` instead measures the columns alone: the orders with N more text columns the
mapping does not use, as Parquet and as CSV, every column against the mapped ones.

Prints one JSON line per (filter, way): CPU seconds (best of the rounds), rows/s, how many
rows were not read; and checks that the three ways count the same rows read, filtered and
mappable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from backfill.mapping.events import EventMapper
from backfill.mapping.mapped_read import mapped_chunks_of
from backfill.mapping.spec import load_mapping, mapping_from_dict
from backfill.read.source import read_source

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_orders  # noqa: E402
from bench_s3_source import parse_rows  # noqa: E402

FILTERS = ("status == 'paid'", "status in ['refunded', 'cancelled']")
GROUP_ROWS = 65_536
WAYS = ("every column", "mapped columns", "pushdown")


def sorted_orders(rows: int) -> Path:
    path = HERE / "data" / f"orders_{rows}_by_status.parquet"
    if path.exists():
        return path
    plain = HERE / "data" / f"orders_{rows}.parquet"
    if not plain.exists():
        make_orders.write_orders(plain, rows, "parquet")
    table = pq.read_table(plain)
    table = table.take(pc.sort_indices(table, [("status", "ascending")]))
    pq.write_table(table, path, row_group_size=GROUP_ROWS)
    return path


def wide_orders(rows: int, extra: int, fmt: str) -> Path:
    """The orders with `extra` more text columns the mapping does not use (copies of the
    product name), as a wide warehouse export has them."""
    path = HERE / "data" / f"orders_{rows}_wide{extra}.{fmt}"
    if path.exists():
        return path
    plain = HERE / "data" / f"orders_{rows}.parquet"
    if not plain.exists():
        make_orders.write_orders(plain, rows, "parquet")
    table = pq.read_table(plain)
    for number in range(extra):
        table = table.append_column(f"extra_{number}", table.column("Product Name"))
    if fmt == "parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return path


def measure(path: Path, expression: str, way: str) -> dict[str, object]:
    raw = load_mapping(HERE / "map.yaml").raw
    mapping = mapping_from_dict({**raw, "filter": expression})
    source = read_source(path)
    mapper = EventMapper(mapping, source.name)
    if way == "every column":
        chunks = source.chunks()
    else:
        chunks = mapped_chunks_of(source, mapping, pushdown=way == "pushdown")
    read = filtered = mappable = skipped = 0
    started = time.process_time()
    for chunk in chunks:
        skipped += len(chunk.skipped)
        mapped = mapper.map_chunk(chunk)
        read, filtered = read + mapped.read, filtered + mapped.filtered
        mappable += len(mapped.event_rows)
    cpu = time.process_time() - started
    return {"cpu": cpu, "counts": (read, filtered, mappable), "not_read": skipped}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=parse_rows, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wide", type=int, default=0, help="extra columns: measure reading")
    args = parser.parse_args()
    if args.wide:
        for fmt in ("parquet", "csv"):
            path = wide_orders(args.rows, args.wide, fmt)
            report(path, "status == 'paid'", ("every column", "mapped columns"), args)
        return
    for expression in FILTERS:
        report(sorted_orders(args.rows), expression, WAYS, args)


def report(path: Path, expression: str, ways: tuple[str, ...], args: argparse.Namespace) -> None:
    best: dict[str, dict[str, object]] = {}
    for _ in range(args.rounds):
        for way in ways:
            result = measure(path, expression, way)
            if way not in best or result["cpu"] < best[way]["cpu"]:  # type: ignore[operator]
                best[way] = result
    counts = {way: best[way]["counts"] for way in ways}
    assert len(set(counts.values())) == 1, counts
    for way in ways:
        cpu = float(best[way]["cpu"])  # type: ignore[arg-type]
        print(json.dumps({
            "file": path.name, "filter": expression, "way": way, "rows": args.rows,
            "cpu_seconds": round(cpu, 2), "rows_per_cpu_second": round(args.rows / cpu),
            "rows_not_read": best[way]["not_read"],
            "read_filtered_mappable": counts[way],
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
