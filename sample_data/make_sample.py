"""Generate the sample orders that backfill's docs, tests and demos replay.

Why generate instead of checking in a hand-made file: the script says exactly which rows
are bad and why, and anyone can rebuild `orders.csv` and `orders.parquet` byte for byte.
Everything comes from one seeded `random.Random`; nothing reads the clock, the locale or
the machine's timezone database, so every run writes the same bytes.

The data is a year (2024) of orders from a merch store whose buyers connected Solana
wallets. It is meant to be awkward the way real exports are: timestamps in five formats
and several UTC offsets, SKUs with leading zeros, product names with commas, quotes and
newlines, tiers in mixed case, mostly-empty coupons. A few paid rows carry one bad value
each (see BAD_ROWS) so the failure report has something to say.

Run it as `python sample_data/make_sample.py`; it writes next to itself and prints a
summary (rows by status, bad rows by kind, rows expected to map) that README.md quotes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from backfill.mapping.pubkey import b58encode

T = TypeVar("T")

SEED = 20241114
OUT_DIR = Path(__file__).resolve().parent
ORDER_COUNT = 3000
CUSTOMER_COUNT = 600
YEAR_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
YEAR_END = datetime(2025, 1, 1, tzinfo=timezone.utc)
CENT = Decimal("0.01")

COLUMNS = [
    "order_id",
    "created_at",
    "wallet",
    "sku",
    "Product Name",
    "quantity",
    "total",
    "tier",
    "status",
    "Country/Region",
    "coupon",
]

# How many rows of each bad kind to write; every one is a paid row with exactly one bad value.
BAD_ROWS: dict[str, int] = {
    "wallet_bad_alphabet": 14,
    "wallet_too_short": 10,
    "wallet_empty": 8,
    "created_at_unparseable": 12,
    "total_not_number": 12,
    "tier_unknown": 9,
    "quantity_empty": 7,
}


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: Decimal


@dataclass(frozen=True)
class Country:
    name: str
    weight: float
    utc_offset_minutes: int  # the offset shoppers there write in their timestamps


@dataclass(frozen=True)
class Customer:
    wallet: str
    tier: str
    country: Country


@dataclass(frozen=True)
class Coupon:
    code: str
    percent_off: int
    amount_off: Decimal
    months: tuple[int, ...]  # months of 2024 in which the code is handed out


PRODUCTS = [
    Product("00017", "Solana Logo Hoodie, Black", Decimal("59.00")),
    Product("00018", "Solana Logo Hoodie, White", Decimal("59.00")),
    Product("00123", '"gm" Coffee Mug', Decimal("18.50")),
    Product("00124", 'Sticker Pack "Degen Edition"', Decimal("7.99")),
    Product("00210", "Validator Cap", Decimal("25.00")),
    Product("00211", "Node Runner Beanie", Decimal("24.00")),
    Product("00305", "Ghost Plush", Decimal("29.90")),
    Product("00333", "Saga Phone Case", Decimal("34.99")),
    Product("00404", "Breakpoint 2024 Tee, Limited", Decimal("35.00")),
    Product("00405", "Mainnet Beta Tee", Decimal("30.00")),
    Product("00512", "Hacker House Tote Bag", Decimal("22.00")),
    Product("00513", "Seed Phrase Notebook", Decimal("14.95")),
    Product("00600", 'Poster "Ship It", A2', Decimal("19.00")),
    Product("00777", "Proof of History Desk Mat", Decimal("32.00")),
    Product("00808", "Compressed NFT Pin Set", Decimal("12.50")),
    Product("00901", 'Keycap "◎"', Decimal("9.90")),
    Product("01000", "Gift Card\n$25", Decimal("25.00")),
    Product("01001", "Gift Card\n$100", Decimal("100.00")),
    Product("01100", "Bundle: Hoodie + Cap\n(save 10%)", Decimal("75.00")),
    Product("01200", "Café Racer Jacket", Decimal("120.00")),
    Product("01300", "Socks, 3-pack", Decimal("16.00")),
    Product("01301", "LFG Water Bottle", Decimal("21.50")),
    Product("01400", 'Hardware Wallet Sleeve, "Midnight"', Decimal("27.90")),
    Product("01500", "Airdrop Season Hoodie", Decimal("64.00")),
]

COUNTRIES = [
    Country("United States", 30, -5 * 60),
    Country("Canada", 4, -5 * 60),
    Country("Mexico", 3, -6 * 60),
    Country("Brazil", 6, -3 * 60),
    Country("Argentina", 3, -3 * 60),
    Country("United Kingdom", 7, 0),
    Country("Germany", 8, 2 * 60),
    Country("France", 5, 2 * 60),
    Country("Netherlands", 3, 2 * 60),
    Country("Nigeria", 4, 1 * 60),
    Country("Türkiye", 3, 3 * 60),
    Country("India", 8, 5 * 60 + 30),
    Country("Vietnam", 3, 7 * 60),
    Country("Singapore", 4, 8 * 60),
    Country("Philippines", 3, 8 * 60),
    Country("Japan", 4, 9 * 60),
    Country("Korea, Republic of", 4, 9 * 60),
    Country("Australia", 3, 10 * 60),
]

COUPONS = [
    Coupon("WELCOME10", 10, Decimal(0), tuple(range(1, 13))),
    Coupon("GM5", 0, Decimal(5), tuple(range(1, 13))),
    Coupon("SOLSUMMER15", 15, Decimal(0), (6, 7, 8)),
    Coupon("BREAKPOINT20", 20, Decimal(0), (9,)),
    Coupon("BLACKFRIDAY25", 25, Decimal(0), (11, 12)),
]

TIERS = {"basic": 0.65, "gold": 0.22, "premium": 0.13}
STATUSES = {"paid": 0.90, "refunded": 0.06, "pending": 0.04}
QUANTITIES = {1: 0.70, 2: 0.18, 3: 0.07, 4: 0.03, 5: 0.02}
TIMESTAMP_FORMATS = {"iso_z": 35, "iso_offset": 25, "naive": 15, "epoch_ms": 15, "epoch_s": 10}
# Local hour of day 0..23: quiet at night, busiest in the evening.
HOUR_WEIGHTS = [
    0.5, 0.3, 0.2, 0.15, 0.15, 0.2, 0.35, 0.6, 0.8, 1.0, 1.1, 1.2,
    1.3, 1.3, 1.2, 1.2, 1.3, 1.5, 1.7, 1.9, 2.0, 1.8, 1.3, 0.8,
]  # fmt: skip
# (month, day) -> multiplier: launch spikes and the holiday season.
DAY_MULTIPLIERS = {(9, 20): 2.5, (9, 21): 2.5, (11, 29): 4.0, (12, 2): 3.0, (12, 25): 0.4}
UNPARSEABLE_TIMES = ["yesterday", "31/02/2024", "2024-02-30 09:15:00"]


def pick(rng: random.Random, weights: dict[T, float]) -> T:
    """One key of `weights`, drawn in proportion to its value."""
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def make_customers(rng: random.Random) -> list[Customer]:
    """CUSTOMER_COUNT distinct wallets; the first starts with a zero byte (a leading '1')."""
    customers = []
    country_weights = [country.weight for country in COUNTRIES]
    for index in range(CUSTOMER_COUNT):
        raw = rng.randbytes(32)
        if index == 0:
            raw = b"\0" + raw[1:]
        country = rng.choices(COUNTRIES, weights=country_weights)[0]
        customers.append(Customer(b58encode(raw), pick(rng, TIERS), country))
    return customers


def day_weights() -> list[float]:
    """Weight of each day of 2024: slow growth, busier weekends, a few spikes."""
    weights = []
    for day in range((YEAR_END - YEAR_START).days):
        date = YEAR_START + timedelta(days=day)
        weight = 0.8 + 0.4 * day / 365
        if date.weekday() >= 5:
            weight *= 1.3
        if date.month == 12 and date.day <= 20:
            weight *= 1.6
        weights.append(weight * DAY_MULTIPLIERS.get((date.month, date.day), 1.0))
    return weights


def order_time(rng: random.Random, days: list[float], offset_minutes: int) -> int:
    """Milliseconds since the epoch of an order placed at a busy local hour, within 2024."""
    while True:
        day = rng.choices(range(len(days)), weights=days)[0]
        hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
        local = YEAR_START + timedelta(
            days=day, hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60)
        )
        instant = local - timedelta(minutes=offset_minutes)
        if YEAR_START <= instant < YEAR_END:
            return int(instant.timestamp()) * 1000 + rng.randrange(1000)


def format_offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def format_time(kind: str, epoch_ms: int, offset_minutes: int) -> str:
    """`epoch_ms` written as the export wrote it; naive times are UTC wall-clock time."""
    seconds, millis = divmod(epoch_ms, 1000)
    utc = datetime.fromtimestamp(seconds, timezone.utc)
    if kind == "iso_z":
        return f"{utc:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"
    if kind == "iso_offset":
        local = utc + timedelta(minutes=offset_minutes)
        return f"{local:%Y-%m-%dT%H:%M:%S}.{millis:03d}{format_offset(offset_minutes)}"
    if kind == "naive":
        return f"{utc:%Y-%m-%d %H:%M:%S}"
    if kind == "epoch_ms":
        return str(epoch_ms)
    return str(seconds)


def choose_coupon(rng: random.Random, month: int) -> Coupon | None:
    """About one order in eight uses a code valid that month."""
    valid = [coupon for coupon in COUPONS if month in coupon.months]
    return rng.choice(valid) if rng.random() < 0.125 else None


def order_total(price: Decimal, quantity: int, coupon: Coupon | None) -> Decimal:
    total = price * quantity
    if coupon is not None:
        total = total * (100 - coupon.percent_off) / 100 - coupon.amount_off
    return max(total, Decimal(0)).quantize(CENT, rounding=ROUND_HALF_UP)


def format_total(rng: random.Random, total: Decimal) -> str:
    """Two decimals, except that half of the whole amounts lose them (`100`, not `100.00`)."""
    if total == total.to_integral_value() and rng.random() < 0.5:
        return str(int(total))
    return f"{total:.2f}"


def format_tier(rng: random.Random, tier: str) -> str:
    """Mostly lower case; some rows say `Premium` or `GOLD`."""
    roll = rng.random()
    if roll < 0.04:
        return tier.capitalize()
    if roll < 0.06:
        return tier.upper()
    return tier


def make_order(rng: random.Random, customer: Customer, days: list[float]) -> tuple[int, dict]:
    """One order as (epoch ms, row without order_id), every value written as text."""
    offset = customer.country.utc_offset_minutes
    epoch_ms = order_time(rng, days, offset)
    product = rng.choice(PRODUCTS)
    quantity = 1 if product.name.startswith("Gift Card") else pick(rng, QUANTITIES)
    month = datetime.fromtimestamp(epoch_ms // 1000, timezone.utc).month
    coupon = choose_coupon(rng, month)
    row = {
        "created_at": format_time(pick(rng, TIMESTAMP_FORMATS), epoch_ms, offset),
        "wallet": customer.wallet,
        "sku": product.sku,
        "Product Name": product.name,
        "quantity": str(quantity),
        "total": format_total(rng, order_total(product.price, quantity, coupon)),
        "tier": format_tier(rng, customer.tier),
        "status": pick(rng, STATUSES),
        "Country/Region": customer.country.name,
        "coupon": coupon.code if coupon else "",
    }
    return epoch_ms, row


def make_orders(rng: random.Random, customers: list[Customer]) -> list[dict[str, str]]:
    """Every customer orders at least once; a few loyal ones order many times."""
    days = day_weights()
    loyalty = [rng.paretovariate(1.3) for _ in customers]
    buyers = customers + rng.choices(customers, weights=loyalty, k=ORDER_COUNT - len(customers))
    orders = sorted((make_order(rng, buyer, days) for buyer in buyers), key=lambda o: o[0])
    return [
        {"order_id": f"ORD-{number:06d}", **row} for number, (_, row) in enumerate(orders, start=1)
    ]


def bad_wallet_alphabet(rng: random.Random, row: dict[str, str]) -> None:
    wallet = row["wallet"]
    at = rng.randrange(len(wallet))
    row["wallet"] = wallet[:at] + rng.choice("0OIl") + wallet[at + 1 :]


def bad_wallet_short(rng: random.Random, row: dict[str, str]) -> None:
    row["wallet"] = row["wallet"][: rng.randint(16, 31)]


def bad_wallet_empty(rng: random.Random, row: dict[str, str]) -> None:
    row["wallet"] = ""


def bad_created_at(rng: random.Random, row: dict[str, str]) -> None:
    row["created_at"] = rng.choice(UNPARSEABLE_TIMES)


def bad_total(rng: random.Random, row: dict[str, str]) -> None:
    """`N/A`, or the amount with a decimal comma (`12,50`)."""
    if rng.random() < 0.5:
        row["total"] = "N/A"
    else:
        row["total"] = f"{Decimal(row['total']):.2f}".replace(".", ",")


def bad_tier(rng: random.Random, row: dict[str, str]) -> None:
    row["tier"] = "platinum"


def bad_quantity(rng: random.Random, row: dict[str, str]) -> None:
    row["quantity"] = ""


SPOILERS: dict[str, Callable[[random.Random, dict[str, str]], None]] = {
    "wallet_bad_alphabet": bad_wallet_alphabet,
    "wallet_too_short": bad_wallet_short,
    "wallet_empty": bad_wallet_empty,
    "created_at_unparseable": bad_created_at,
    "total_not_number": bad_total,
    "tier_unknown": bad_tier,
    "quantity_empty": bad_quantity,
}


def spoil(rng: random.Random, rows: list[dict[str, str]]) -> dict[str, list[str]]:
    """Give BAD_ROWS paid rows one bad value each; returns the order ids by kind."""
    paid = [index for index, row in enumerate(rows) if row["status"] == "paid"]
    chosen = iter(rng.sample(paid, sum(BAD_ROWS.values())))
    spoiled: dict[str, list[str]] = {}
    for kind, count in BAD_ROWS.items():
        indexes = sorted(next(chosen) for _ in range(count))
        for index in indexes:
            SPOILERS[kind](rng, rows[index])
        spoiled[kind] = [rows[index]["order_id"] for index in indexes]
    return spoiled


def write_csv(rows: list[dict[str, str]], path: Path) -> None:
    """UTF-8, `\\n` line ends, quotes only where needed (commas, quotes, newlines)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode("utf-8"))


