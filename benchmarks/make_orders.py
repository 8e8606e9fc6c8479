"""Deterministic order files of any size, for the benchmarks.

    python benchmarks/make_orders.py --rows 1000000 --format parquet \
        --out benchmarks/data/orders_1m.parquet

The columns are those of our sample orders (`order_id`, `created_at`, `wallet`, `sku`,
`Product Name`, `quantity`, `total`, `tier`, `status`, `Country/Region`, `coupon`), with the
awkward parts kept on purpose: SKUs with leading zeros, totals as text, a column name with a
slash and one with a space, non-ASCII country names, product names with commas.

Why it is built this way:
- Rows are generated and written in slices of `SLICE_ROWS` (one Parquet row group each), so
  memory stays flat whatever `--rows` is; 10M rows take seconds, not minutes.
- Every slice draws from its own random stream seeded by (seed, slice index), so a smaller
  file is an exact prefix of a larger one made with the same seed: figures for 100k and 1M
  rows describe the same orders.
- Wallets come from a pool of 50,000 valid 32-byte keys encoded with backfill's own base58,
  so every row is mappable and the pubkey check costs what it costs on real data, where a
  customer orders more than once.
- Files are written to a temporary name and renamed, so an interrupted run never leaves a
  truncated file that the harness would mistake for a finished one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from backfill.mapping.pubkey import b58encode, pubkey_problem

SLICE_ROWS = 100_000
WALLET_POOL = 50_000
SKU_COUNT = 2_000
DEFAULT_SEED = 20_240_101
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MEAN_GAP_MS = 3_000  # one order every ~3 s: 10M rows span about a year
POOL_STREAM = 1 << 40  # a slice index no file will ever reach

SCHEMA = pa.schema(
    [
        ("order_id", pa.string()),
        ("created_at", pa.string()),
        ("wallet", pa.string()),
        ("sku", pa.string()),
        ("Product Name", pa.string()),
        ("quantity", pa.int64()),
        ("total", pa.string()),
        ("tier", pa.string()),
        ("status", pa.string()),
        ("Country/Region", pa.string()),
        ("coupon", pa.string()),
    ]
)

TIERS = (("premium", 0.10), ("gold", 0.20), ("basic", 0.70))
STATUSES = (("paid", 0.95), ("refunded", 0.03), ("cancelled", 0.02))
QUANTITIES = ((1, 0.60), (2, 0.20), (3, 0.10), (4, 0.06), (5, 0.04))
COUPONS = (
    ("", 0.90),
    ("SPRING10", 0.04),
    ("WELCOME5", 0.03),
    ("VIP20", 0.02),
    ("BLACKFRIDAY", 0.01),
)
COUNTRIES = (
    ("United States", 0.30),
    ("Germany", 0.10),
    ("United Kingdom", 0.09),
    ("France", 0.08),
    ("Japan", 0.07),
    ("Brazil", 0.06),
    ("India", 0.06),
    ("Canada", 0.05),
    ("Australia", 0.04),
    ("Nigeria", 0.03),
    ("Côte d'Ivoire", 0.03),
    ("Türkiye", 0.03),
    ("South Korea", 0.03),
    ("México", 0.03),
)
ADJECTIVES = ("Classic", "Deluxe", "Vintage", "Limited", "Everyday", "Pro", "Mini", "Organic")
NOUNS = ("Hoodie", "Mug", "Cap", "Sticker Pack", "Tote Bag", "T-Shirt", "Poster", "Notebook")
VARIANTS = ("", ", XL", ", Black", ' "Genesis" Edition', ", 2-pack")


@dataclass(frozen=True)
class Pools:
    """Values drawn once per file and then sampled by index, row by row."""

    wallets: pa.Array
    wallet_tiers: pa.Array
    skus: pa.Array
    product_names: pa.Array
    price_cents: np.ndarray


def _choice(
    rng: np.random.Generator, table: tuple[tuple[object, float], ...], size: int
) -> np.ndarray:
    """Indices into `table` drawn with its weights (weights need not sum exactly to 1)."""
    weights = np.array([weight for _, weight in table])
    return rng.choice(len(table), size=size, p=weights / weights.sum())


def _labels(table: tuple[tuple[object, float], ...]) -> pa.Array:
    return pa.array([str(label) for label, _ in table], pa.string())


def make_pools(seed: int) -> Pools:
    """The wallet pool and the product catalogue, the same for every slice of a file."""
    rng = np.random.default_rng([seed, POOL_STREAM])
    raw = rng.integers(0, 256, size=(WALLET_POOL, 32), dtype=np.uint8)
    wallets = [b58encode(row.tobytes()) for row in raw]
    if len(set(wallets)) != WALLET_POOL or any(map(pubkey_problem, wallets)):
        raise RuntimeError("wallet pool is not 50,000 distinct valid keys; change --seed")
    tiers = _labels(TIERS).take(pa.array(_choice(rng, TIERS, WALLET_POOL)))

    sku_numbers = np.sort(rng.choice(100_000, size=SKU_COUNT, replace=False))
    skus = [f"{number:05d}" for number in sku_numbers]
    names = [
        f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}{rng.choice(VARIANTS)}"
        for _ in range(SKU_COUNT)
    ]
    # Prices from about $3 to a few hundred, in whole cents.
    price_cents = np.round(np.exp(rng.normal(3.2, 0.9, SKU_COUNT)) * 100).astype(np.int64) + 299
    return Pools(
        wallets=pa.array(wallets, pa.string()),
        wallet_tiers=tiers,
        skus=pa.array(skus, pa.string()),
        product_names=pa.array(names, pa.string()),
        price_cents=price_cents,
    )


def _order_ids(start: int, stop: int) -> pa.Array:
    numbers = pc.cast(pa.array(np.arange(start + 1, stop + 1)), pa.string())
    return pc.binary_join_element_wise("ORD-", pc.utf8_lpad(numbers, 7, "0"), "")


def _timestamps(rng: np.random.Generator, start: int, stop: int) -> pa.Array:
    """Strictly increasing ISO-8601 times with milliseconds and `Z`, in file order."""
    rows = np.arange(start, stop, dtype=np.int64)
    ms = START_MS + rows * MEAN_GAP_MS + rng.integers(0, MEAN_GAP_MS, size=stop - start)
    stamps = pa.array(ms.astype("datetime64[ms]"))
    return pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%SZ")


def _money(cents: np.ndarray) -> pa.Array:
    """Cents as text with exactly two decimals (`12.50`), without going through floats."""
    units = pc.cast(pa.array(cents // 100), pa.string())
    fraction = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0")
    return pc.binary_join_element_wise(units, fraction, ".")


def _streams(seed: int, start: int, count: int) -> list[np.random.Generator]:
    """One random stream per column for the slice that begins at `start`.

    A stream per column (rather than one for the slice) keeps a short last slice an exact
    prefix of the full slice, hence a small file an exact prefix of a big one.
    """
    return [np.random.default_rng([seed, start // SLICE_ROWS, column]) for column in range(count)]


def build_slice(pools: Pools, seed: int, start: int, stop: int) -> pa.Table:
    """Rows `start` to `stop` (0-based) of the file: the same rows whatever the file size."""
    if start % SLICE_ROWS or stop - start > SLICE_ROWS:
        raise ValueError(f"a slice starts at a multiple of {SLICE_ROWS} and is at most that long")
    size = stop - start
    wallets, skus, quantities, times, statuses, countries, coupons = _streams(seed, start, 7)
    wallet_index = pa.array(wallets.integers(0, WALLET_POOL, size=size))
    sku_index = skus.integers(0, SKU_COUNT, size=size)
    quantity_values = np.array([value for value, _ in QUANTITIES], dtype=np.int64)
    quantity = quantity_values[_choice(quantities, QUANTITIES, size)]
    columns = {
        "order_id": _order_ids(start, stop),
        "created_at": _timestamps(times, start, stop),
        "wallet": pools.wallets.take(wallet_index),
        "sku": pools.skus.take(pa.array(sku_index)),
        "Product Name": pools.product_names.take(pa.array(sku_index)),
        "quantity": pa.array(quantity, pa.int64()),
        "total": _money(pools.price_cents[sku_index] * quantity),
        "tier": pools.wallet_tiers.take(wallet_index),
        "status": _labels(STATUSES).take(pa.array(_choice(statuses, STATUSES, size))),
        "Country/Region": _labels(COUNTRIES).take(pa.array(_choice(countries, COUNTRIES, size))),
        "coupon": _labels(COUPONS).take(pa.array(_choice(coupons, COUPONS, size))),
    }
    return pa.table(columns, schema=SCHEMA)


def format_of(path: Path) -> str:
    """The format a path's suffix implies, for when --format is not given."""
    if path.suffix == ".parquet":
        return "parquet"
    if path.suffix == ".csv":
        return "csv"
    raise SystemExit(f"cannot tell the format of {path}: pass --format parquet or --format csv")


