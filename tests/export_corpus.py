"""A corpus of order exports shaped as ten platforms write them, and what each should send.

Column names, time formats, offsets, currencies, encodings and number marks follow each
platform's documented export (Shopify's and Squarespace's one row per line item with the
order's columns on its first row; WooCommerce's plugin columns; Etsy's sold-orders file;
BigCommerce's order export; Magento's admin order grid; Amazon's tab-separated order
report; Stripe's payments export in UTC; PayPal's activity download with Date, Time and
TimeZone; a pandas dump of Square's Orders API with its index column and amounts in cents).
The data is made up here. Each fixture also gets `wallets.csv`: the buyer's key -> a valid
Solana key, the lookup a user adds to init's draft.

The expectation is computed apart from backfill's code: the instant with `zoneinfo` from
the wall time the generator chose, the amount with `decimal` from the digits it wrote.

    python tests/export_corpus.py OUT_DIR    # writes every fixture under OUT_DIR/<platform>/
"""

from __future__ import annotations

import csv
import io
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from backfill.mapping.pubkey import b58encode

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ORDERS = 30
FIRST = datetime(2023, 3, 1, 9, 0, 0)  # wall time of the first order; PayPal's crosses 12 March


@dataclass(frozen=True)
class Order:
    """One order as the platform holds it: the truth the export is written from."""

    number: int
    when: datetime  # aware
    key: str  # the buyer as the export names them (id or e-mail)
    amount: Decimal
    lines: int  # line items
    status: str

    @property
    def ms(self) -> int:
        return (self.when - EPOCH) // timedelta(milliseconds=1)


@dataclass
class Fixture:
    """An export file, its wallet lookup, and the events a right mapping sends from it."""

    platform: str
    file: str
    key_column: str  # the buyer column the wallet lookup is keyed by
    amount_column: str
    orders: list[Order]
    timezone: str | None = None  # the shop's zone, for times written without an offset
    amount_scale: Decimal = Decimal(1)
    xfail: dict[str, str] = field(default_factory=dict)  # stage -> reason (issue 27 features)

    def expected(self) -> list[tuple[int, str, Decimal]]:
        """(timestamp ms, wallet, amount) of every event, sorted."""
        return sorted((o.ms, wallet_of(o.key), o.amount) for o in self.orders)


def wallet_of(key: str) -> str:
    seed = sum(ord(c) * 31**i for i, c in enumerate(key)) % (2**32 - 1) + 1
    return b58encode(seed.to_bytes(4, "big") * 8)


def make_orders(
    zone: str, keys: Callable[[int], str], statuses: tuple[str, ...], seed: int
) -> list[Order]:
    rng = random.Random(seed)
    orders, wall = [], FIRST
    for number in range(ORDERS):
        wall += timedelta(hours=rng.randint(5, 40), minutes=rng.randint(0, 59))
        wall = wall.replace(second=rng.randint(0, 59))
        when = wall.replace(tzinfo=ZoneInfo(zone))
        if not _exists(when):  # a wall time the clock skipped: no shop writes one
            wall += timedelta(hours=1)
            when = wall.replace(tzinfo=ZoneInfo(zone))
        cents = rng.randint(500, 180_000)
        orders.append(
            Order(
                number,
                when,
                keys(number % 17),
                Decimal(cents) / 100,
                rng.randint(1, 3),
                statuses[rng.randrange(len(statuses))],
            )
        )
    return orders


def money(value: Decimal, mark: str = ".", group: str = "") -> str:
    whole, cents = f"{value:.2f}".split(".")
    sign, whole = ("-", whole[1:]) if whole.startswith("-") else ("", whole)
    if group:
        whole = f"{int(whole):,}".replace(",", group)
    return f"{sign}{whole}{mark}{cents}"


