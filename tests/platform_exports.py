"""Exports shaped as platforms write them, for issue 27's features (the corpus of
tests/export_corpus.py covers the common columns; these add what those features need).

Each writer makes the file, `wallets.csv` (the buyer's key -> a Solana key) and returns the
events a right mapping sends, computed apart from backfill: instants with `zoneinfo` from
the wall time chosen here, amounts with `decimal` from the digits written.

    python tests/platform_exports.py OUT_DIR
"""

from __future__ import annotations

import csv
import io
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from export_corpus import EPOCH, csv_text, money, wallet_of


@dataclass(frozen=True)
class Expected:
    """One event a right mapping sends: (ms, wallet, amount)."""

    ms: int
    wallet: str
    amount: Decimal


@dataclass
class Export:
    """An export file beside its `wallets.csv`, and the events it should give."""

    folder: Path
    file: str
    key_column: str
    amount_column: str
    events: list[Expected]

    @property
    def path(self) -> Path:
        return self.folder / self.file

    def expected(self) -> list[tuple[int, str, Decimal]]:
        return sorted((e.ms, e.wallet, e.amount) for e in self.events)


def ms_of(when: datetime) -> int:
    return (when - EPOCH) // timedelta(milliseconds=1)


def write_wallets(folder: Path, keys: list[str], write_key: Callable[[str], str] = str) -> None:
    """wallets.csv: each key (as the shop's table writes it) -> its wallet."""
    unique = sorted(set(keys))
    rows = [[write_key(k), wallet_of(k)] for k in unique]
    (folder / "wallets.csv").write_text(csv_text(["key", "wallet"], rows), encoding="utf-8")


def drafted_then_edited(
    cli: Callable[..., Any],
    source: Path,
    mapping_path: Path,
    edit: Callable[[dict[str, Any]], None],
) -> Path:
    """init's draft of `source` with a user's edits (`edit` changes the parsed YAML)."""
    drafted = cli("init", source, "-o", mapping_path, "--force")
    assert drafted.code == 0, drafted.stderr
    data = yaml.safe_load(mapping_path.read_text(encoding="utf-8"))
    edit(data)
    mapping_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return mapping_path


def wallet_lookup(column: str, **extra: Any) -> dict[str, Any]:
    """user.pubKey from `column` through wallets.csv (key -> wallet)."""
    return {"pubKey": {"column": column, "lookup": "wallets.csv", "key": "key",
                       "value": "wallet", **extra}}  # fmt: skip


def sent_events(sandbox: Any, amount_field: str) -> list[tuple[int, str, Decimal]]:
    """(timestamp, wallet, amount) of every event the sandbox holds, sorted; the amount as
    the decimal its JSON number's shortest digits write."""
    return sorted(
        (e["event"]["timestamp"], e["event"]["user"]["pubKey"],
         Decimal(repr(e["event"]["event_data"][amount_field])))
        for e in sandbox.events()
    )  # fmt: skip


# --- Amazon: a settlement report, tab-separated .txt ---------------------------------------

SETTLEMENT_HEADER = [
    "settlement-id", "settlement-start-date", "settlement-end-date", "deposit-date",
    "total-amount", "currency", "transaction-type", "order-id", "merchant-order-id",
    "adjustment-id", "shipment-id", "marketplace-name", "amount-type", "amount-description",
    "amount", "fulfillment-id", "posted-date", "posted-date-time", "order-item-code",
    "merchant-order-item-id", "merchant-adjustment-item-id", "sku", "quantity-purchased",
    "promotion-id",
]  # fmt: skip
REFUNDED = (3, 7, 11, 19)  # orders whose item comes back on a Refund row, same order-id


