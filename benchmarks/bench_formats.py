"""The source formats of issue 16, measured: cp1252 CSV against UTF-8, .xlsx, JSON Lines.

    .venv/bin/python benchmarks/bench_formats.py                 # 1M CSV/JSONL, 200k xlsx
    .venv/bin/python benchmarks/bench_formats.py --quick         # 100k / 20k: a smoke test
    .venv/bin/python benchmarks/bench_formats.py --rounds 3

Each figure is `backfill validate` (map every row, send nothing) on one core (taskset),
under GNU time: rows per second of wall time and peak RSS. The files are made from
`make_orders.py`'s orders, the same rows in every format: the cp1252 CSV is the UTF-8 one
transcoded; the .xlsx has `created_at` as date cells; the JSON Lines nest the wallet and the
tier under `customer`. Memory is flat when the peak does not grow with the row count, so
each format is also measured at a tenth of its size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_orders  # noqa: E402
from measure import bench_env, pinned, run_measured  # noqa: E402

DATA = HERE / "data"
MAP = HERE / "map.yaml"
CPU = 1


def orders(rows: int, fmt: str) -> Path:
    path = DATA / f"orders_{rows}.{fmt}"
    if not path.exists():
        DATA.mkdir(exist_ok=True)
        make_orders.write_orders(path, rows, fmt)
    return path


def cp1252_csv(rows: int) -> Path:
    path = DATA / f"orders_{rows}_cp1252.csv"
    if not path.exists():
        source = orders(rows, "csv")
        with (
            source.open(encoding="utf-8", newline="") as src,
            path.open("w", encoding="cp1252", newline="") as out,
        ):
            while block := src.read(1 << 20):
                out.write(block)
    return path


def records(rows: int) -> Iterator[dict[str, Any]]:
    """The orders as dicts, a batch at a time."""
    for batch in pq.ParquetFile(orders(rows, "parquet")).iter_batches(50_000):
        yield from batch.to_pylist()


def xlsx(rows: int) -> Path:
    import openpyxl

    path = DATA / f"orders_{rows}.xlsx"
    if path.exists():
        return path
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Orders")
    sheet.append(make_orders.SCHEMA.names)
    for record in records(rows):
        when = dt.datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
        record["created_at"] = when.replace(tzinfo=None)
        sheet.append(list(record.values()))
    workbook.save(path)
    return path


def jsonl(rows: int) -> Path:
    path = DATA / f"orders_{rows}.jsonl"
    if path.exists():
        return path
    with path.open("w", encoding="utf-8") as out:
        for record in records(rows):
            record["customer"] = {"wallet": record.pop("wallet"), "tier": record.pop("tier")}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def nested_map() -> Path:
    text = MAP.read_text(encoding="utf-8")
    text = text.replace("pubKey: wallet", 'pubKey: "`customer.wallet`"')
    text = text.replace("{column: tier,", '{column: "`customer.tier`",')
    path = DATA / "map_nested.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def validate(path: Path, mapping: Path, *extra: str) -> dict[str, float]:
    argv = ["backfill", "validate", str(path), "-m", str(mapping), "--json", *extra]
    measured = run_measured(pinned(argv, CPU), env=bench_env())
    result = measured.json_output()
    if measured.returncode not in (0, 1) or not isinstance(result.get("read"), int):
        raise SystemExit(f"{' '.join(argv)} failed: {measured.stderr_tail}")
    return {
        "rows": result["read"],
        "failing": result["failing"],
        "rows_per_second": result["read"] / measured.wall_seconds,
        "wall_seconds": measured.wall_seconds,
        "peak_rss_mb": measured.max_rss_kb / 1024,
    }


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median rate, and the largest peak: the machine is shared, rounds vary."""
    return {
        **runs[0],
        "rows_per_second": statistics.median(r["rows_per_second"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "rounds": len(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    big, sheet = (100_000, 20_000) if args.quick else (1_000_000, 200_000)
    cases = {
        "csv utf-8": (orders(big, "csv"), MAP, ()),
        "csv cp1252": (cp1252_csv(big), MAP, ("--encoding", "cp1252")),
        "jsonl": (jsonl(big), nested_map(), ()),
        "jsonl (a tenth)": (jsonl(big // 10), nested_map(), ()),
        "xlsx": (xlsx(sheet), MAP, ()),
        "xlsx (a tenth)": (xlsx(sheet // 10), MAP, ()),
    }
    results = {}
    for _ in range(args.rounds):  # rounds alternate the cases, so load drifts hit them all
        for name, (path, mapping, extra) in cases.items():
            results.setdefault(name, []).append(validate(path, mapping, *extra))
            print(f"  {name}: {results[name][-1]}", file=sys.stderr, flush=True)
    print("| source | rows | rows/s (median) | wall s | peak RSS MB (max) | rounds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, runs in results.items():
        row = best(runs)
        print(
            f"| {name} | {row['rows']:,} | {row['rows_per_second']:,.0f} | "
            f"{row['wall_seconds']:.1f} | {row['peak_rss_mb']:.0f} | {row['rounds']} |"
        )
    utf8, cp = best(results["csv utf-8"]), best(results["csv cp1252"])
    print(f"\ncp1252 / UTF-8 rate: {cp['rows_per_second'] / utf8['rows_per_second']:.2f}")


if __name__ == "__main__":
    main()
