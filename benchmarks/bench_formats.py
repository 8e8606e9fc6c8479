"""The source formats measured against CSV of the same rows: .xlsx and JSON Lines (issue 26).

    .venv/bin/python benchmarks/bench_formats.py                  # 200k and 1M rows, init
    .venv/bin/python benchmarks/bench_formats.py --quick          # 20k: a smoke test
    .venv/bin/python benchmarks/bench_formats.py --sizes 1m,5m --only jsonl,jsonl-nested
    .venv/bin/python benchmarks/bench_formats.py --rounds 3

Each figure is `backfill validate` (map every row, send nothing) or `backfill init` on one
core (taskset), under GNU time: rows per second of wall time, CPU seconds, peak RSS. The
files are made from `make_orders.py`'s orders, the same rows in every format, with 20
columns: the orders' 11 and 9 more (a second date, numbers, booleans, text, an empty-ish
note). The .xlsx has both dates as date cells and is written by xlsxwriter in
constant_memory mode (`pip install xlsxwriter`: a benchmark tool only, not a dependency;
its strings are inline, not in a shared table); `1m` means Excel's maximum for a workbook,
1,048,575 rows under the header. JSON Lines come flat, and nested (wallet and tier under
`customer`). Files are written once into benchmarks/data/ and reused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_orders  # noqa: E402
from measure import bench_env, pinned, run_measured  # noqa: E402

DATA = HERE / "data"
MAP = HERE / "map.yaml"
CPU = 1
EXCEL_MAX_ROWS = 1_048_575  # under the header
EXTRA = ["shipped_at", "discount", "weight_kg", "line", "warehouse", "carrier", "gift", "notes",
         "zip"]  # fmt: skip
FORMATS = ("csv", "jsonl", "jsonl-nested", "xlsx")


def orders(rows: int) -> Path:
    path = DATA / f"orders_{rows}.parquet"
    if not path.exists():
        DATA.mkdir(exist_ok=True)
        make_orders.write_orders(path, rows, "parquet")
    return path


def records(rows: int) -> Iterator[dict[str, Any]]:
    """The orders with the 9 more columns, as dicts, a batch at a time."""
    number = 0
    for batch in pq.ParquetFile(orders(rows)).iter_batches(50_000):
        for record in batch.to_pylist():
            number += 1
            when = dt.datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
            shipped = when + dt.timedelta(days=2)
            record.update(
                shipped_at=shipped.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                discount=(number % 7) * 0.5, weight_kg=number % 13 + 0.25, line=number % 5,
                warehouse=f"WH-{number % 9}", carrier="DHL", gift=number % 2 == 0,
                notes=None if number % 3 else "fragile", zip=f"{number % 99_999:05d}",
            )  # fmt: skip
            yield record


def source(fmt: str, rows: int) -> Path:
    rows = EXCEL_MAX_ROWS if fmt == "xlsx" and rows >= 1_000_000 else rows
    suffix = {"jsonl-nested": "nested.jsonl"}.get(fmt, fmt)
    path = DATA / f"wide_{rows}.{suffix}"
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        {"csv": write_csv, "jsonl": write_jsonl, "jsonl-nested": write_nested, "xlsx": write_xlsx}[
            fmt
        ](partial, rows)
        partial.rename(path)
    return path


def write_csv(path: Path, rows: int) -> None:
    schema = pa.schema([(column, pa.string()) for column in _columns()])
    with pacsv.CSVWriter(str(path), schema) as out:
        batch: list[dict[str, Any]] = []
        for record in records(rows):
            batch.append({k: _csv_text(v) for k, v in record.items()})
            if len(batch) == 50_000:
                out.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            out.write_table(pa.Table.from_pylist(batch, schema=schema))


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _columns() -> list[str]:
    return [*make_orders.SCHEMA.names, *EXTRA]


def write_jsonl(path: Path, rows: int, nested: bool = False) -> None:
    with path.open("w", encoding="utf-8") as out:
        for record in records(rows):
            if nested:
                record["customer"] = {"wallet": record.pop("wallet"), "tier": record.pop("tier")}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_nested(path: Path, rows: int) -> None:
    write_jsonl(path, rows, nested=True)


def write_xlsx(path: Path, rows: int) -> None:
    import xlsxwriter  # a benchmark tool only: pip install xlsxwriter

    options = {"constant_memory": True, "default_date_format": "yyyy-mm-dd hh:mm:ss.000"}
    workbook = xlsxwriter.Workbook(str(path), options)
    sheet = workbook.add_worksheet("Orders")
    sheet.write_row(0, 0, _columns())
    for number, record in enumerate(records(rows), start=1):
        for column in ("created_at", "shipped_at"):
            moment = dt.datetime.fromisoformat(record[column].replace("Z", "+00:00"))
            record[column] = moment.replace(tzinfo=None)
        sheet.write_row(number, 0, list(record.values()))
    workbook.close()


def nested_map() -> Path:
    text = MAP.read_text(encoding="utf-8")
    text = text.replace("pubKey: wallet", 'pubKey: "`customer.wallet`"')
    text = text.replace("{column: tier,", '{column: "`customer.tier`",')
    path = DATA / "map_nested.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def measure(command: str, path: Path, mapping: Path) -> dict[str, float]:
    if command == "validate":
        argv = ["backfill", "validate", str(path), "-m", str(mapping), "--json"]
    else:
        argv = ["backfill", "init", str(path), "-o", str(DATA / "draft.yaml"), "--force"]
    measured = run_measured(pinned(argv, CPU), env=bench_env())
    if measured.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed: {measured.stderr_tail}")
    rows = measured.json_output()["read"] if command == "validate" else 0
    return {
        "rows": float(rows),  # type: ignore[arg-type]
        "rows_per_second": float(rows) / measured.wall_seconds,  # type: ignore[arg-type]
        "wall_seconds": measured.wall_seconds,
        "cpu_seconds": measured.cpu_seconds,
        "peak_rss_mb": measured.max_rss_kb / 1024,
    }


def rows_of(text: str) -> int:
    text = text.lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sizes", default="200k,1m")
    parser.add_argument("--only", default=",".join(FORMATS))
    parser.add_argument("--no-init", action="store_true")
    args = parser.parse_args()
    sizes = [20_000] if args.quick else [rows_of(s) for s in args.sizes.split(",")]
    formats = args.only.split(",")
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine load at start: {load}", file=sys.stderr)
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    for _ in range(args.rounds):  # rounds alternate the cases, so load drifts hit them all
        for size in sizes:
            for fmt in formats:
                path = source(fmt, size)
                mapping = nested_map() if fmt == "jsonl-nested" else MAP
                commands = ["validate"] if args.no_init else ["validate", "init"]
                for command in commands:
                    result = measure(command, path, mapping)
                    results.setdefault((command, fmt, size), []).append(result)
                    print(f"  {command} {fmt} {size:,}: {result}", file=sys.stderr, flush=True)
    print_table(results)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"\nmachine load at the end: {load}")


def print_table(results: dict[tuple[str, str, int], list[dict[str, float]]]) -> None:
    print("| command | source | rows | rows/s (median) | wall s | CPU s | peak RSS MB (max) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (command, fmt, size), runs in results.items():
        rate = statistics.median(r["rows_per_second"] for r in runs)
        wall = statistics.median(r["wall_seconds"] for r in runs)
        cpu = statistics.median(r["cpu_seconds"] for r in runs)
        peak = max(r["peak_rss_mb"] for r in runs)
        rows = int(runs[0]["rows"]) or (EXCEL_MAX_ROWS if fmt == "xlsx" and size >= 10**6 else size)
        shown_rate = f"{rate:,.0f}" if command == "validate" else "-"
        print(
            f"| {command} | {fmt} | {rows:,} | {shown_rate} | {wall:.1f} | {cpu:.1f} | {peak:.0f} |"
        )


if __name__ == "__main__":
    main()
