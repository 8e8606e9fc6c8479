"""`backfill init`: a drafted mapping that finds the timestamp, its format and the wallet,
keeps leading zeros, explains itself, and validates (exit 0 or 1, never 2).

Run on the bundled sample and on a real export no one here wrote
(../shared/data/superstore.csv: dd/mm/yy dates, zip codes with leading zeros, quoted commas,
no wallet column; the tests add one where they need it).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, SAMPLE, CliResult, make_pubkey

from backfill.look.draft import draft_mapping, field_name, scalar
from backfill.look.explore import events_frame
from backfill.look.time_guess import candidate_formats
from backfill.mapping.json_schema import as_json_document, mapping_schema
from backfill.mapping.spec import load_mapping, mapping_from_dict
from backfill.read import sampling

# CI has ../shared beside the clone; a worktree at <repo>/wt/<branch> finds it one level up.
SUPERSTORE = next(
    (
        base / "shared" / "data" / "superstore.csv"
        for base in (ROOT.parent, ROOT.parent.parent)
        if (base / "shared" / "data" / "superstore.csv").exists()
    ),
    ROOT.parent / "shared" / "data" / "superstore.csv",
)


def drafted(text: str) -> dict:
    data = yaml.safe_load(text)
    jsonschema.validate(as_json_document(data), mapping_schema())
    mapping_from_dict(data)
    return data


def write_draft(cli: Callable[..., CliResult], source: Path, out: Path) -> dict:
    result = cli("init", source, "-o", out)
    assert result.code == 0, result.stderr
    assert result.stdout == ""
    return drafted(out.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["orders.csv", "orders.parquet"])
def test_init_on_the_sample_finds_timestamp_wallet_and_keeps_zeros(
    cli: Callable[..., CliResult], tmp_path: Path, name: str
) -> None:
    source = SAMPLE / name
    data = write_draft(cli, source, tmp_path / "map.yaml")
    assert data["timestamp"] == {"column": "created_at", "unit": "auto", "timezone": "UTC"}
    assert data["user"] == {"pubKey": "wallet"}
    assert data["id"] == "order_id"  # distinct in the sample: the ledger's key
    assert data["event_data"]["sku"] == {"column": "sku", "type": "string"}
    assert data["event_data"]["quantity"]["type"] == "number"
    validated = cli("validate", source, "-m", tmp_path / "map.yaml", "--json")
    assert validated.code in (0, 1), validated.stderr
    assert validated.json()["would_send"] > 2_600
    skus = events_frame(source, tmp_path / "map.yaml")["sku"]
    assert skus.str.len().eq(5).all() and skus.str.startswith("0").any()


def superstore_with_wallets(path: Path) -> Path:
    """superstore.csv with a wallet per customer, written back with csv's own quoting."""
    with SUPERSTORE.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    customers = {c: i for i, c in enumerate(dict.fromkeys(r[5] for r in rows[1:]))}
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*rows[0], "Wallet"])
        writer.writerows([*row, make_pubkey(customers[row[5]] + 1)] for row in rows[1:])
    return path


