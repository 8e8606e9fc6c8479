"""The bugs met on real exports, each on a fixture written as its platform writes it, and
plan = run: `plan --json` then `run --sandbox` on every end-to-end fixture, count by count.

Expected instants come from `datetime`/`zoneinfo`, never from backfill's code.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import SAMPLE, CliResult, make_pubkey

from backfill.mapping.times import OUT_OF_RANGE

# Shopify's order export: one row per line item; the order's own columns filled on its
# first row only; `Created at` on every row, with a space before the offset.
SHOPIFY_COLUMNS = [
    "Name", "Email", "Financial Status", "Paid at", "Fulfillment Status", "Accepts Marketing",
    "Currency", "Subtotal", "Shipping", "Taxes", "Total", "Discount Code", "Created at",
    "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku", "Billing Name",
    "Billing Zip", "Payment Method", "Id", "Tags",
]  # fmt: skip
SHOPIFY_MAPPING = """\
event_name: STORE_ORDER
id: Name
timestamp: {column: Created at, timezone: America/New_York}
user: {pubKey: {column: Email, lookup: wallets.csv, key: email, value: wallet}}
event_data:
  orderId: Name
  orderAmount: {column: Total, type: number}
filter: "`Financial Status` == 'paid'"
"""
# Without the filter every line item maps (its Total empty), so the order's id repeats.
EVERY_LINE_MAPPING = SHOPIFY_MAPPING.replace(
    "{column: Total, type: number}", "{column: Total, type: number, optional: true}"
).replace("filter: \"`Financial Status` == 'paid'\"\n", "")


def shopify_orders(folder: Path, orders: int = 12) -> tuple[Path, list[dict[str, Any]]]:
    """orders_export_1.csv with 1 to 3 line items an order, the wallets table beside it,
    and each order's expected event (computed with zoneinfo)."""
    rows, expected, wallets = [], [], []
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    for number in range(orders):
        name, email = f"#{1001 + number}", f"buyer{number}@example.com"
        created = dt.datetime(2021, 3, 27 + number % 3, 23, 30, 5, tzinfo=berlin)
        stamp = created.strftime("%Y-%m-%d %H:%M:%S %z")  # 2021-03-28 23:30:05 +0200
        total = f"{19 + number}.90"
        wallets.append({"email": email, "wallet": make_pubkey(number)})
        for item in range(1 + number % 3):
            first = item == 0
            rows.append(
                {
                    "Name": name, "Email": email,
                    "Financial Status": "paid" if first else "",
                    "Paid at": stamp if first else "",
                    "Fulfillment Status": "fulfilled" if first else "",
                    "Accepts Marketing": "no" if first else "", "Currency": "EUR" if first else "",
                    "Subtotal": total if first else "", "Shipping": "0.00" if first else "",
                    "Taxes": "3.19" if first else "", "Total": total if first else "",
                    "Discount Code": "", "Created at": stamp, "Lineitem quantity": "1",
                    "Lineitem name": f"Mug {item}", "Lineitem price": "9.95",
                    "Lineitem sku": f"MUG-{item}", "Billing Name": "Ana Martín" if first else "",
                    "Billing Zip": "'01067" if first else "",
                    "Payment Method": "Shopify Payments" if first else "",
                    "Id": str(3_800_000_000_000 + number) if first else "", "Tags": "",
                }
            )  # fmt: skip
        expected.append(
            {
                "timestamp": int(created.timestamp()) * 1000,
                "pubKey": make_pubkey(number),
                "orderId": name,
                "orderAmount": float(total),
            }
        )
    source = folder / "orders_export_1.csv"
    write_csv(source, SHOPIFY_COLUMNS, rows)
    write_csv(folder / "wallets.csv", ["email", "wallet"], wallets)
    (folder / "map.yaml").write_text(SHOPIFY_MAPPING, encoding="utf-8")
    return source, expected


