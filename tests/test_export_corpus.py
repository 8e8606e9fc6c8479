"""The corpus of real export formats (tests/export_corpus.py), end to end with the real CLI:
`init` drafts a mapping that needs only the wallet lookup added (and, for times written
without an offset, the shop's zone its comment asks for); `validate`, `plan` and
`run --sandbox` agree on the counts; and a run against a sandbox process sends exactly the
events computed apart from backfill (zoneinfo, decimal)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CliResult, SandboxProcess
from export_corpus import PLATFORMS, Fixture, write_fixture

Cli = Callable[..., CliResult]


def with_wallets(fixture: Fixture, folder: Path) -> dict[str, Any]:
    """init's draft with the one edit a user makes: the buyer's wallet from wallets.csv (and
    the shop's zone where the export's times carry no offset)."""
    data = yaml.safe_load((folder / "map.yaml").read_text(encoding="utf-8"))
    data["user"] = {
        "pubKey": {
            "column": fixture.key_column,
            "lookup": "wallets.csv",
            "key": "key",
            "value": "wallet",
        }
    }
    if fixture.timezone is not None:
        data["timestamp"]["timezone"] = fixture.timezone
    (folder / "map.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return data


def mark(fixture_name: str, stage: str) -> Any:
    fixture = PLATFORMS[fixture_name]
    reason = _reasons().get(fixture_name, {}).get(stage)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(fixture_name, marks=marks, id=fixture.__name__)


def _reasons() -> dict[str, dict[str, str]]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return {name: write_fixture(name, Path(folder) / name).xfail for name in PLATFORMS}


@dataclass
class Drafted:
    fixture: Fixture
    folder: Path
    mapping: dict[str, Any]
    options: list[str]  # what the draft's header says to give every command

    @property
    def source(self) -> Path:
        return self.folder / self.fixture.file


def drafted(cli: Cli, tmp_path: Path, name: str) -> Drafted:
    fixture = write_fixture(name, tmp_path / name)
    folder = tmp_path / name
    result = cli("init", folder / fixture.file, "-o", folder / "map.yaml")
    assert result.code == 0, result.stderr
    options = reading(folder)
    return Drafted(fixture, folder, with_wallets(fixture, folder), options)


def reading(folder: Path) -> list[str]:
    """The options the draft's header prints (--delimiter, --encoding)."""
    text = (folder / "map.yaml").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("#   backfill plan "))
    words = line.split("-m map.yaml", 1)[1].split()
    return [w.strip("'") for w in words]


@pytest.mark.parametrize("name", [mark(name, "init") for name in PLATFORMS])
def test_init_validate_plan_and_a_sandbox_run_agree(cli: Cli, tmp_path: Path, name: str) -> None:
    draft = drafted(cli, tmp_path, name)
    fixture, folder, source, options = draft.fixture, draft.folder, draft.source, draft.options
    validated = cli("validate", source, "-m", folder / "map.yaml", "--json", *options)
    assert validated.code == 0, validated.stdout + validated.stderr
    planned = cli("plan", source, "-m", folder / "map.yaml", "--json", *options)
    assert planned.code == 0, planned.stdout + planned.stderr
    plan = planned.json()
    assert plan["would_send"] == len(fixture.orders)
    assert validated.json()["would_send"] == plan["would_send"]
    ran = cli("run", source, "-m", folder / "map.yaml", "--sandbox", "--json", "--rate", "0",
              "--yes", *options)  # fmt: skip
    assert ran.code == 0, ran.stdout + ran.stderr
    summary = ran.json()
    assert summary["accepted"] == plan["would_send"]
    assert summary["filtered"] == plan["filtered"]


@pytest.mark.parametrize("name", [mark(name, "events") for name in PLATFORMS])
def test_the_events_sent_are_exact(
    cli: Cli, tmp_path: Path, sandbox: SandboxProcess, name: str
) -> None:
    draft = drafted(cli, tmp_path, name)
    fixture = draft.fixture
    amount_field = next(
        field
        for field, spec in draft.mapping["event_data"].items()
        if isinstance(spec, dict) and spec.get("column") == fixture.amount_column
    )
    ran = cli("run", draft.source, "-m", draft.folder / "map.yaml", "--endpoint",
              sandbox.endpoint(), "--rate", "0", "--yes", "--json", *draft.options)  # fmt: skip
    assert ran.code == 0, ran.stdout + ran.stderr
    sent = sorted(
        (
            e["event"]["timestamp"],
            e["event"]["user"]["pubKey"],
            Decimal(str(e["event"]["event_data"][amount_field])) * fixture.amount_scale,
        )
        for e in sandbox.events()
    )
    assert sent == fixture.expected()
