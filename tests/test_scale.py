"""Scaled numbers: `scale: 0.01` turns cents into the currency's unit exactly, in decimal
(115 -> 1.15, never 1.1500000000000001), end to end on a pandas dump of Square's orders."""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from conftest import CliResult, SandboxProcess
from export_corpus import write_fixture
from platform_exports import drafted_then_edited, sent_events, wallet_lookup

from backfill.errors import MappingError
from backfill.mapping.convert import to_number
from backfill.mapping.envelopes import json_member
from backfill.mapping.spec import mapping_from_dict

Cli = Callable[..., CliResult]
BASE = {"event_name": "E", "timestamp": "at", "user": {"pubKey": "wallet"}}


def test_cents_scale_to_the_exact_decimal_as_json() -> None:
    rng = random.Random(27)
    cents = [rng.randint(-(10**9), 10**9) for _ in range(5000)] + [115, 1, 10, 100, -1265]
    values = to_number(pa.array([str(c) for c in cents]), scale=Decimal("0.01")).materialize()
    texts = [member.split(":", 1)[1] for member in json_member("a", values)]
    assert [Decimal(text) for text in texts] == [Decimal(c) / 100 for c in cents]
    assert texts[-5] == "1.15" and texts[-4] == "0.01" and texts[-2] == "1"  # 100 cents: 1


@pytest.mark.parametrize(
    ("column", "scale", "expected"),
    [(pa.array([115, 3]), "0.01", [1.15, 0.03]), (pa.array([1.5, 2.25]), 1000, [1500, 2250]),
     (pa.array(["1.265,00"]), "0.5", [632.5])],
)  # fmt: skip
def test_numbers_of_every_kind_scale_exactly(
    column: pa.Array, scale: object, expected: list[object]
) -> None:
    marks = {"decimal": ",", "thousands": "."} if column.type == pa.string() else {}
    assert to_number(column, scale=Decimal(str(scale)), **marks).materialize() == expected


def test_the_mapping_reads_yaml_floats_as_their_digits() -> None:
    data = {**BASE, "event_data": {"a": {"column": "c", "type": "number", "scale": 0.01}}}
    assert mapping_from_dict(yaml.safe_load(yaml.safe_dump(data))).fields[0].scale == Decimal(
        "0.01"
    )


@pytest.mark.parametrize(
    ("field", "message"),
    [({"column": "c", "type": "number", "scale": 0}, "expected a positive number"),
     ({"column": "c", "type": "number", "scale": "1e400"}, "from 1e-18 to 1e18"),
     ({"column": "c", "type": "number", "scale": "cents"}, "expected a positive number"),
     ({"column": "c", "type": "string", "scale": 0.01}, "scale needs a column and type: number"),
     ({"value": 1, "scale": 0.01}, "scale needs a column and type: number")],
)  # fmt: skip
def test_a_bad_scale_is_refused_naming_the_key(field: dict[str, object], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        mapping_from_dict({**BASE, "event_data": {"a": field}})


def test_square_cents_run_to_the_sandbox_in_dollars(
    cli: Cli, tmp_path: Path, sandbox: SandboxProcess
) -> None:
    fixture = write_fixture("square", tmp_path)

    def edit(data: dict[str, Any]) -> None:
        data["user"] = wallet_lookup("customer_id")
        data["event_data"]["totalMoneyAmount"]["scale"] = 0.01

    drafted_then_edited(cli, tmp_path / fixture.file, tmp_path / "map.yaml", edit)
    source, mapping = tmp_path / fixture.file, tmp_path / "map.yaml"
    planned = cli("plan", source, "-m", mapping, "--json")
    assert planned.code == 0 and planned.json()["would_send"] == len(fixture.orders)
    rehearsed = cli("run", source, "-m", mapping, "--sandbox", "--json", "--yes")
    assert rehearsed.json()["accepted"] == len(fixture.orders)
    ran = cli("run", source, "-m", mapping, "--endpoint", sandbox.endpoint(), "--rate", "0",
              "--yes", "--json")  # fmt: skip
    assert ran.code == 0, ran.stdout + ran.stderr
    sent = sent_events(sandbox, "totalMoneyAmount")
    assert sent == fixture.expected()


def test_a_product_no_double_holds_fails_its_row() -> None:
    converted = to_number(pa.array(["1e300", "2"]), scale=Decimal("1e18"))
    failing = [p for p in converted.problems if p.mask.any()]
    assert [(p.reason, p.mask.tolist()) for p in failing] == [
        ("is beyond a double once scaled", [True, False])
    ]
