"""An id of several columns (`id: [order-id, transaction-type]`): the mapping takes it, the
ids are unambiguous text, and validate, plan and run agree on duplicates and the ledger."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from conftest import CliResult, make_pubkey

from backfill.errors import MappingError
from backfill.mapping.order_ids import id_label, id_values
from backfill.mapping.spec import mapping_from_dict

Cli = Callable[..., CliResult]
BASE = {
    "event_name": "E",
    "timestamp": "at",
    "user": {"pubKey": "wallet"},
    "event_data": {"amount": {"column": "amount", "type": "number"}},
}


def test_the_mapping_takes_one_column_or_a_list() -> None:
    assert mapping_from_dict({**BASE, "id": "order"}).id_columns == ("order",)
    two = mapping_from_dict({**BASE, "id": ["order", "kind"]})
    assert two.id_columns == ("order", "kind")
    assert two.columns[-2:] == ["order", "kind"] or {"order", "kind"} <= set(two.columns)


@pytest.mark.parametrize(
    ("value", "message"),
    [([], r"id: expected a column or a list of columns; found \[\]"),
     (["a", "a"], "the column 'a' is named twice"),
     (["a", 3], r"id\[1\]: expected a column name")],
)  # fmt: skip
def test_a_bad_id_list_is_refused_naming_the_key(value: object, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        mapping_from_dict({**BASE, "id": value})


def test_ids_of_several_columns_are_unambiguous_json_text() -> None:
    table = pa.table(
        {
            "a": ['x", "y', "x", "", None],
            "b": pa.array(["z", 'y", "z', "1", "2"]),
        }
    )
    ids = id_values(table, ("a", "b")).to_pylist()
    assert ids[0] != ids[1]  # the same characters, split differently
    assert [json.loads(i) for i in ids[:2]] == [['x", "y', "z"], ["x", 'y", "z']]
    assert ids[2:] == [None, None]  # a part missing: no id


def test_one_column_keeps_its_plain_text_and_the_label_says_which() -> None:
    table = pa.table({"a": pa.array([7, None])})
    assert id_values(table, ("a",)).to_pylist() == ["7", None]
    assert id_label(("a",)) == "column 'a'"
    assert id_label(("a", "b")) == "columns 'a' + 'b'"


ROWS = [  # order, kind, amount: order 1 twice (an Order and its Refund), then a true repeat
    ("1", "Order", "10.00"),
    ("1", "Refund", "-10.00"),
    ("2", "Order", "5.00"),
    ("2", "Order", "5.00"),
]


def _write(folder: Path) -> tuple[Path, Path]:
    lines = ["at,wallet,order,kind,amount"]
    for number, (order, kind, amount) in enumerate(ROWS):
        lines.append(f"2024-01-0{number + 1}T00:00:00Z,{make_pubkey(1)},{order},{kind},{amount}")
    source = folder / "rows.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = folder / "map.yaml"
    mapping.write_text(yaml.safe_dump({**BASE, "id": ["order", "kind"]}), encoding="utf-8")
    return source, mapping


def test_validate_plan_and_run_agree_on_an_id_of_two_columns(cli: Cli, tmp_path: Path) -> None:
    source, mapping = _write(tmp_path)
    ledger = ["--ledger", str(tmp_path / "ledger.db")]
    validated = cli("validate", source, "-m", mapping, "--json", *ledger).json()
    planned = cli("plan", source, "-m", mapping, "--json", *ledger).json()
    ran = cli("run", source, "-m", mapping, "--sandbox", "--json", "--yes", *ledger)
    summary = ran.json()
    assert validated["would_send"] == planned["would_send"] == summary["accepted"] == 3
    assert summary["failed"] == 1
    report = tmp_path / summary["report"]
    [failure] = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert failure["row"] == 3
    assert "duplicate id" in failure["reason"]
    assert """'["2", "Order"]' (columns 'order' + 'kind') was met before""" in failure["error"]
