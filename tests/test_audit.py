"""The timestamp audit is total: over valid times in every IANA zone (midnight DST gaps and
overlaps, 30/45-minute offsets, dates before 1970) it warns, and never raises."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import make_pubkey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backfill.look.audit import TimestampAudit
from backfill.look.plan import plan
from backfill.mapping.spec import mapping_from_dict
from backfill.mapping.times import to_epoch_ms

NOW_MS = 1_900_000_000_000
EVERY_ZONE = sorted(zoneinfo.available_timezones())
WALLETS = [make_pubkey(seed) for seed in range(3)]


def audit_warnings(zone: str, instants_ms: list[int]) -> dict[str, int]:
    """The audit fed as `plan` feeds it: naive wall-clock text read in `zone`."""
    mapping = mapping_from_dict(
        {
            "event_name": "ORDER",
            "timestamp": {"column": "at", "timezone": zone},
            "user": {"pubKey": "wallet"},
            "event_data": {"orderId": "order_id"},
        }
    )
    texts = [_wall_text(ms, zone) for ms in instants_ms]
    raw = pa.array([*texts, "2017-10-15", "2017-10-15 00:00:00", "1969-07-20 20:17:40"])
    converted = to_epoch_ms(raw, mapping.timestamp_rule, NOW_MS)
    ms = np.asarray(converted.values, np.int64)
    failed = converted.missing.copy()
    for problem in converted.problems[:-1]:
        failed |= problem.mask
    rows = np.arange(len(raw), dtype=np.int64)
    audit = TimestampAudit(mapping, NOW_MS)
    audit.add_times(rows, raw, ms, ~failed)
    audit.add_failures(rows[failed].tolist(), ["does not exist in time zone"] * int(failed.sum()))
    wallets = pa.array([WALLETS[i % 3] for i in range(int((~failed).sum()))])
    audit.add_events(rows[~failed], ms[~failed], wallets, None)
    return {warning.code: warning.count for warning in audit.warnings()}


def _wall_text(ms: int, zone: str) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)
    return moment.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


instants = st.integers(
    min_value=-2_208_988_800_000,  # 1900
    max_value=4_102_444_800_000,  # 2100
)
local_midnights = st.dates(dt.date(1900, 1, 1), dt.date(2099, 12, 31)).map(
    lambda day: (day - dt.date(1970, 1, 1)).days * 86_400_000
)


@pytest.mark.parametrize("zone", EVERY_ZONE)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(times=st.lists(st.one_of(instants, local_midnights), min_size=1, max_size=30))
def test_the_audit_never_raises_in_any_zone(zone: str, times: list[int]) -> None:
    found = audit_warnings(zone, times)
    assert set(found) <= {
        "future",
        "before_2009",
        "naive_values",
        "dst_missing",
        "dst_ambiguous",
        "all_midnight",
        "wallet_concentration",
    }


def test_plan_of_an_olist_table_in_sao_paulo_ends_without_a_traceback(tmp_path: Path) -> None:
    """Bug 1: Olist's orders table, read in America/Sao_Paulo, has orders on 2017-10-15,
    a day whose midnight the clocks skipped; `plan` ended in a ValueError."""
    source = tmp_path / "olist_orders_dataset.csv"
    lines = [
        '"order_id","customer_id","order_status","order_purchase_timestamp",'
        '"order_approved_at","order_delivered_customer_date","wallet"'
    ]
    stamps = ["2017-10-14 23:10:05", "2017-10-15 01:00:00", "2017-10-15 10:56:33"]
    stamps += ["2017-10-02 10:56:33", "2018-02-17 23:30:00", "2018-02-17 23:45:00"]
    for number, stamp in enumerate(stamps):
        lines.append(
            f'"e481f51cbdc54678b7cc49136f2d6a{number:02d}","9ef432eb6251297304e76186b10a928d",'
            f'"delivered","{stamp}","{stamp}","2017-10-20 21:25:13","{make_pubkey(number)}"'
        )
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "event_name: ORDER\n"
        "timestamp: {column: order_purchase_timestamp, timezone: America/Sao_Paulo}\n"
        "user: {pubKey: wallet}\n"
        "event_data: {orderId: order_id}\n",
        encoding="utf-8",
    )
    result = plan(source, mapping, report=tmp_path / "r.jsonl")
    codes = {warning.code: warning.count for warning in result.warnings}
    assert result.counts.mappable == 6
    assert codes["dst_ambiguous"] == 2  # 23:10 to 23:59 on 2018-02-17 happened twice
