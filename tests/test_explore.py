"""The notebooks' DataFrames: events beside their rows, failures with their records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from backfill.books.report import read_report
from backfill.errors import MappingError
from backfill.look.explore import events_frame, failure_summary, failures_frame, remap_failures
from backfill.look.validate import preview, validate
from backfill.mapping.events import RowFailure
from backfill.mapping.pubkey import b58encode
from backfill.mapping.spec import Mapping, load_mapping, mapping_from_dict

WALLET = b58encode(bytes(range(1, 33)))
OTHER_WALLET = b58encode(bytes(range(2, 34)))
PLATINUM = {"column": "tier", "type": "boolean", "true": ["gold", "platinum"], "false": ["basic"]}


def small_mapping(**fields: Any) -> Mapping:
    event_data: dict[str, Any] = {
        "amount": {"column": "total", "type": "number"},
        "isPremium": {"column": "tier", "type": "boolean", "true": ["gold"], "false": ["basic"]},
        "coupon": {"column": "coupon", "type": "string", "optional": True},
        "sku": "sku",
        "channel": {"value": "backfill"},
    }
    event_data.update(fields)
    return mapping_from_dict(
        {
            "event_name": "ORDER",
            "timestamp": {"column": "created_at"},
            "user": {"pubKey": "wallet"},
            "event_data": event_data,
        }
    )


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text(
        "created_at,wallet,total,tier,coupon,sku\n"
        f"2024-03-05T14:22:31.123Z,{WALLET},49.90,gold,GM5,00123\n"
        f"1709648551,{OTHER_WALLET},100,basic,,00124\n"
        f"2024-03-06 00:00:00,{WALLET},N/A,basic,,00125\n"
        f"yesterday,{WALLET},12,platinum,,00126\n",
        encoding="utf-8",
    )
    return path


def failure(row: int | None, reason: str, stage: Any = "mapping", **kw: Any) -> RowFailure:
    return RowFailure(
        row, "orders.csv", stage, reason, f"{reason}: found x", kw.pop("record", {}), **kw
    )


# --- events_frame ----------------------------------------------------------------------------


def test_events_frame_has_one_line_per_event_beside_its_row(small_csv: Path) -> None:
    frame = events_frame(small_csv, small_mapping())

    assert frame["row"].tolist() == [0, 1]  # rows 2 and 3 fail
    envelope, fields = ["row", "timestamp", "pubKey"], ["amount", "isPremium", "coupon", "sku"]
    assert list(frame.columns) == [*envelope, *fields, "channel"]  # fields in mapping order
    assert frame["timestamp"].tolist() == [
        pd.Timestamp("2024-03-05T14:22:31.123Z"),
        pd.Timestamp("2024-03-05T14:22:31Z"),
    ]
    assert frame["pubKey"].tolist() == [WALLET, OTHER_WALLET]
    assert frame["amount"].tolist() == [49.9, 100]
    assert frame["sku"].tolist() == ["00123", "00124"]  # text stays text


def test_events_frame_types_fields_as_torque_sees_them(small_csv: Path) -> None:
    frame = events_frame(small_csv, small_mapping())

    assert isinstance(frame["timestamp"].dtype, pd.DatetimeTZDtype)
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["amount"].dtype == "Float64"
    assert frame["isPremium"].dtype == "boolean"
    assert frame["coupon"].dtype == "string"
    assert frame["isPremium"].tolist() == [True, False]


def test_events_frame_shows_an_optional_field_left_out_as_missing(small_csv: Path) -> None:
    frame = events_frame(small_csv, small_mapping())

    assert frame["coupon"].iloc[0] == "GM5"
    assert frame["coupon"].isna().tolist() == [False, True]


def test_events_frame_matches_the_events_preview_builds(
    sample_parquet: Path, sample_mapping: Path
) -> None:
    frame = events_frame(sample_parquet, sample_mapping, limit=20)
    events = preview(sample_parquet, sample_mapping, n=20)
    found = [(row.row, row.event) for row in events.rows if row.event is not None]

    assert frame["row"].tolist() == [row for row, _ in found]
    assert [int(t.value // 1_000_000) for t in frame["timestamp"]] == [
        event.timestamp for _, event in found
    ]
    assert frame["orderAmount"].tolist() == [event.data["orderAmount"] for _, event in found]


def test_events_frame_counts_what_validate_would_send(
    sample_parquet: Path, sample_mapping: Path
) -> None:
    frame = events_frame(sample_parquet, sample_mapping)

    assert len(frame) == validate(sample_parquet, sample_mapping).mappable == 2632
    assert frame["row"].is_unique


def test_events_frame_is_the_same_from_csv_and_parquet(
    sample_csv: Path, sample_parquet: Path, sample_mapping: Path
) -> None:
    pd.testing.assert_frame_equal(
        events_frame(sample_csv, sample_mapping), events_frame(sample_parquet, sample_mapping)
    )


@pytest.mark.parametrize("limit", [0, 1, 2, 10])
def test_events_frame_stops_after_limit_events(small_csv: Path, limit: int) -> None:
    frame = events_frame(small_csv, small_mapping(), limit=limit, chunk_rows=1)

    assert frame["row"].tolist() == [0, 1][:limit]
    assert "amount" in frame.columns


def test_events_frame_rejects_a_negative_limit(small_csv: Path) -> None:
    with pytest.raises(ValueError, match="limit must be 0 or more"):
        events_frame(small_csv, small_mapping(), limit=-1)


def test_events_frame_keeps_a_field_named_like_an_envelope_column_apart(small_csv: Path) -> None:
    frame = events_frame(small_csv, small_mapping(timestamp={"value": "kept"}))

    assert frame["data.timestamp"].tolist() == ["kept", "kept"]
    assert isinstance(frame["timestamp"].dtype, pd.DatetimeTZDtype)


def test_events_frame_checks_the_mapping_against_the_columns_first(small_csv: Path) -> None:
    with pytest.raises(MappingError, match="'quantity' is not in"):
        events_frame(small_csv, small_mapping(quantity="quantity"))


# --- failures_frame and failure_summary ------------------------------------------------------


def test_failures_frame_puts_each_failure_beside_its_original_values() -> None:
    failures = [
        failure(3, "not a number", record={"total": "N/A", "quantity": 2, "status": "paid"}),
        failure(7, "missing", record={"total": "1", "quantity": None, "status": "paid"}),
    ]
    frame = failures_frame(failures)

    assert list(frame.columns) == [
        "row",
        "stage",
        "status",
        "reason",
        "error",
        "record.total",
        "record.quantity",
        "record.status",  # the record's own `status` column does not clash with ours
    ]
    assert frame["row"].tolist() == [3, 7]
    assert frame["status"].isna().all()
    assert frame["record.status"].tolist() == ["paid", "paid"]
    assert frame["record.quantity"].tolist() == [2, None]  # an integer, not 2.0


def test_failures_frame_shows_an_unreadable_csv_line_and_a_send_failure() -> None:
    frame = failures_frame(
        [
            failure(None, "CSV line skipped", stage="read", record={"_line": "a,b,c"}),
            failure(5, "rejected", stage="send", status=422, record={"total": "1"}),
        ]
    )

    assert frame["row"].isna().tolist() == [True, False]
    assert frame["status"].tolist()[1] == 422
    assert frame["record._line"].tolist()[0] == "a,b,c"


def test_failures_frame_of_nothing_has_the_columns() -> None:
    frame = failures_frame([])

    assert list(frame.columns) == ["row", "stage", "status", "reason", "error"]
    assert frame.empty


def test_failure_summary_groups_by_stage_status_and_reason_most_frequent_first() -> None:
    failures = [
        failure(1, "timeout", stage="send", status=503),
        failure(2, "not a number"),
        failure(3, "timeout", stage="send", status=503),
        failure(4, "timeout", stage="send", status=429),
        failure(5, "timeout", stage="send", status=503),
        failure(6, "not a number"),
    ]
    summary = failure_summary(failures)

    assert summary[["stage", "status", "reason", "count"]].to_dict("records") == [
        {"stage": "send", "status": 503, "reason": "timeout", "count": 3},
        {"stage": "mapping", "status": None, "reason": "not a number", "count": 2},
        {"stage": "send", "status": 429, "reason": "timeout", "count": 1},
    ]
    assert summary["example_rows"].tolist() == [[1, 3, 5], [2, 6], [4]]
    assert summary["example_error"].tolist()[0] == "timeout: found x"


def test_failure_summary_keeps_only_the_first_examples() -> None:
    summary = failure_summary([failure(row, "bad") for row in range(10)], examples=3)

    assert summary["count"].tolist() == [10]
    assert summary["example_rows"].tolist() == [[0, 1, 2]]


def test_failure_summary_reads_a_report_as_validate_counts_it(
    tmp_path: Path, sample_parquet: Path, sample_mapping: Path
) -> None:
    result = validate(sample_parquet, sample_mapping, report=tmp_path / "r.jsonl")
    summary = failure_summary(read_report(tmp_path / "r.jsonl"))

    expected = result.reasons_frame()
    assert summary["reason"].tolist() == expected["reason"].tolist()
    assert summary["count"].tolist() == expected["count"].tolist()
    assert summary["example_rows"].tolist() == expected["example_rows"].tolist()
    assert set(summary["stage"]) == {"mapping"}


# --- remap_failures --------------------------------------------------------------------------


def test_remap_failures_gives_the_reasons_left_after_a_fix(tmp_path: Path, small_csv: Path) -> None:
    validate(small_csv, small_mapping(), report=tmp_path / "r.jsonl")
    failures = list(read_report(tmp_path / "r.jsonl"))
    fixed = small_mapping(isPremium=PLATINUM)

    events, still_failing = remap_failures(failures, fixed)

    assert [f.row for f in failures] == [2, 3]
    assert events.empty  # row 3's tier is fixed, but its date is not
    assert [f.row for f in still_failing] == [2, 3]
    assert "tier" not in still_failing[1].reason
    assert "created_at" in still_failing[1].reason


def test_remap_failures_on_the_sample_matches_a_rerun(
    tmp_path: Path, sample_parquet: Path, sample_mapping: Path
) -> None:
    validate(sample_parquet, sample_mapping, report=tmp_path / "r.jsonl")
    failures = list(read_report(tmp_path / "r.jsonl"))
    fixed = (
        load_mapping(sample_mapping)
        .with_field("isPremiumUser", {**PLATINUM, "true": ["premium", "gold", "platinum"]})
        .with_field("quantity", {"column": "quantity", "type": "number", "default": 1})
    )

    events, still_failing = remap_failures(failures, fixed)

    assert (len(events), len(still_failing)) == (16, 56)  # 9 platinum tiers, 7 empty quantities
    assert set(events["row"]).isdisjoint(f.row for f in still_failing)
    assert set(events["isPremiumUser"]) == {True, False}
    assert (events["quantity"] >= 1).all()
    assert not any("tier" in f.reason or "quantity" in f.reason for f in still_failing)


def test_remap_failures_with_the_same_mapping_fixes_nothing(
    tmp_path: Path, sample_parquet: Path, sample_mapping: Path
) -> None:
    validate(sample_parquet, sample_mapping, report=tmp_path / "r.jsonl")
    failures = list(read_report(tmp_path / "r.jsonl"))

    events, still_failing = remap_failures(failures, load_mapping(sample_mapping))

    assert events.empty
    assert [(f.row, f.reason) for f in still_failing] == [(f.row, f.reason) for f in failures]


def test_remap_failures_maps_a_column_that_is_empty_in_every_failed_record() -> None:
    records = [{"created_at": "1709648551", "wallet": WALLET, "total": None, "tier": "gold"}] * 2
    failures = [failure(row, "missing", record=dict(r)) for row, r in enumerate(records)]
    fixed = small_mapping(
        amount={"column": "total", "type": "number", "default": 0}, coupon={"value": ""}, sku="tier"
    )

    events, still_failing = remap_failures(failures, fixed)

    assert still_failing == []
    assert events["amount"].tolist() == [0, 0]


@pytest.mark.parametrize("row", [4, None], ids=["numbered", "number-unknown"])
def test_remap_failures_leaves_unreadable_csv_lines_failing(row: int | None) -> None:
    line = failure(row, "CSV line skipped", stage="read", record={"_line": "a,b"})

    events, still_failing = remap_failures([line], small_mapping())

    assert events.empty
    assert "amount" in events.columns
    assert still_failing == [line]


def test_remap_failures_rejects_a_mapping_naming_a_column_the_records_lack() -> None:
    failures = [failure(0, "bad", record={"created_at": "1709648551", "wallet": WALLET})]

    with pytest.raises(MappingError, match="'total' is not in the failed rows' records"):
        remap_failures(failures, small_mapping())