def csv_text(header: list[str], rows: list[list[str]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> None:
    path.write_text(csv_text(header, rows, delimiter), encoding="utf-8")


def offset_time(when: datetime, fmt: str = "%Y-%m-%d %H:%M:%S %z") -> str:
    return when.strftime(fmt)


PEOPLE = ["Ana Souza", "Jean Martin", "Mia Müller", "Liam O'Neil", "Sofia Rossi", "Kenji Sato"]


def person(number: int) -> str:
    return PEOPLE[number % len(PEOPLE)]


# --- the platforms -----------------------------------------------------------------------


def shopify(out: Path) -> Fixture:
    """Shopify's orders_export.csv: a row per line item, times with a space before +0200."""
    orders = make_orders("Europe/Paris", lambda n: f"buyer{n}@example.com", ("paid",), 1)
    header = [
        "Name", "Email", "Financial Status", "Paid at", "Fulfillment Status", "Fulfilled at",
        "Accepts Marketing", "Currency", "Subtotal", "Shipping", "Taxes", "Total",
        "Discount Code", "Discount Amount", "Shipping Method", "Created at",
        "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku",
        "Billing Name", "Billing Street", "Billing City", "Billing Zip", "Billing Country",
        "Billing Phone", "Payment Method", "Id", "Vendor",
    ]  # fmt: skip
    rows = []
    for o in orders:
        created = offset_time(o.when)
        paid = created if o.number % 3 else ""
        status = "paid" if paid else "pending"
        for line in range(o.lines):
            first = line == 0
            order_cells = [
                status, paid, "fulfilled", created, "no", "EUR", money(o.amount - 5),
                "5.00", "0.00", money(o.amount), "", "0.00", "Standard",
            ] if first else ["", "", "", "", "", "", "", "", "", "", "", "", ""]  # fmt: skip
            rows.append(
                [
                    f"#{1001 + o.number}", o.key, *order_cells[:12],
                    order_cells[12], created, str(line + 1), f"Mug {line}", "12.00",
                    f"MUG-{line:03d}", person(o.number) if first else "",
                    "13-15 rue de Berri" if first else "", "Paris" if first else "",
                    "75008" if first else "", "FR" if first else "",
                    "+33610826417" if first else "", "Shopify Payments" if first else "",
                    str(5_000_000_000 + o.number) if first else "", "Leaf",
                ]
            )  # fmt: skip
    write(out / "orders_export.csv", header, rows)
    return Fixture("shopify", "orders_export.csv", "Email", "Total", orders)


def woocommerce(out: Path) -> Fixture:
    """WooCommerce's order export: site-local times without an offset, one row per order."""
    orders = make_orders("Europe/London", lambda n: str(100 + n), ("completed",), 2)
    header = [
        "order_id", "order_number", "order_date", "paid_date", "status", "shipping_total",
        "tax_total", "order_total", "order_currency", "payment_method", "customer_id",
        "customer_email", "billing_first_name", "billing_last_name", "billing_address_1",
        "billing_postcode", "billing_phone",
    ]  # fmt: skip
    rows = [
        [
            str(2000 + o.number), str(2000 + o.number), o.when.strftime("%Y-%m-%d %H:%M:%S"),
            (o.when + timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M:%S"), o.status,
            "4.99", "0.00", money(o.amount), "GBP", "stripe", o.key,
            f"buyer{o.key}@example.co.uk", person(o.number).split()[0],
            person(o.number).split()[1], "1 High St", "SW1A 1AA", "020 7946 0000",
        ]
        for o in orders
    ]  # fmt: skip
    write(out / "orders.csv", header, rows)
    return Fixture("woocommerce", "orders.csv", "customer_id", "order_total", orders,
                   timezone="Europe/London")  # fmt: skip


def etsy(out: Path) -> Fixture:
    """Etsy's EtsySoldOrders: a sale date (MM/DD/YY) without a time of day."""
    orders = make_orders("America/New_York", lambda n: str(70_000_000 + n), ("",), 3)
    orders = [
        Order(o.number, o.when.replace(hour=0, minute=0, second=0), o.key, o.amount, 1, "")
        for o in orders
    ]
    header = [
        "Sale Date", "Order ID", "Buyer User ID", "Full Name", "First Name", "Last Name",
        "Number of Items", "Payment Method", "Date Shipped", "Street 1", "Ship City",
        "Ship State", "Ship Zipcode", "Ship Country", "Currency", "Order Value", "Shipping",
        "Sales Tax", "Order Total", "Card Processing Fees", "Order Net", "Buyer", "SKU",
    ]  # fmt: skip
    rows = [
        [
            o.when.strftime("%m/%d/%y"), str(2_900_000_000 + o.number), o.key, person(o.number),
            person(o.number).split()[0], person(o.number).split()[1], "1", "Credit Card",
            (o.when + timedelta(days=2)).strftime("%m/%d/%y"), "12 Elm St", "Albany", "NY",
            "02134", "United States", "USD", money(o.amount), "0.00", "0.00", money(o.amount),
            "0.55", money(o.amount - Decimal("0.55")), f"shopper{o.key[-2:]}", "CANDLE-1",
        ]
        for o in orders
    ]  # fmt: skip
    write(out / "EtsySoldOrders2023-3.csv", header, rows)
    return Fixture("etsy", "EtsySoldOrders2023-3.csv", "Buyer User ID", "Order Total",
                   orders, timezone="America/New_York")  # fmt: skip


def squarespace(out: Path) -> Fixture:
    """Squarespace's orders.csv: Shopify-like line items, times with their UTC offset."""
    orders = make_orders("America/New_York", lambda n: f"sq{n}@example.com", ("PAID",), 4)
    header = [
        "Order ID", "Email", "Financial Status", "Paid at", "Fulfillment Status",
        "Fulfilled at", "Currency", "Subtotal", "Shipping", "Taxes", "Amount Refunded",
        "Total", "Discount Code", "Discount Amount", "Shipping Method", "Created at",
        "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku",
        "Billing Name", "Billing Address1", "Billing City", "Billing Zip", "Billing Country",
        "Billing Phone", "Payment Method", "Payment Reference",
    ]  # fmt: skip
    rows = []
    for o in orders:
        created = offset_time(o.when)
        for line in range(o.lines):
            first = line == 0
            head = [
                "PAID", created, "FULFILLED", created, "USD", money(o.amount), "0.00", "0.00",
                "0.00", money(o.amount), "", "0.00", "Flat Rate",
            ] if first else [""] * 13  # fmt: skip
            tail = [
                person(o.number), "5 Main St", "Boston", "02134", "US", "6175550100",
                "Stripe", f"ch_{o.number:06d}",
            ] if first else [""] * 8  # fmt: skip
            rows.append([f"{o.number + 1:05d}", o.key, *head, created, "1", f"Print {line}",
                         "10.00", f"SQ{line}", *tail])  # fmt: skip
    write(out / "orders.csv", header, rows)
    return Fixture("squarespace", "orders.csv", "Email", "Total", orders)


def bigcommerce(out: Path) -> Fixture:
    """BigCommerce's order export: day-first dates and times in the store's zone."""
    orders = make_orders("Australia/Sydney", lambda n: str(300 + n), ("Completed",), 5)
    header = [
        "Order ID", "Customer ID", "Customer Name", "Customer Email", "Customer Phone",
        "Order Date", "Order Status", "Subtotal (inc tax)", "Subtotal (ex tax)", "Tax Total",
        "Shipping Cost (inc tax)", "Order Total (inc tax)", "Order Total (ex tax)",
        "Payment Method", "Total Quantity", "Billing Street 1", "Billing Suburb",
        "Billing Zip", "Billing Country",
    ]  # fmt: skip
    rows = [
        [
            str(100 + o.number), o.key, person(o.number), f"c{o.key}@example.com.au",
            "0491 570 156", o.when.strftime("%d/%m/%Y %H:%M:%S"), o.status, money(o.amount),
            money(o.amount), "0.00", "0.00", money(o.amount), money(o.amount), "PayPal", "1",
            "1 George St", "Sydney", "2000", "Australia",
        ]
        for o in orders
    ]  # fmt: skip
    write(out / "orders-2023-05-02.csv", header, rows)
    return Fixture("bigcommerce", "orders-2023-05-02.csv", "Customer ID",
                   "Order Total (inc tax)", orders, timezone="Australia/Sydney")  # fmt: skip


def magento(out: Path) -> Fixture:
    """Magento's admin order grid export: padded ids, month names and a 12-hour clock."""
    orders = make_orders("America/Chicago", lambda n: f"m{n}@example.com", ("complete",), 6)
    header = [
        "ID", "Purchase Point", "Purchase Date", "Bill-to Name", "Ship-to Name",
        "Grand Total (Base)", "Grand Total (Purchased)", "Status", "Billing Address",
        "Shipping Address", "Shipping Information", "Customer Email", "Customer Group",
        "Subtotal", "Shipping and Handling", "Customer Name", "Payment Method",
    ]  # fmt: skip
    rows = [
        [
            f"{o.number + 1:09d}", "Main Website\nMain Website Store\nDefault Store View",
            f"{o.when:%b} {o.when.day}, {o.when:%Y} {o.when.hour % 12 or 12}:{o.when:%M:%S %p}",
            person(o.number), person(o.number), money(o.amount), money(o.amount), o.status,
            "1 Lake Shore Dr,Chicago,Illinois,60601", "1 Lake Shore Dr,Chicago,Illinois,60601",
            "Flat Rate - Fixed", o.key, "General", money(o.amount), "0.00", person(o.number),
            "Check / Money order",
        ]
        for o in orders
    ]  # fmt: skip
    write(out / "export.csv", header, rows)
    return Fixture("magento", "export.csv", "Customer Email", "Grand Total (Base)", orders,
                   timezone="America/Chicago")  # fmt: skip


def amazon(out: Path) -> Fixture:
    """Amazon Seller Central's order report: a tab-separated .txt, times in UTC offsets."""
    orders = make_orders("UTC", lambda n: f"amz{n}@marketplace.amazon.com", ("",), 7)
    header = [
        "order-id", "order-item-id", "purchase-date", "payments-date", "buyer-email",
        "buyer-name", "buyer-phone-number", "sku", "product-name", "quantity-purchased",
        "currency", "item-price", "item-tax", "shipping-price", "shipping-tax",
        "ship-service-level", "recipient-name", "ship-address-1", "ship-city", "ship-state",
        "ship-postal-code", "ship-country",
    ]  # fmt: skip
    rows = [
        [
            f"114-{3_000_000 + o.number:07d}-{5_000_000 + o.number:07d}",
            str(40_000_000_000_000 + o.number), o.when.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            o.when.strftime("%Y-%m-%dT%H:%M:%S+00:00"), o.key, person(o.number),
            "+1 206-266-1000", "BOOK-1", "A Book", "1", "USD", money(o.amount), "0.00",
            "0.00", "0.00", "Standard", person(o.number), "410 Terry Ave N", "Seattle", "WA",
            "98109", "US",
        ]
        for o in orders
    ]  # fmt: skip
    write(out / "Orders-2023-04.txt", header, rows, "\t")
    return Fixture("amazon", "Orders-2023-04.txt", "buyer-email", "item-price", orders)


def stripe(out: Path) -> Fixture:
    """Stripe's payments export: `Created (UTC)` without seconds, lower-case currency."""
    orders = make_orders("UTC", lambda n: f"cus_N{n:04d}xQ2", ("Paid",), 8)
    orders = [
        Order(o.number, o.when.replace(second=0), o.key, o.amount, 1, o.status) for o in orders
    ]
    header = [
        "id", "Description", "Seller Message", "Created (UTC)", "Amount", "Amount Refunded",
        "Currency", "Converted Amount", "Fee", "Tax", "Status", "Statement Descriptor",
        "Customer ID", "Customer Description", "Customer Email", "Captured", "Card ID",
        "Card Last4", "Card Brand", "Card Name", "Card Address Line1", "Card Address Zip",
        "Card Address Country", "Invoice ID",
    ]  # fmt: skip
    rows = [
        [
            f"ch_3MtwBwLkdIwHu7ix{o.number:04d}", "Order", "Payment complete.",
            o.when.strftime("%Y-%m-%d %H:%M"), money(o.amount), "0.00", "usd",
            money(o.amount), "1.20", "0.00", o.status, "SHOP", o.key, "",
            f"s{o.number}@example.com", "true", f"card_1Mt{o.number:04d}", "4242", "Visa",
            person(o.number), "1 Main St", "94105", "US", "",
        ]
        for o in orders
    ]  # fmt: skip
    write(out / "unified_payments.csv", header, rows)
    return Fixture("stripe", "unified_payments.csv", "Customer ID", "Amount", orders)


def paypal(out: Path) -> Fixture:
    """PayPal's activity download: Date, Time and TimeZone (PST/PDT across the clock
    change of 12 March 2023), amounts such as 1,265.00, a UTF-8 byte order mark."""
    orders = make_orders("America/Los_Angeles", lambda n: f"pp{n}@example.com", ("",), 9)
    header = [
        "Date", "Time", "TimeZone", "Name", "Type", "Status", "Currency", "Gross", "Fee",
        "Net", "From Email Address", "To Email Address", "Transaction ID", "Shipping Address",
        "Item Title", "Quantity", "Balance", "Contact Phone Number", "Balance Impact",
    ]  # fmt: skip
    rows = [
        [
            f"{o.when.month}/{o.when.day}/{o.when.year}", o.when.strftime("%H:%M:%S"),
            o.when.tzname() or "", person(o.number), "Website Payment", "Completed", "USD",
            money(o.amount, group=","), money(Decimal("-0.49") - o.amount * Decimal("0.0349")
                                             .quantize(Decimal("0.01")), group=","),
            money(o.amount, group=","), o.key, "shop@example.com", f"9X{o.number:015d}",
            "1 Market St, San Francisco, CA 94105", "Gift", "1", "0.00", "4155550100",
            "Credit",
        ]
        for o in orders
    ]  # fmt: skip
    (out / "Download.CSV").write_bytes(b"\xef\xbb\xbf" + csv_text(header, rows).encode())
    return Fixture("paypal", "Download.CSV", "From Email Address", "Gross", orders)


def _exists(when: datetime) -> bool:
    utc = when.astimezone(timezone.utc)
    return utc.astimezone(when.tzinfo).replace(tzinfo=None) == when.replace(tzinfo=None)


def square(out: Path) -> Fixture:
    """A pandas dump of Square's Orders API: an unnamed index column, amounts in cents."""
    orders = make_orders("UTC", lambda n: f"Q8{n:04d}CUST", ("COMPLETED",), 10)
    header = ["", "id", "created_at", "state", "total_money_amount", "total_money_currency",
              "customer_id", "location_id"]  # fmt: skip
    rows = [
        [
            str(i), f"ORD{o.number:06d}SQ", o.when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            o.status, str(int(o.amount * 100)), "USD", o.key, "L88917AVBK2S5",
        ]
        for i, o in enumerate(orders)
    ]  # fmt: skip
    write(out / "square_orders.csv", header, rows)
    return Fixture("square", "square_orders.csv", "customer_id", "total_money_amount", orders,
                   amount_scale=Decimal("0.01"))  # fmt: skip


PLATFORMS: dict[str, Callable[[Path], Fixture]] = {
    f.__name__: f
    for f in (
        shopify,
        woocommerce,
        etsy,
        squarespace,
        bigcommerce,
        magento,
        amazon,
        stripe,
        paypal,
        square,
    )
}


def write_fixture(platform: str, out: Path) -> Fixture:
    """The platform's export and its `wallets.csv` (key,wallet) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    fixture = PLATFORMS[platform](out)
    keys = sorted({o.key for o in fixture.orders})
    lookup = csv_text(["key", "wallet"], [[k, wallet_of(k)] for k in keys])
    (out / "wallets.csv").write_text(lookup, encoding="utf-8")
    return fixture


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "export_corpus")
    for name in PLATFORMS:
        write_fixture(name, target / name)
        print(f"{target / name}")
