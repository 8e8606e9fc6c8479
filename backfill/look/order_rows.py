"""Which rows are orders, for `backfill init`: the order id, line-item exports, a status.

Shops such as Shopify write one row per line item: an order's rows follow one another under
one id, and the order-level columns (financial status, total, ...) are filled on its first
row only. A backfill sends one event per order, so the draft proposes the filter that keeps
the first row of each (`notna(<an order-level column>)`), and the rest of the draft is
guessed from the rows that filter keeps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from backfill.look.column_kinds import scalar
from backfill.mapping.convert import missing_mask

CONTINUATION_EMPTY = 0.95  # share of continuation rows an order-level column is empty on
_ORDER_ID_NAME = re.compile(
    r"^(order|transaction|purchase|invoice)[ _\-]?(id|number|no|nr|ref|reference)$", re.I
)
_RUN_KEY_NAME = re.compile(r"^(name|number|order|order ?#|order ?no|amazon-order-id)$", re.I)
_STATUS_NAME = re.compile(r"^(order[ _]?|financial[ _]?|payment[ _]?)?(status|state)$", re.I)
_ORDER_LEVEL_NAME = re.compile(r"financial|status|total|paid|payment", re.I)
# Statuses of an order that happened (paid for): what a backfill of orders sends.
DONE_STATUSES = frozenset(
    {"completed", "complete", "paid", "succeeded", "success", "successful", "captured",
     "settled", "fulfilled", "approved", "shipped", "delivered"}
)  # fmt: skip
_ORDER_NAME_VALUE = re.compile(r"^#?[A-Za-z]{0,6}-?[0-9]+$")  # Shopify's Name: #1001


@dataclass(frozen=True)
class LineItems:
    """A line-item export: the id column, the column filled on first rows only, the filter."""

    id_column: str
    order_column: str
    order_columns: list[str]
    orders: int
    rows: int
    keep: np.ndarray  # the sampled rows the filter keeps

    @property
    def filter(self) -> str:
        return f"notna({reference(self.order_column)})"


def reference(column: str) -> str:
    """A column as the filter language names it."""
    return column if re.match(r"^[A-Za-z_]\w*$", column) else f"`{column}`"


def find_line_items(table: pa.Table) -> LineItems | None:
    """A column whose values repeat on consecutive rows, and columns empty on those."""
    names = [n for n in table.column_names if _ORDER_ID_NAME.match(n) or _RUN_KEY_NAME.match(n)]
    for name in names:
        found = _line_items_by(table, name)
        if found is not None:
            return found
    return None


def _line_items_by(table: pa.Table, id_column: str) -> LineItems | None:
    values = table.column(id_column).to_pylist()
    if len(values) < 2 or any(v is None or v == "" for v in values):
        return None
    starts = np.array([i == 0 or values[i] != values[i - 1] for i in range(len(values))])
    later = ~starts
    orders = int(starts.sum())
    if not later.any() or len({values[i] for i in np.flatnonzero(starts)}) != orders:
        return None  # no repeats, or an id that comes back later: not runs of line items
    order_columns = []
    for name in table.column_names:
        missing = missing_mask(table.column(name).combine_chunks())
        if not missing[starts].any() and missing[later].mean() >= CONTINUATION_EMPTY:
            order_columns.append(name)
    if not order_columns:
        return None
    chosen = next((n for n in order_columns if _ORDER_LEVEL_NAME.search(n)), order_columns[0])
    keep = ~missing_mask(table.column(chosen).combine_chunks())
    return LineItems(id_column, chosen, order_columns, orders, len(values), keep)


def line_item_lines(items: LineItems) -> list[str]:
    shown = ", ".join(items.order_columns[:4]) + (", ..." if len(items.order_columns) > 4 else "")
    return [
        "",
        f"# A line-item export: an order's rows follow one another under one {items.id_column}",
        f"# ({items.rows:,} sampled rows hold {items.orders:,} orders), and order-level columns",
        f"# ({shown}) are filled on its first row only. This filter keeps that row:",
        "# one event per order. Remove it to send one event per line item.",
        f'filter: "{items.filter}"',
    ]


def id_candidates(table: pa.Table) -> list[str]:
    """Columns that may name the order, likeliest first: named like an order id (order_id,
    Order ID...), then exactly `id` (Stripe, Square), then Shopify's `Name` when its values
    read as order names (#1001), not people's."""
    names = table.column_names
    found = [n for n in names if _ORDER_ID_NAME.match(n)]
    found += [n for n in names if n == "id"]
    for name in names:
        if name == "Name" and pa.types.is_string(table.column(name).type):
            values = [v for v in table.column(name).to_pylist() if v]
            if values and all(_ORDER_NAME_VALUE.match(v.strip()) for v in values):
                found.append(name)
    return found


def id_lines(table: pa.Table, items: LineItems | None) -> list[str]:
    """The order id for the ledger of delivered ids, from a column named like one: proposed
    when every row kept has one and none repeats; else left commented, saying why."""
    for name in id_candidates(table):
        values = [v for v in table.column(name).to_pylist() if v is not None and v != ""]
        if not values:
            continue
        repeats = len(values) - len(set(values))
        if repeats == 0 and len(values) == table.num_rows:
            why = "none repeats in the sample"
            if items is not None:
                why = "none repeats in the rows the filter keeps"
            return [
                f"id: {scalar(name)}   # an order id, {why}: a later export "
                "that holds these orders again skips them (the ledger of delivered ids)"
            ]
        return [
            f"# id: {scalar(name)}   # not proposed: {repeats:,} of {len(values):,} sampled "
            "values repeat (an order on several lines?); with it, only each order's first "
            "row would be sent"
        ]
    return []


def status_filter_lines(table: pa.Table, items: LineItems | None) -> list[str]:
    """A commented filter on a status column that keeps the orders that happened (paid,
    completed, succeeded...) and says which values it drops (failed, refunded, pending...);
    never one that keeps only those. Left for the user to switch on: it changes what is sent."""
    for name in table.column_names:
        column = table.column(name)
        if not _STATUS_NAME.match(name) or not pa.types.is_string(column.type):
            continue
        values = [v for v in column.to_pylist() if v]
        distinct = sorted(set(values), key=lambda v: -values.count(v))
        done = [v for v in distinct if v.strip().lower() in DONE_STATUSES and "'" not in v]
        dropped = [v for v in distinct if v not in done]
        if not 2 <= len(distinct) <= 12 or not done or not dropped:
            continue
        shares = ", ".join(f"{v} {values.count(v) / len(values):.0%}" for v in distinct)
        kept = ", ".join(f"'{v}'" for v in done)
        wanted = f"{reference(name)} " + (f"== {kept}" if len(done) == 1 else f"in [{kept}]")
        if items is not None:
            wanted = f"{items.filter} and {wanted}"
        return [
            "",
            f"# Which rows to send? {name} holds: {shares}. To send only the orders that",
            f"# happened, keep {', '.join(done)} (drops {', '.join(dropped)}):",
            f'# filter: "{wanted}"',
        ]
    return []
