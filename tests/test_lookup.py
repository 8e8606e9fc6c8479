"""Lookup tables: a field's value found by key in a second file beside the mapping.

Unit tests of the join and of the rules a mapping's table must keep; an end-to-end run of
the bundled sample whose orders name the customer, not the wallet."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import SAMPLE, CliResult, SampleOutcome, SandboxProcess, make_pubkey

from backfill.books.report import read_report
from backfill.errors import MappingError
from backfill.look.validate import validate
from backfill.mapping.events import EventMapper
from backfill.mapping.spec import load_mapping
from backfill.read.source import numbered

WALLETS = {f"C{n}": make_pubkey(n) for n in range(1, 6)}


def write_table(path: Path, rows: dict[str, str], key: str = "customer_id") -> Path:
    lines = [f"{key},wallet"] + [f"{k},{v}" for k, v in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_mapping(folder: Path, pubkey: Any, **extra: Any) -> Path:
    data = {
        "event_name": "STORE_ORDER",
        "timestamp": "created_at",
        "user": {"pubKey": pubkey},
        "event_data": {"orderId": "order_id", **extra},
    }
    path = folder / "map.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def lookup_spec(table: str = "wallets.csv") -> dict[str, str]:
    return {"column": "customer", "lookup": table, "key": "customer_id", "value": "wallet"}


def orders(customers: list[str | None]) -> pa.Table:
    return pa.table(
        {
            "order_id": [f"O{i}" for i in range(len(customers))],
            "created_at": ["2024-03-05T14:22:31.123Z"] * len(customers),
            "customer": customers,
        }
    )


def test_each_row_takes_the_wallet_of_its_customer(tmp_path: Path) -> None:
    write_table(tmp_path / "wallets.csv", WALLETS)
    mapping = load_mapping(write_mapping(tmp_path, lookup_spec()))

    mapped = EventMapper(mapping, "orders.csv").map_chunk(numbered(0, orders(["C3", "C1", "C3"])))

    pubkeys = [event.pubkey for _, event in mapped.events()]
    assert pubkeys == [WALLETS["C3"], WALLETS["C1"], WALLETS["C3"]]
    assert mapped.failures == []


def test_a_customer_the_table_lacks_fails_the_row_naming_the_key(tmp_path: Path) -> None:
    write_table(tmp_path / "wallets.csv", WALLETS)
    mapping = load_mapping(write_mapping(tmp_path, lookup_spec()))

    mapped = EventMapper(mapping, "orders.csv").map_chunk(
        numbered(0, orders(["C1", "DP-13000", None, "C2"]))
    )

    assert mapped.event_rows.tolist() == [0, 3]
    unknown, empty = mapped.failures
    assert unknown.row == 1
    assert "no wallet for customer_id 'DP-13000'" in unknown.error
    assert unknown.record["customer"] == "DP-13000"  # the original value, for rerun
    assert empty.row == 2 and "is missing" in empty.error and "no wallet" not in empty.error


def test_a_key_with_two_values_is_a_mapping_error_with_an_example(tmp_path: Path) -> None:
    table = tmp_path / "wallets.csv"
    table.write_text(
        f"customer_id,wallet\nC1,{WALLETS['C1']}\nC2,{WALLETS['C2']}\nC1,{WALLETS['C3']}\n",
        encoding="utf-8",
    )
    with pytest.raises(MappingError) as error:
        load_mapping(write_mapping(tmp_path, lookup_spec()))
    message = str(error.value)
    assert "1 customer_id value map to more than one wallet" in message
    assert f"'C1' to '{WALLETS['C1']}' (data row 0)" in message
    assert f"to '{WALLETS['C3']}' (data row 2)" in message


def test_a_key_written_twice_with_the_same_value_is_fine(tmp_path: Path) -> None:
    table = tmp_path / "wallets.csv"
    table.write_text(
        f"customer_id,wallet\nC1,{WALLETS['C1']}\nC1,{WALLETS['C1']}\n", encoding="utf-8"
    )
    mapping = load_mapping(write_mapping(tmp_path, lookup_spec()))
    mapped = EventMapper(mapping, "o.csv").map_chunk(numbered(0, orders(["C1"])))
    assert [event.pubkey for _, event in mapped.events()] == [WALLETS["C1"]]


def test_a_parquet_table_with_integer_keys_serves_text_keys_and_gives_its_type(
    tmp_path: Path,
) -> None:
    pq.write_table(
        pa.table({"customer_id": [7, 8], "wallet": [WALLETS["C1"], WALLETS["C2"]],
                  "vip": [True, False]}),
        tmp_path / "customers.parquet",
    )  # fmt: skip
    vip = {"column": "customer", "lookup": "customers.parquet", "key": "customer_id",
           "value": "vip"}  # fmt: skip
    mapping = load_mapping(write_mapping(tmp_path, lookup_spec("customers.parquet"), vip=vip))

    mapped = EventMapper(mapping, "o.csv").map_chunk(numbered(0, orders(["8", "7"])))

    events = [event for _, event in mapped.events()]
    assert [(e.pubkey, e.data["vip"]) for e in events] == [
        (WALLETS["C2"], False),
        (WALLETS["C1"], True),
    ]
    assert mapping.fields[-1].type == "boolean"  # from the table's column, not the source's


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("/etc/passwd.csv", "is an absolute path"),
        ("../outside.csv", "is outside the mapping file's folder"),
        ("sub/../../outside.csv", "is outside the mapping file's folder"),
        ("https://example.com/wallets.csv", "is not a local file"),
        ("s3://bucket/wallets.csv", "is not a local file"),
        ("wallets.txt", "expected a .csv, .csv.gz, .parquet file"),
        ("missing.csv", "no such file 'missing.csv'"),
    ],
)
def test_a_table_outside_the_rules_is_refused(tmp_path: Path, written: str, expected: str) -> None:
    folder = tmp_path / "mapping"
    folder.mkdir()
    write_table(tmp_path / "outside.csv", WALLETS)
    (folder / "wallets.txt").write_text("customer_id,wallet\n", encoding="utf-8")
    with pytest.raises(MappingError) as error:
        load_mapping(write_mapping(folder, lookup_spec(written)))
    assert "user.pubKey.lookup" in str(error.value)
    assert expected in str(error.value)


def test_a_symbolic_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mapping"
    folder.mkdir()
    os.symlink(write_table(tmp_path / "outside.csv", WALLETS), folder / "wallets.csv")
    with pytest.raises(MappingError, match="is outside the mapping file's folder"):
        load_mapping(write_mapping(folder, lookup_spec()))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({**lookup_spec(), "key": "id"}, "the table has no column 'id'; its columns are"),
        ({**lookup_spec(), "value": 3}, "user.pubKey.value: a lookup needs column"),
        ({**lookup_spec(), "table": "x"}, "user.pubKey.table: unknown key"),
        ({"column": "customer", "key": "customer_id"}, "key and value go with lookup"),
    ],
)
def test_lookup_mistakes_are_one_message_naming_the_key(
    tmp_path: Path, spec: dict[str, Any], expected: str
) -> None:
    write_table(tmp_path / "wallets.csv", WALLETS)
    with pytest.raises(MappingError, match=expected):
        load_mapping(write_mapping(tmp_path, spec))


def test_the_table_is_read_once_per_version_of_the_file(tmp_path: Path) -> None:
    table = write_table(tmp_path / "wallets.csv", WALLETS)
    first = load_mapping(write_mapping(tmp_path, lookup_spec()))
    again = load_mapping(write_mapping(tmp_path, lookup_spec()))
    assert first.pubkey_lookup is not None and again.pubkey_lookup is not None
    assert first.pubkey_lookup.index() is again.pubkey_lookup.index()
    write_table(table, {**WALLETS, "C9": make_pubkey(9)})
    os.utime(table, ns=(1, 1))
    assert len(again.pubkey_lookup.index()) == len(WALLETS) + 1


def test_cli_a_clashing_table_exits_2_before_reading(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    (tmp_path / "wallets.csv").write_text("customer_id,wallet\nC1,a\nC1,b\n", encoding="utf-8")
    result = cli("validate", SAMPLE / "orders_by_customer.csv", "-m",
                 write_mapping(tmp_path, lookup_spec()))  # fmt: skip
    assert result.code == 2
    assert result.stderr.startswith("Error: wallets.csv (the lookup of user.pubKey)")
    assert "'C1' to 'a' (data row 0) and to 'b' (data row 1)" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_bundled_customer_sample_validates_like_the_plain_one() -> None:
    plain = validate(SAMPLE / "orders.csv", SAMPLE / "map.yaml")
    looked_up = validate(SAMPLE / "orders_by_customer.csv", SAMPLE / "map_customers.yaml")
    assert (looked_up.read, looked_up.mappable, looked_up.filtered, looked_up.failing) == (
        plain.read, plain.mappable, plain.filtered, plain.failing,
    )  # fmt: skip
    assert looked_up.reasons["user.pubKey (column 'customer_id') has no wallet in customers.csv"]


def test_run_with_a_lookup_table_sends_exactly_the_samples_events(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    report = tmp_path / "failures.jsonl"
    result = cli(
        "run", SAMPLE / "orders_by_customer.csv", "--mapping", SAMPLE / "map_customers.yaml",
        "--endpoint", sandbox.endpoint(), "--report", report, "--rate", "0", "--json",
    )  # fmt: skip

    assert result.code == 1, result.stderr
    summary = result.json()
    assert (summary["accepted"], summary["filtered"], summary["failed"]) == (2632, 296, 72)
    stored = Counter(sample_outcome.stored_rows(sandbox))
    assert None not in stored and set(stored) == sample_outcome.valid_rows
    assert max(stored.values()) == 1
    failures = list(read_report(report))
    assert {f.row for f in failures} == sample_outcome.bad_rows
    unknown = [f for f in failures if "no wallet for customer_id" in f.error]
    assert len(unknown) == 24 and all(f.record["customer_id"].startswith("CUST-9") for f in unknown)