def test_init_on_superstore_reads_day_first_dates_and_keeps_zip_codes(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    out = tmp_path / "map.yaml"
    data = write_draft(cli, SUPERSTORE, out)
    text = out.read_text(encoding="utf-8")
    assert data["timestamp"]["column"] == "Order Date"
    assert data["timestamp"]["format"] == "%d/%m/%y"
    assert "AMBIGUOUS" not in text
    # a postcode is personal data: drafted as text (leading zeros kept) but left out
    assert "postalCode" not in data["event_data"]
    assert "  # postalCode: {column: Postal Code, type: string}" in text
    assert "a postcode: personal data: sending it to a third party needs a reason" in text
    assert "# also parses as times: Ship Date" in text
    assert "id" not in data  # an order on several lines: its id repeats
    assert "# id: Order ID   # not proposed: " in text
    assert "every event is sent at midnight" in text
    # no wallet column: the draft names the buyer column and says that every row fails
    assert data["user"]["pubKey"] == "Customer ID"
    assert "No column holds Solana public keys" in text
    validated = cli("validate", SUPERSTORE, "-m", out, "--json")
    assert validated.code == 1, validated.stderr
    assert validated.json()["failing"] == validated.json()["read"] == 10_194


def test_init_on_superstore_with_wallets_maps_every_row_exactly(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    source = superstore_with_wallets(tmp_path / "superstore_wallets.csv")
    data = write_draft(cli, source, tmp_path / "map.yaml")
    assert data["user"] == {"pubKey": "Wallet"}
    validated = cli("validate", source, "-m", tmp_path / "map.yaml", "--json")
    assert validated.code == 0, validated.stdout + validated.stderr
    assert validated.json()["would_send"] == 10_194
    events = events_frame(source, tmp_path / "map.yaml")
    raw = pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert "postalCode" not in events.columns and "customerName" not in events.columns
    expected = pd.to_datetime(raw["Order Date"], format="%d/%m/%y", utc=True)
    assert events["timestamp"].tolist() == expected.tolist()


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def wallet_rows(dates: list[str]) -> list[list[str]]:
    return [[date, make_pubkey(i % 7 + 1), f"{i % 3}"] for i, date in enumerate(dates)]


def test_when_day_first_and_month_first_both_parse_the_draft_says_so(tmp_path: Path) -> None:
    dates = [f"{d:02d}/{m:02d}/2023 10:{d:02d}" for m in range(1, 13) for d in range(1, 13)]
    source = write_csv(tmp_path / "o.csv", ["when", "wallet", "n"], wallet_rows(dates))
    draft = draft_mapping(source)
    line = next(x for x in draft.text.splitlines() if x.strip().startswith("format:"))
    assert "AMBIGUOUS" in line and "also parses as" in line
    assert draft.timestamp is not None and draft.timestamp.format == "%d/%m/%Y %H:%M"


def test_month_first_dates_are_read_month_first(tmp_path: Path) -> None:
    dates = [f"{m}/{d}/2023 3:15 PM" for m in range(1, 13) for d in (5, 13, 28)]
    source = write_csv(tmp_path / "o.csv", ["Order Time", "wallet", "n"], wallet_rows(dates))
    draft = draft_mapping(source)
    assert draft.timestamp is not None
    assert draft.timestamp.format == "%m/%d/%Y %I:%M %p"
    assert "month first: every sampled value parses this way" in draft.text


def test_epoch_milliseconds_get_their_unit(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": [f"{i:04d}" for i in range(500)],
            "ts": pa.array([1_700_000_000_000 + i * 60_000 for i in range(500)], pa.int64()),
            "buyer": [make_pubkey(i % 9 + 1) for i in range(500)],
            "paid": [i % 2 == 0 for i in range(500)],
        }
    )
    pq.write_table(table, tmp_path / "o.parquet")
    data = drafted(draft_mapping(tmp_path / "o.parquet").text)
    assert data["timestamp"]["column"] == "ts" and data["timestamp"]["unit"] == "ms"
    assert data["user"]["pubKey"] == "buyer"
    assert data["event_data"]["id"]["type"] == "string"
    assert data["event_data"]["paid"]["type"] == "boolean"


def test_free_text_and_many_names_are_commented_out_two_values_suggest_a_boolean(
    tmp_path: Path,
) -> None:
    rows = [
        [
            f"2024-01-{i % 28 + 1:02d}T10:00:00Z",
            make_pubkey(i % 5 + 1),
            f"Customer {i} Person",
            "A long comment written by a customer about their order, number " + str(i),
            "yes" if i % 3 else "no",
            "gift" if i % 2 else "self",
            str(i % 7),
        ]
        for i in range(400)
    ]
    header = ["created", "wallet", "Customer Name", "note", "newsletter", "kind", "qty"]
    draft = draft_mapping(write_csv(tmp_path / "o.csv", header, rows))
    data = drafted(draft.text)
    assert "customerName" not in data["event_data"] and "note" not in data["event_data"]
    assert "  # customerName: {column: Customer Name" in draft.text
    assert "  # note: {column: note" in draft.text
    assert data["event_data"]["newsletter"]["type"] == "boolean"
    assert data["event_data"]["kind"]["type"] == "string"
    assert "# two values: a boolean? {column: kind, type: boolean" in draft.text
    assert data["event_data"]["qty"]["type"] == "number"


def test_a_large_csv_is_sampled_across_the_file_and_quoted_newlines_do_not_shift_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Days up to 12 in the first half and up to 28 in the second: only a sample that
    reaches past the head sees that the dates are day-first. Every sampled row is a real row
    of the file, although many values hold quoted line breaks."""
    monkeypatch.setattr(sampling, "WHOLE_FILE_BYTES", 1 << 16)
    rows = []
    for i in range(20_000):
        day = i % 12 + 1 if i < 10_000 else i % 28 + 1
        note = f"line one\nline two, {i}" if i % 3 == 0 else f"plain {i % 5}"
        rows.append([f"{i:06d}", f"{day:02d}/{i % 12 + 1:02d}/2022", make_pubkey(i % 50 + 1), note])
    source = write_csv(tmp_path / "big.csv", ["order", "date", "wallet", "note"], rows)
    draft = draft_mapping(source)
    assert "stretches at evenly spaced places" in draft.sample.how
    sampled = draft.sample.table.to_pylist()
    assert len(sampled) > 1_500
    assert max(int(r["order"]) for r in sampled) > 15_000
    real = {tuple(row) for row in rows}
    assert all((r["order"], r["date"], r["wallet"], r["note"]) in real for r in sampled)
    assert draft.timestamp is not None and draft.timestamp.format == "%d/%m/%Y"
    assert "AMBIGUOUS" not in draft.text


def test_init_drafts_a_mapping_for_a_glob_of_parts(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    for part in ("orders-1.csv", "orders-2.csv"):
        (tmp_path / part).write_bytes((SAMPLE / "orders.csv").read_bytes())
    drafted = cli("init", "orders-*.csv")
    assert drafted.code == 0, drafted.stderr
    assert yaml.safe_load(drafted.stdout)["user"] == {"pubKey": "wallet"}
    assert "#   backfill plan orders-*.csv -m map.yaml" in drafted.stdout


def test_init_prints_to_stdout_and_never_overwrites_without_force(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    printed = cli("init", SAMPLE / "orders.csv", "--event-name", "STORE_ORDER")
    assert printed.code == 0 and drafted(printed.stdout)["event_name"] == "STORE_ORDER"
    out = tmp_path / "map.yaml"
    out.write_text("mine\n")
    refused = cli("init", SAMPLE / "orders.csv", "-o", out)
    assert refused.code == 2 and "--force" in refused.stderr
    assert out.read_text() == "mine\n"
    forced = cli("init", SAMPLE / "orders.csv", "-o", out, "--force")
    assert forced.code == 0
    assert load_mapping(out).timestamp_column == "created_at"


def test_init_on_a_missing_file_is_a_clear_error(cli: Callable[..., CliResult]) -> None:
    result = cli("init", "nope.csv")
    assert result.code == 2
    assert result.stderr.startswith("Error: nope.csv: no such file")


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("Order Date", "orderDate"),
        ("Country/Region", "countryRegion"),
        ("order_id", "orderId"),
        ("createdAt", "createdAt"),
        ("2nd line", "f2ndLine"),
    ],
)
def test_field_names_are_camel_case(column: str, expected: str) -> None:
    assert field_name(column, set()) == expected


@pytest.mark.parametrize(
    "text", ["yes", "Product Name", "a: b", "x #y", "-1", "'q'", 'say "hi"', "{x}"]
)
def test_scalars_read_back_as_the_same_text(text: str) -> None:
    assert yaml.safe_load(f"k: {scalar(text)}") == {"k": text}
    assert yaml.safe_load(f"k: {{c: {scalar(text)}}}") == {"k": {"c": text}}


def test_candidate_formats_follow_the_value_shape() -> None:
    assert candidate_formats("03/01/19") == ["%d/%m/%y", "%m/%d/%y"]
    assert candidate_formats("2024.03.05 14:22:31") == ["%Y.%m.%d %H:%M:%S"]
    assert candidate_formats("3-5-2024 2:05 pm") == ["%d-%m-%Y %I:%M %p", "%m-%d-%Y %I:%M %p"]
    assert candidate_formats("Tuesday") == []


def test_a_gzip_csv_is_sampled_from_its_head(tmp_path: Path) -> None:
    import gzip

    plain = (SAMPLE / "orders.csv").read_bytes()
    source = tmp_path / "orders.csv.gz"
    source.write_bytes(gzip.compress(plain))
    draft = draft_mapping(source)
    assert "a gzip file cannot be sought in" in draft.sample.how
    assert drafted(draft.text)["timestamp"]["column"] == "created_at"


def test_the_draft_suggests_a_status_filter_and_makes_mostly_empty_columns_optional() -> None:
    draft = draft_mapping(SAMPLE / "orders.csv")
    assert "# filter: \"status == 'paid'\"" in draft.text
    assert drafted(draft.text)["event_data"]["coupon"]["optional"] is True


def test_a_file_without_times_or_wallets_still_drafts_a_mapping_that_loads(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "o.csv", ["name", "qty"], [["a", "1"], ["b", "2"]])
    out = tmp_path / "map.yaml"
    data = write_draft(cli, source, out)
    assert "No column reads as plausible order times" in out.read_text()
    assert data["event_data"]
    validated = cli("validate", source, "-m", out, "--json")
    assert validated.code == 1, validated.stderr
    assert validated.json()["failing"] == validated.json()["read"] == 2


def test_a_file_with_only_a_time_and_a_wallet_drafts_a_constant_field(tmp_path: Path) -> None:
    rows = [[f"2024-01-0{i + 1}T10:00:00Z", make_pubkey(i + 1)] for i in range(5)]
    data = drafted(draft_mapping(write_csv(tmp_path / "o.csv", ["at", "wallet"], rows)).text)
    assert data["event_data"] == {"channel": {"value": "backfill"}}
