"""init's judgement on exports shaped as Stripe, Shopify (.csv and .xlsx), PayPal and
WooCommerce write them: the wallet placeholder is the buyer's column (a customer id, then an
e-mail; never an address, zip or card field), the status filter keeps the orders that
happened and names what it drops, an order id column named `id` or Shopify's `Name` is
proposed as `id:`, and PayPal's `-1,265.00` is a number with `thousands: ","`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from conftest import CliResult, SandboxProcess
from export_corpus import write_fixture
from platform_exports import (
    drafted_then_edited,
    sent_events,
    shopify_xlsx,
    wallet_lookup,
    with_mixed_statuses,
)

from backfill.look.draft import _buyer_column
from backfill.mapping.spec import mapping_from_dict

Cli = Callable[..., CliResult]


def _draft(cli: Cli, path: Path) -> str:
    result = cli("init", path)
    assert result.code == 0, result.stderr
    return result.stdout


def _commented_filter(text: str) -> str:
    return next(x for x in text.splitlines() if x.startswith('# filter: "'))[len("# filter: ") :]


CASES = {  # export -> (wallet placeholder, id, the values kept, the values dropped)
    "stripe": ("Customer ID", "id", ["Paid"], ["Failed", "Refunded"]),
    "paypal": ("From Email Address", "Transaction ID", ["Completed"], ["Pending", "Denied"]),
    "woocommerce": ("customer_id", "order_id", ["completed"], ["failed", "processing",
                                                               "refunded"]),
}  # fmt: skip


@pytest.mark.parametrize("platform", list(CASES))
def test_the_buyer_the_id_and_the_orders_to_keep(cli: Cli, tmp_path: Path, platform: str) -> None:
    path, _ = with_mixed_statuses(platform, tmp_path)
    text = _draft(cli, path)
    data = yaml.safe_load(text)
    wallet, order_id, kept, dropped = CASES[platform]
    assert data["user"]["pubKey"] == wallet
    assert data["id"] == order_id
    assert "filter" not in data  # proposed, not switched on: it changes what is sent
    proposed = yaml.safe_load(_commented_filter(text))
    assert proposed.endswith(f"== {kept[0]!r}")
    said = next(x for x in text.splitlines() if "# happened, keep" in x)
    assert said.startswith(f"# happened, keep {', '.join(kept)} (drops ")
    assert sorted(said.split("(drops ")[1].rstrip("):").split(", ")) == sorted(dropped)
    mapping_from_dict({**data, "filter": proposed})  # the proposal is a filter that loads


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_shopify_as_csv_and_xlsx(cli: Cli, tmp_path: Path, kind: str) -> None:
    path = shopify_xlsx(tmp_path) if kind == "xlsx" else tmp_path / "orders_export.csv"
    if kind == "csv":
        write_fixture("shopify", tmp_path)
    text = _draft(cli, path)
    data = yaml.safe_load(text)
    assert data["user"]["pubKey"] == "Email"
    assert data["id"] == "Name"
    assert _commented_filter(text) == (
        "\"notna(`Financial Status`) and `Financial Status` == 'paid'\""
    )
    assert "drops pending" in text


def test_paypal_amounts_with_thousands_are_numbers(cli: Cli, tmp_path: Path) -> None:
    path, _ = with_mixed_statuses("paypal", tmp_path)
    data = yaml.safe_load(_draft(cli, path))
    assert data["event_data"]["gross"] == {"column": "Gross", "type": "number", "thousands": ","}


@pytest.mark.parametrize(
    ("columns", "buyer"),
    [(["Card Address Zip", "Billing Address2", "Card ID", "Customer Email", "Customer ID"],
      "Customer ID"),
     (["Billing Address2", "Shipping Zip", "Email", "Billing Name"], "Email"),
     (["To Email Address", "From Email Address"], "From Email Address"),
     (["Card Name", "Card Address Line1", "Buyer"], "Buyer")],
)  # fmt: skip
def test_the_wallet_placeholder_is_never_an_address_zip_or_card(
    columns: list[str], buyer: str
) -> None:
    table = pa.table({name: ["x"] for name in columns})
    assert _buyer_column(table, set()) == buyer


def test_stripe_with_the_proposed_filter_sends_only_paid_charges(
    cli: Cli, tmp_path: Path, sandbox: SandboxProcess
) -> None:
    fixture = write_fixture("stripe", tmp_path / "truth")
    path, statuses = with_mixed_statuses("stripe", tmp_path)
    text = _draft(cli, path)

    def edit(data: dict[str, Any]) -> None:
        data["user"] = wallet_lookup("Customer ID")
        data["filter"] = yaml.safe_load(_commented_filter(text))

    mapping = drafted_then_edited(cli, path, tmp_path / "map.yaml", edit)
    paid = [o for o, s in zip(fixture.orders, statuses) if s == "Paid"]
    planned = cli("plan", path, "-m", mapping, "--json").json()
    assert planned["would_send"] == len(paid)
    assert planned["filtered"] == len(statuses) - len(paid)
    ran = cli("run", path, "-m", mapping, "--endpoint", sandbox.endpoint(), "--rate", "0",
              "--yes", "--json")  # fmt: skip
    assert ran.code == 0, ran.stdout + ran.stderr
    rehearsed = cli("run", path, "-m", mapping, "--sandbox", "--yes", "--json")
    assert rehearsed.json()["accepted"] == len(paid)
    amount_field = next(k for k, v in yaml.safe_load(mapping.read_text())["event_data"].items()
                        if isinstance(v, dict) and v.get("column") == "Amount")  # fmt: skip
    from export_corpus import Fixture

    expected = Fixture("stripe", path.name, "Customer ID", "Amount", paid).expected()
    assert sent_events(sandbox, amount_field) == expected