def write_orders(out: Path, rows: int, fmt: str, seed: int = DEFAULT_SEED) -> Path:
    """Write `rows` orders to `out` slice by slice; returns `out` once it is complete."""
    if rows < 1:
        raise ValueError(f"--rows must be at least 1, got {rows}")
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"--format must be parquet or csv, got {fmt!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    pools = make_pools(seed)
    try:
        if fmt == "parquet":
            writer: pq.ParquetWriter | pacsv.CSVWriter = pq.ParquetWriter(
                partial, SCHEMA, compression="snappy"
            )
        else:
            options = pacsv.WriteOptions(quoting_style="needed")
            writer = pacsv.CSVWriter(partial, SCHEMA, write_options=options)
        with writer:
            for start in range(0, rows, SLICE_ROWS):
                table = build_slice(pools, seed, start, min(start + SLICE_ROWS, rows))
                if fmt == "parquet":
                    writer.write_table(table, row_group_size=SLICE_ROWS)
                else:
                    writer.write_table(table)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def parse_rows(text: str) -> int:
    """`1000000`, `1_000_000`, `100k` and `10m` all mean what they say."""
    text = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(text[:-1] if scale > 1 else text) * scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=parse_rows, required=True, help="e.g. 1000000 or 1m")
    parser.add_argument("--format", choices=("parquet", "csv"), help="default: from --out")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    fmt = args.format or format_of(args.out)
    started = time.perf_counter()
    write_orders(args.out, args.rows, fmt, args.seed)
    summary = {
        "path": str(args.out),
        "rows": args.rows,
        "format": fmt,
        "seconds": round(time.perf_counter() - started, 3),
        "bytes": args.out.stat().st_size,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