def parquet_cell(name: str, text: str) -> str | int | None:
    if text == "":
        return None
    return int(text) if name == "quantity" else text


def write_parquet(rows: list[dict[str, str]], path: Path) -> None:
    """The same cells: text columns as strings, `quantity` as int64; empty cells are null."""
    schema = pa.schema(
        [pa.field(name, pa.int64() if name == "quantity" else pa.string()) for name in COLUMNS]
    )
    columns = {name: [parquet_cell(name, row[name]) for row in rows] for name in COLUMNS}
    table = pa.Table.from_pydict(columns, schema=schema)
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=3,
        use_dictionary=True,
        write_statistics=True,
        version="2.6",
        data_page_version="1.0",
    )


def summarize(rows: list[dict[str, str]], spoiled: dict[str, list[str]]) -> str:
    statuses = Counter(row["status"] for row in rows)
    bad = sum(len(ids) for ids in spoiled.values())
    lines = [f"rows: {len(rows)}"]
    lines += [f"  status {status}: {count}" for status, count in sorted(statuses.items())]
    lines.append(f"bad rows (all paid, one bad value each): {bad}")
    for kind, ids in spoiled.items():
        lines.append(f"  {kind}: {len(ids)}: {' '.join(ids)}")
    lines.append(f"rows expected to map (paid, no bad value): {statuses['paid'] - bad}")
    lines.append(f"distinct wallet values: {len({row['wallet'] for row in rows})}")
    for name in ("orders.csv", "orders.parquet", "customers.csv", "orders_by_customer.csv"):
        data = (OUT_DIR / name).read_bytes()
        lines.append(f"{name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return "\n".join(lines)


def customer_ids(customers: list[Customer]) -> dict[str, str]:
    """Wallet -> customer id (`CUST-0001` ...), in the order the customers were made."""
    return {customer.wallet: f"CUST-{number:04d}" for number, customer in enumerate(customers, 1)}


def write_customer_files(
    customers: list[Customer], rows: list[dict[str, str]], wallets: list[str]
) -> None:
    """`customers.csv` (customer id -> wallet) and `orders_by_customer.csv`: the orders with
    the customer id in place of the wallet, as shops export them. A row whose wallet was
    spoiled names a customer the table lacks (`CUST-9001` ...); an empty wallet, no customer.
    So the lookup mapping sends exactly the events `map.yaml` sends from `orders.csv`."""
    ids = customer_ids(customers)
    with (OUT_DIR / "customers.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["customer_id", "wallet"])
        writer.writerows([ids[customer.wallet], customer.wallet] for customer in customers)
    unknown = 9000
    by_customer = []
    for row, wallet in zip(rows, wallets):
        if row["wallet"] == wallet:
            customer = ids[wallet]
        elif row["wallet"]:
            unknown += 1
            customer = f"CUST-{unknown}"
        else:
            customer = ""
        by_customer.append({("customer_id" if k == "wallet" else k): v for k, v in row.items()})
        by_customer[-1]["customer_id"] = customer
    columns = ["customer_id" if name == "wallet" else name for name in COLUMNS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(by_customer)
    (OUT_DIR / "orders_by_customer.csv").write_bytes(buffer.getvalue().encode("utf-8"))


def main() -> None:
    rng = random.Random(SEED)
    customers = make_customers(rng)
    rows = make_orders(rng, customers)
    wallets = [row["wallet"] for row in rows]
    spoiled = spoil(rng, rows)
    write_csv(rows, OUT_DIR / "orders.csv")
    write_parquet(rows, OUT_DIR / "orders.parquet")
    write_customer_files(customers, rows, wallets)
    print(summarize(rows, spoiled))


if __name__ == "__main__":
    main()
