"""init's draft on files shaped as shops write them: the delimiter, encoding and number marks
sniffed, the timestamp chosen by fill rate then name and never a row counter, types from every
sampled value, personal data left out, line items kept one row per order."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import CliResult, make_pubkey

from backfill.look.column_kinds import CONSENT
from backfill.look.draft import NO_TIME_FORMAT, draft_mapping
from backfill.read.sniff import sniff_encoding


def write(path: Path, header: list[str], rows: list[list[str]], **options: str) -> Path:
    encoding = options.pop("encoding", "utf-8")
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, **options)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def shopify_rows() -> list[list[str]]:
    """Orders of one to three line items; order-level columns on the first row only; one
    order in three unpaid (Paid at empty)."""
    rows = []
    for order in range(30):
        created = f"2021-05-{order % 28 + 1:02d} 11:{order:02d}:12 +0200"
        paid = created if order % 3 else ""
        for item in range(order % 3 + 1):
            first = item == 0
            rows.append(
                [
                    f"#{1001 + order}",
                    "paid" if first and paid else ("pending" if first else ""),
                    paid if first else "",
                    created,
                    f"{20 + order}.50" if first else "",
                    f"Item {item}",
                    make_pubkey(order + 1),
                ]
            )
    return rows


SHOPIFY_HEADER = [
    "Name",
    "Financial Status",
    "Paid at",
    "Created at",
    "Total",
    "Lineitem name",
    "Wallet",
]


def test_a_filled_created_at_is_chosen_over_a_sparse_paid_at_and_line_items_are_filtered(
    tmp_path: Path,
) -> None:
    draft = draft_mapping(write(tmp_path / "orders_export.csv", SHOPIFY_HEADER, shopify_rows()))
    data = yaml.safe_load(draft.text)
    assert data["timestamp"]["column"] == "Created at"
    assert "# not chosen: Paid at" in draft.text and "empty on" in draft.text
    assert data["filter"] == "notna(`Financial Status`)"
    assert "A line-item export" in draft.text
    assert data["event_data"]["total"] == {"column": "Total", "type": "number"}


def test_a_row_counter_is_never_the_timestamp_and_every_row_fails(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    rows = [[str(i), make_pubkey(i % 5 + 1), f"Chair {i}", f"{i * 3}"] for i in range(1, 60)]
    source = write(tmp_path / "superstore.csv", ["Row ID", "Wallet", "Product", "Qty"], rows)
    drafted = cli("init", source, "-o", tmp_path / "map.yaml")
    assert drafted.code == 0, drafted.stderr
    text = (tmp_path / "map.yaml").read_text()
    assert "EVERY ROW FAILS" in text
    assert yaml.safe_load(text)["timestamp"]["format"] == NO_TIME_FORMAT
    validated = cli("validate", source, "-m", tmp_path / "map.yaml", "--json")
    assert validated.code == 1
    assert validated.json()["failing"] == validated.json()["read"] == 59


def test_semicolons_cp850_and_decimal_commas_are_sniffed_and_printed_as_options(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    names = ["Martín", "Berguvsvägen", "Müller", "François", "Ñandú"]
    rows = [
        [f"{i % 28 + 1:02d}/03/2019 10:15", names[i % 5], f"{i},{i % 10}0", f"1.2{i % 10}4,56"]
        for i in range(40)
    ]
    source = write(
        tmp_path / "ventas.csv",
        ["Fecha", "Producto", "Importe", "Total"],
        rows,
        delimiter=";",
        encoding="cp850",
    )
    drafted = cli("init", source, "-o", tmp_path / "map.yaml")
    assert drafted.code == 0, drafted.stderr
    text = (tmp_path / "map.yaml").read_text()
    assert "backfill plan ventas.csv -m map.yaml --delimiter ';' --encoding cp850" in text
    data = yaml.safe_load(text)
    fields = data["event_data"]
    assert fields["importe"] == {"column": "Importe", "type": "number", "decimal": ","}
    assert fields["total"] == {
        "column": "Total",
        "type": "number",
        "decimal": ",",
        "thousands": ".",
    }
    assert data["timestamp"]["column"] == "Fecha"


def test_the_encoding_hint_is_the_one_under_which_the_text_reads_as_words() -> None:
    text = "name,city\nMartín,Berguvsvägen\nJosé,Zürich\n"
    assert sniff_encoding(text.encode("cp850"))[0] == "cp850"
    assert sniff_encoding(text.encode("cp1252"))[0] == "cp1252"
    assert sniff_encoding(text.encode("utf-8"))[0] is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["536365", "C536383", "536366"] * 10, "string"),
        (["02134", "10001", "60614"] * 10, "string"),
        (["-1,265.00", "12.50", "3,000.10"] * 10, "number"),
    ],
)
def test_a_column_is_typed_from_every_sampled_value(
    tmp_path: Path, values: list[str], expected: str
) -> None:
    rows = [
        [f"2023-01-{i % 28 + 1:02d}T10:00:00Z", make_pubkey(i + 1), v] for i, v in enumerate(values)
    ]
    draft = draft_mapping(write(tmp_path / "o.csv", ["created", "wallet", "Amount"], rows))
    spec = yaml.safe_load(draft.text)["event_data"]["amount"]
    assert spec["type"] == expected
    if expected == "number":
        assert spec["thousands"] == ","


def test_personal_data_is_left_out_with_the_reason(tmp_path: Path) -> None:
    header = ["created", "wallet", "Billing Name", "Email", "Phone", "Street", "Zip", "Sku"]
    rows = [
        [
            f"2023-01-{i % 28 + 1:02d}T10:00:00Z",
            make_pubkey(i + 1),
            f"Ana Souza{'' if i % 2 else 'n'}",
            f"ana{i}@example.com",
            f"+33 6 10 82 64 {i:02d}",
            f"{i} rue de Berri",
            f"7500{i % 10}",
            f"SKU-{i % 4}",
        ]
        for i in range(30)
    ]
    draft = draft_mapping(write(tmp_path / "o.csv", header, rows))
    data = yaml.safe_load(draft.text)
    assert set(data["event_data"]) == {"sku"}
    for field in ("billingName", "email", "phone", "street", "zip"):
        line = next(x for x in draft.text.splitlines() if x.startswith(f"  # {field}:"))
        assert CONSENT in line