def amazon_settlement(folder: Path, orders: int = 24) -> Export:
    """Amazon's settlement report (flat file V2): a summary row first, then a row per
    transaction; an item refunded appears twice under one order-id (Order, then Refund)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(27)
    start = datetime(2023, 4, 1, tzinfo=timezone.utc)
    summary = ["17683925691", "2023-04-01 00:00:00 UTC", "2023-04-15 00:00:00 UTC",
               "2023-04-17 00:00:00 UTC", "0.00", "USD"] + [""] * 18  # fmt: skip
    rows, events = [summary], []
    for number in range(orders):
        order_id = f"114-{3_000_000 + number:07d}-{5_000_000 + number:07d}"
        when = start + timedelta(hours=rng.randint(5, 30) * (number + 1), seconds=number * 7)
        amount = Decimal(rng.randint(500, 9_000)) / 100
        kinds = [("Order", when, amount)]
        if number in REFUNDED:
            kinds.append(("Refund", when + timedelta(days=2, minutes=13), -amount))
        for kind, at, value in kinds:
            rows.append([
                "17683925691", "", "", "", "", "", kind, order_id, "", "", "", "Amazon.com",
                "ItemPrice", "Principal", money(value), "AFN", at.strftime("%Y-%m-%d"),
                at.strftime("%Y-%m-%d %H:%M:%S UTC"), f"{40_000_000 + number}", "", "",
                "BOOK-1", "1", "",
            ])  # fmt: skip
            events.append(Expected(ms_of(at), wallet_of(order_id), value))
    text = csv_text(SETTLEMENT_HEADER, rows, delimiter="\t")
    (folder / "settlement.txt").write_text(text, encoding="utf-8")
    write_wallets(folder, [r[7] for r in rows[1:]])
    return Export(folder, "settlement.txt", "order-id", "amount", events)


# --- WooCommerce: e-mails in mixed case, a wallet table in lower case ----------------------

WOO_HEADER = [
    "order_id", "order_number", "order_date", "status", "order_total", "order_currency",
    "customer_id", "billing_email", "billing_first_name", "billing_last_name",
]  # fmt: skip


def woocommerce_emails(folder: Path, orders: int = 40) -> Export:
    """A WooCommerce export whose `billing_email` is written as buyers typed it (`Ana.Souza@
    Example.com`, a space after), beside the wallet table a shop keeps in lower case."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2727)
    zone = ZoneInfo("Europe/London")
    rows, events, keys = [], [], []
    for number in range(orders):
        key = f"buyer{number % 13}@example.co.uk"
        written = key if number % 3 == 0 else key.title()
        written += " " if number % 7 == 0 else ""
        when = datetime(2023, 5, 1, 9, 0, tzinfo=zone) + timedelta(hours=7 * number)
        amount = Decimal(rng.randint(100, 50_000)) / 100
        rows.append([str(3000 + number), str(3000 + number), when.strftime("%Y-%m-%d %H:%M:%S"),
                     "completed", money(amount), "GBP", str(number % 13), written, "Ana",
                     "Souza"])  # fmt: skip
        events.append(Expected(ms_of(when), wallet_of(key), amount))
        keys.append(key)
    (folder / "orders.csv").write_text(csv_text(WOO_HEADER, rows), encoding="utf-8")
    write_wallets(folder, keys)
    return Export(folder, "orders.csv", "billing_email", "order_total", events)


def differs_from_the_table(export: Export) -> int:
    """Rows whose e-mail, as written, is not the table's key (they need `match`)."""
    with (export.path).open(encoding="utf-8") as handle:
        emails = [line.split(",")[7] for line in handle.read().splitlines()[1:]]
    return sum(email != email.strip().lower() for email in emails)


EXPORTS: dict[str, Callable[[Path], Export]] = {
    "amazon_settlement": amazon_settlement,
    "woocommerce_emails": woocommerce_emails,
}

if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "platform_exports")
    for name, write in EXPORTS.items():
        print(write(target / name).path)


# --- init's judgement: the corpus' exports with the statuses platforms really mix ------------

STATUSES = {  # platform -> (its status column, the values it writes, in turn)
    "stripe": ("Status", ("Paid", "Failed", "Paid", "Refunded")),
    "paypal": ("Status", ("Completed", "Pending", "Completed", "Denied")),
    "woocommerce": ("status", ("completed", "processing", "refunded", "completed", "failed")),
}


def with_mixed_statuses(platform: str, folder: Path) -> tuple[Path, list[str]]:
    """The corpus' export of `platform` (one row per order) with its status column cycling
    through the values that platform writes; the file and each row's status."""
    from export_corpus import write_fixture

    fixture = write_fixture(platform, folder)
    path = folder / fixture.file
    raw = path.read_bytes()
    bom = b"\xef\xbb\xbf" if raw.startswith(b"\xef\xbb\xbf") else b""
    rows = list(csv.reader(io.StringIO(raw[len(bom) :].decode("utf-8"))))
    column, cycle = STATUSES[platform]
    at = rows[0].index(column)
    statuses = [cycle[i % len(cycle)] for i in range(len(rows) - 1)]
    for row, status in zip(rows[1:], statuses):
        row[at] = status
    path.write_bytes(bom + csv_text(rows[0], rows[1:]).encode("utf-8"))
    return path, statuses


def shopify_xlsx(folder: Path) -> Path:
    """The corpus' Shopify orders export saved as .xlsx (every cell text, as it was)."""
    from export_corpus import write_fixture
    from openpyxl import Workbook

    fixture = write_fixture("shopify", folder)
    with (folder / fixture.file).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append([cell if cell else None for cell in row])
    book.save(folder / "orders_export.xlsx")
    return folder / "orders_export.xlsx"