def small_mapping(folder: Path, timestamp: str, pubkey: str, event_data: str) -> Path:
    mapping = folder / "map.yaml"
    mapping.write_text(
        f"event_name: ORDER\ntimestamp: {{column: {timestamp}}}\nuser: {{pubKey: {pubkey}}}\n"
        f"event_data: {{{event_data}}}\n",
        encoding="utf-8",
    )
    return mapping


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# --- bug 2: Shopify's `2021-05-13 11:01:12 +0200` with a timezone --------------------------


def test_shopify_times_with_a_spaced_offset_keep_it_under_any_timezone(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    source, expected = shopify_orders(tmp_path)
    mapping = tmp_path / "map.yaml"
    validated = cli("validate", source, "-m", mapping, "--json")
    assert "Traceback" not in validated.stderr
    assert validated.code == 0, validated.stderr
    assert validated.json()["would_send"] == len(expected)
    preview = cli("preview", source, "-m", mapping, "-n", "2")
    assert preview.code == 0, preview.stderr
    first = json.loads(preview.stdout.split(":\n", 1)[1].split("\nrow ")[0])
    assert first["timestamp"] == expected[0]["timestamp"]
    ran = cli("run", source, "-m", mapping, "--sandbox", "--json", "--quiet")
    assert ran.code == 0, ran.stderr
    assert ran.json()["accepted"] == len(expected)


# --- bug 3: the plan is a preview of the run ---------------------------------------------------


def fixture_cases(tmp_path: Path) -> list[tuple[str, Path, Path, tuple[str, ...]]]:
    """Every end-to-end fixture: (name, source, mapping, extra options)."""
    shop = tmp_path / "shop"
    shop.mkdir()
    shopify, _ = shopify_orders(shop)
    repeated = tmp_path / "repeated"
    repeated.mkdir()
    shopify_ids, _ = shopify_orders(repeated, orders=30)
    (repeated / "map.yaml").write_text(EVERY_LINE_MAPPING, encoding="utf-8")
    return [
        ("sample csv", SAMPLE / "orders.csv", SAMPLE / "map.yaml", ()),
        ("sample parquet", SAMPLE / "orders.parquet", SAMPLE / "map.yaml", ()),
        ("sample, --limit", SAMPLE / "orders.csv", SAMPLE / "map.yaml", ("--limit", "25")),
        ("shopify line items, filtered", shopify, shop / "map.yaml", ()),
        ("shopify line items, ids repeat", shopify_ids, repeated / "map.yaml", ()),
        ("ids repeat, --limit", shopify_ids, repeated / "map.yaml", ("--limit", "7")),
    ]


PLAN_TO_RUN = {  # plan's count -> run's count of the same rows
    "read": "read",
    "requests": "accepted",
    "filtered": "filtered",
    "failing": "failed",
    "already_sent": "already_sent",
}


def test_plan_counts_what_run_does_on_every_fixture(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    for name, source, mapping, extra in fixture_cases(tmp_path):
        planned = cli("plan", source, "-m", mapping, "--json", *extra)
        assert planned.code in (0, 1), (name, planned.stderr)
        ran = cli("run", source, "-m", mapping, "--sandbox", "--json", "--quiet", *extra)
        assert ran.code in (0, 1), (name, ran.stderr)
        plan_counts, run_counts = planned.json(), ran.json()
        assert {key: plan_counts[key] for key in PLAN_TO_RUN} == {
            key: run_counts[value] for key, value in PLAN_TO_RUN.items()
        }, name
        assert run_counts["already_done"] == 0, name


def test_a_line_item_export_with_a_repeating_id_plans_the_run_it_gets(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    source, _ = shopify_orders(tmp_path, orders=30)
    mapping = tmp_path / "map.yaml"
    mapping.write_text(EVERY_LINE_MAPPING, encoding="utf-8")
    lines = sum(1 + number % 3 for number in range(30))
    validated = cli("validate", source, "-m", mapping, "--json").json()
    assert (validated["read"], validated["would_send"]) == (lines, 30)
    reasons = {reason["reason"]: reason["count"] for reason in validated["reasons"]}
    assert reasons["duplicate id"] == lines - 30
    assert cli("plan", source, "-m", mapping, "--json").json()["requests"] == 30


# --- bug 4 (validation side): a timestamp that reads as 1970 does not validate --------------


def test_a_row_counter_taken_as_the_timestamp_fails_every_row(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    source = tmp_path / "Sample - Superstore.parquet"
    count = 101
    pq.write_table(
        pa.table(
            {
                "Row ID": pa.array(range(1, count + 1), pa.int64()),
                "Order ID": [f"CA-2016-{152156 + i}" for i in range(count)],
                "Order Date": [f"11/{1 + i % 28}/2016" for i in range(count)],
                "wallet": [make_pubkey(i) for i in range(count)],
            }
        ),
        source,
    )
    mapping = small_mapping(tmp_path, "Row ID", "wallet", "orderId: Order ID")
    result = cli("validate", source, "-m", mapping, "--json")
    assert result.code == 1
    assert (result.json()["would_send"], result.json()["failing"]) == (0, count)
    assert [r["reason"] for r in result.json()["reasons"]] == [
        f"timestamp (column 'Row ID') {OUT_OF_RANGE}"
    ]


# --- names, rehearsals and preview -----------------------------------------------------------


def test_a_rehearsal_is_quick_repeatable_and_named_after_the_source(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    source, mapping = tmp_path / "Sample - Superstore.csv", tmp_path / "map.yaml"
    source.write_bytes((SAMPLE / "orders.csv").read_bytes())
    mapping.write_bytes((SAMPLE / "map.yaml").read_bytes())
    real_report = tmp_path / "Sample - Superstore.csv.failures.jsonl"
    real_report.write_text("keep me\n", encoding="utf-8")
    runs = [cli("run", source.name, "-m", mapping, "--sandbox", "--json") for _ in range(2)]
    assert [r.code for r in runs] == [1, 1], runs[1].stderr  # the sample has bad rows
    assert runs[0].json()["accepted"] == runs[1].json()["accepted"] > 0
    assert runs[1].json()["already_done"] == 0  # started fresh, not resumed
    assert (tmp_path / "Sample - Superstore.csv.sandbox.failures.jsonl").exists()
    assert (tmp_path / "Sample - Superstore.csv.sandbox.state").exists()
    assert real_report.read_text(encoding="utf-8") == "keep me\n"


def test_a_glob_and_a_folder_name_their_records_by_their_stem(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    for part in ("orders-2023.csv", "orders-2024.csv"):
        (exports / part).write_bytes((SAMPLE / "orders.csv").read_bytes())
    for source, name in (("exports/orders-*.csv", "orders"), ("exports", "exports")):
        ran = cli("run", source, "-m", SAMPLE / "map.yaml", "--sandbox", "--json", "--quiet")
        assert ran.code == 1, ran.stderr
        assert Path(ran.json()["report"]).name == f"{name}.sandbox.failures.jsonl"
        assert (tmp_path / f"{name}.sandbox.state").exists()


def test_a_rehearsal_never_writes_over_a_real_runs_records(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    report = tmp_path / "failures.jsonl"
    report.write_text("", encoding="utf-8")
    (tmp_path / "failures.jsonl.state").write_text("{}\n", encoding="utf-8")
    ran = cli("run", SAMPLE / "orders.csv", "-m", SAMPLE / "map.yaml", "--sandbox",
              "--report", report)  # fmt: skip
    assert ran.code == 2
    assert "is the report of a real run" in ran.stderr
    assert (tmp_path / "failures.jsonl.state").read_text() == "{}\n"


def test_preview_shows_at_most_n_failing_rows_and_counts_the_rest(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    # a fresh draft's mistake: every row fails (an order id is no wallet)
    mapping = small_mapping(tmp_path, "created_at", "order_id", "orderId: order_id")
    shown = cli("preview", SAMPLE / "orders.csv", "-m", mapping, "-n", "3")
    assert shown.code == 0, shown.stderr
    assert shown.stdout.count("FAILS:") == 3
    assert "... and 2,997 more failing rows" in shown.stdout


# --- bug 6: a cp850 file's hint names cp850 ----------------------------------------------------


def test_a_cp850_file_is_hinted_as_cp850_and_then_reads_its_names(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    names = ["Martín Gómez", "Åsa Öberg", "José Muñoz", "Björn Ängström"]
    streets = ["Calle Peñalara 3", "Berguvsvägen 8", "Avenida Castellón 12", "Storgatan 5"]
    source = tmp_path / "ventas.csv"
    lines = ["order_id,created_at,wallet,customer,street,total"]
    for i, (name, street) in enumerate(zip(names, streets)):
        lines.append(f"V-{i},2019-06-0{i + 1}T10:00:00Z,{make_pubkey(i)},{name},{street},1{i}.5")
    source.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp850"))
    data = "orderId: order_id, customer: customer, street: street"
    mapping = small_mapping(tmp_path, "created_at", "wallet", data)
    first = cli("validate", source, "-m", mapping, "--json")
    reasons = [reason["reason"] for reason in first.json()["reasons"]]
    hint = "it looks like cp850: try --encoding cp850, or save the file as UTF-8"
    assert reasons == [f"CSV line skipped: column 'customer' is not UTF-8 text; {hint}"]
    shown = cli("preview", source, "-m", mapping, "-n", "4", "--encoding", "cp850")
    assert shown.code == 0, shown.stderr
    for text in names + streets:
        assert json.dumps(text, ensure_ascii=False) in shown.stdout


# --- many files: only the mapping's columns must be in every file ---------------------------


def test_two_years_of_shopify_exports_with_other_columns_send_as_one_source(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    older, expected = shopify_orders(exports, orders=6)
    older.rename(exports / "orders_2020.csv")
    newer_columns = [*SHOPIFY_COLUMNS[:-2], "Risk Level", "Source", "Lineitem discount", "Phone"]
    with (exports / "orders_2020.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        del row["Id"], row["Tags"]
        row["Name"] = row["Name"].replace("#1", "#2")  # next year's orders
        row.update({"Risk Level": "Low", "Source": "web", "Lineitem discount": "0", "Phone": ""})
    write_csv(exports / "orders_2021.csv", newer_columns, rows)  # 4 columns differ
    mapping = exports / "map.yaml"
    ran = cli("run", "exports/orders_*.csv", "-m", mapping, "--sandbox", "--json", "--quiet")
    assert ran.code == 0, ran.stderr
    assert ran.json()["accepted"] == 2 * len(expected)

    (exports / "orders_2021.csv").write_text(
        (exports / "orders_2021.csv").read_text(encoding="utf-8").replace("Created at", "Date"),
        encoding="utf-8",
    )
    refused = cli("validate", "exports/orders_*.csv", "-m", mapping)
    assert refused.code == 2
    assert "orders_2021.csv: has no column 'Created at', which the mapping" in refused.stderr


def test_a_rehearsals_rerun_can_be_repeated_too(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    ran = cli("run", SAMPLE / "orders.csv", "-m", SAMPLE / "map.yaml", "--sandbox", "--quiet")
    assert ran.code == 1, ran.stderr
    report = tmp_path / "orders.csv.sandbox.failures.jsonl"
    reruns = [cli("rerun", report, "-m", SAMPLE / "map.yaml", "--sandbox", "--json", "--quiet")
              for _ in range(2)]  # fmt: skip
    assert [r.code for r in reruns] == [1, 1], reruns[1].stderr
    assert reruns[0].json()["failed"] == reruns[1].json()["failed"] > 0
    assert (tmp_path / "orders.csv.sandbox.rerun.jsonl.state").exists()
