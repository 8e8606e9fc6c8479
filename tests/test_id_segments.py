"""The ledger's segments of id digests (id_segments.py) and their Bloom filter (bloom.py):
every recorded digest is found with the run that first recorded it, whatever the merges,
page cuts, shared halves of digests and other connections did meanwhile."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from backfill.books import id_segments
from backfill.books.bloom import BlockedBloom, false_positive_chance
from backfill.books.id_digests import digests
from backfill.books.id_ledger import IdLedger, LedgerScope, delivered_reader
from backfill.books.id_segments import SegmentStore
from backfill.books.segment_tables import SCHEMA
from backfill.errors import JournalError

SCOPE = LedgerScope.of("https://api.torque.so/events", "torque-v1", "STORE_ORDER")


def store_in(path: Path | str = ":memory:") -> SegmentStore:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.executescript(SCHEMA)
    return SegmentStore(connection, scope=1)


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 4 entries, merges of 3 segments up to 64 entries: every path at small sizes."""
    monkeypatch.setattr(id_segments, "PAGE_ENTRIES", 4)
    monkeypatch.setattr(id_segments, "MERGE_FANOUT", 3)
    monkeypatch.setattr(id_segments, "LARGEST_MERGE", 64)
    monkeypatch.setattr(id_segments, "LOOKUP_BATCH", 7)


@pytest.mark.usefixtures("small_segments")
@settings(max_examples=examples(60), deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(0, 120), max_size=30), min_size=1, max_size=12),
    shared_hi=st.booleans(),
)
def test_every_recorded_digest_is_found_with_its_first_run_through_merges(
    batches: list[list[int]], shared_hi: bool
) -> None:
    store = store_in()
    first_run: dict[int, int] = {}
    for run, batch in enumerate(batches, start=1):
        values = np.array(batch, np.uint64)
        # with shared_hi, ids share the upper half in groups of 16: neighbours across pages
        hi = values // np.uint64(16) if shared_hi else values * np.uint64(0x9E3779B97F4A7C15)
        store.add(hi, values, np.full(len(values), run, np.uint32))
        for value in batch:
            first_run.setdefault(value, run)
        store.merge_due()
    asked = np.arange(0, 140, dtype=np.uint64)
    hi = asked // np.uint64(16) if shared_hi else asked * np.uint64(0x9E3779B97F4A7C15)
    expected = [first_run.get(int(value), 0) for value in asked]
    assert store.runs_of(hi, asked).tolist() == expected
    assert store.count() == len(first_run)


@pytest.mark.usefixtures("small_segments")
def test_merges_bound_the_number_of_segments() -> None:
    store = store_in()
    for start in range(0, 600, 5):
        values = np.arange(start, start + 5, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        store.add(values, values, np.ones(5, np.uint32))
        store.merge_due()
    sizes = sorted(segment.entries for segment in store._segments.values())
    assert sum(sizes) == 600
    assert max(sizes) <= 64
    assert len(sizes) < id_segments.MERGE_FANOUT or sizes[0] + sizes[1] > 64
    assert len(sizes) <= 2 * 600 // 64 + 2


def test_a_merge_by_another_connection_is_seen_before_the_next_lookup(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    run = IdLedger(path, SCOPE)
    for n in range(3 * id_segments.MERGE_FANOUT):  # small segments, all of one size class
        run.record_many([f"A{n}", f"B{n}"])
        run.commit()
    plan = delivered_reader(path, SCOPE)  # another process's look, e.g. `backfill plan`
    assert plan(["A0"]).tolist() == [True]  # it now holds the small segments in memory
    assert run.delivered(["C0"]).tolist() == [False]  # the run's reader thread merges them
    assert len(run._store._segments) == 3
    asked = [f"A{n}" for n in range(24)] + [f"B{n}" for n in range(24)] + ["C0"]
    assert plan(asked).tolist() == [True] * 48 + [False]
    run.close()


def test_the_sending_loop_never_waits_for_a_merge_and_commits_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("backfill.books.id_ledger.COMMIT_INTERVAL", 0.0)
    path = tmp_path / "ledger.sqlite3"
    ledger = IdLedger(path, SCOPE)
    with ledger._lock:  # as while the reader thread merges
        ledger.record("A")  # returns at once: nothing committed yet
        assert delivered_reader(path, SCOPE)(["A"]).tolist() == [False]
    ledger.record("B")
    assert delivered_reader(path, SCOPE)(["A", "B"]).tolist() == [True, True]
    ledger.close()


def write_version_1_ledger(path: Path, scopes: dict[int, LedgerScope], rows: list[tuple]) -> None:
    """A ledger as the first backfill with `id:` wrote it: ids as text, in one B-tree."""
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE scopes (scope INTEGER PRIMARY KEY, endpoint TEXT NOT NULL,
            api TEXT NOT NULL, event_name TEXT NOT NULL, UNIQUE (endpoint, api, event_name));
        CREATE TABLE runs (run INTEGER PRIMARY KEY, started REAL NOT NULL, source TEXT NOT NULL);
        CREATE TABLE delivered (scope INTEGER NOT NULL, id TEXT NOT NULL, run INTEGER NOT NULL,
            PRIMARY KEY (scope, id)) WITHOUT ROWID;
        PRAGMA user_version = 1;
        """
    )
    for number, scope in scopes.items():
        old.execute(
            "INSERT INTO scopes VALUES (?, ?, ?, ?)",
            (number, scope.endpoint, scope.api, scope.event_name),
        )
    old.execute("INSERT INTO runs VALUES (1, 0, 'a.csv'), (2, 0, 'b.csv')")
    old.executemany("INSERT INTO delivered VALUES (?, ?, ?)", rows)
    old.commit()
    old.close()


def test_a_merge_that_fails_leaves_every_id_found_and_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = IdLedger(tmp_path / "ledger.sqlite3", SCOPE)
    for n in range(id_segments.MERGE_FANOUT):
        ledger.record_many([f"A{n}"])
        ledger.commit()
    real_merge = SegmentStore._merge

    def disk_full(self: SegmentStore, chosen: list[id_segments.Segment]) -> None:
        real_merge(self, chosen)  # the new segment is written, then the disk fills up
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(SegmentStore, "_merge", disk_full)
    asked = [f"A{n}" for n in range(id_segments.MERGE_FANOUT)] + ["B"]
    assert ledger.delivered(asked).tolist() == [True] * id_segments.MERGE_FANOUT + [False]
    assert len(ledger._store._segments) == id_segments.MERGE_FANOUT  # rolled back
    monkeypatch.setattr(SegmentStore, "_merge", real_merge)
    assert ledger.delivered(asked).tolist() == [True] * id_segments.MERGE_FANOUT + [False]
    assert len(ledger._store._segments) == 1
    ledger.close()


def test_a_merge_whose_commit_meets_a_full_disk_leaves_every_id_found(tmp_path: Path) -> None:
    """The real failure: the file may not grow, so SQLite fails at COMMIT (WAL mode writes the
    pages then), after the merged segment had taken the place of the old ones in memory."""
    import resource

    path = tmp_path / "ledger.sqlite3"
    ledger = IdLedger(path, SCOPE)
    ids = [f"ORD-{n}" for n in range(id_segments.MERGE_FANOUT * 50)]
    for start in range(0, len(ids), 50):
        ledger.record_many(ids[start : start + 50])
        ledger.commit()
    ledger._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL must grow again
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # the disk is full
    try:
        with pytest.raises(sqlite3.OperationalError):
            ledger._store.merge_due()
        found_while_full = ledger.delivered(ids)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert found_while_full.all()
    assert ledger.delivered(ids).all()
    ledger.close()
    assert IdLedger(path, SCOPE).delivered(ids).all()


def test_a_commit_that_fails_halfway_records_each_id_once_when_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids this run claimed are added first; ids settled on --resume after. When only the
    second add fails, only those are tried again: the first are not added a second time."""
    ledger = IdLedger(tmp_path / "ledger.sqlite3", SCOPE)
    ledger.check(["NEW"], ["row 0"])  # claimed by this run
    ledger.record_many(["NEW", "SETTLED"])  # SETTLED: a row the journal skips on --resume
    real_add = SegmentStore.add

    def full_disk_for_settled_ids(self: SegmentStore, *args: object, new: bool = False) -> int:
        if not new:
            raise sqlite3.OperationalError("database or disk is full")
        return real_add(self, *args, new=new)  # type: ignore[arg-type]

    monkeypatch.setattr(SegmentStore, "add", full_disk_for_settled_ids)
    with pytest.raises(JournalError, match="cannot record delivered ids"):
        ledger.commit()
    monkeypatch.setattr(SegmentStore, "add", real_add)
    ledger.commit()

    assert ledger.delivered(["NEW", "SETTLED"]).all()
    assert ledger.count() == 2
    assert ledger.recorded == 2
    ledger.close()


def test_a_version_1_ledger_is_upgraded_keeping_every_id_and_its_run(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    other_event = LedgerScope.of(SCOPE.endpoint, SCOPE.api, "OTHER")
    write_version_1_ledger(
        path, {1: other_event, 2: SCOPE}, [(2, "ORD-1", 1), (2, "ORD-2", 2), (1, "ORD-3", 1)]
    )
    upgrade_first = r"earlier backfill \(version 1\); the next `backfill run`"
    with pytest.raises(JournalError, match=upgrade_first):
        delivered_reader(path, SCOPE)

    ledger = IdLedger(path, SCOPE)
    assert ledger.delivered_by(["ORD-1", "ORD-2", "ORD-3"]).tolist() == [1, 2, 0]
    assert ledger.count() == 2
    ledger.close()
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert "delivered" not in tables
    assert delivered_reader(path, SCOPE)(["ORD-2", "ORD-9"]).tolist() == [True, False]


def test_an_upgrade_stopped_after_moving_its_ids_is_finished_by_the_next_run(
    tmp_path: Path,
) -> None:
    """An earlier backfill dropped the old table, then could crash before the new version
    was set: a version 1 ledger without its table, its ids already in segments."""
    path = tmp_path / "ledger.sqlite3"
    write_version_1_ledger(path, {1: SCOPE}, [(1, "ORD-1", 1), (1, "ORD-2", 1)])
    IdLedger(path, SCOPE).close()
    stopped = sqlite3.connect(path)
    stopped.execute("PRAGMA user_version=1")
    stopped.close()

    ledger = IdLedger(path, SCOPE)
    assert ledger.delivered(["ORD-1", "ORD-2", "ORD-3"]).tolist() == [True, True, False]
    ledger.close()
    assert delivered_reader(path, SCOPE)(["ORD-2"]).tolist() == [True]


def test_the_ledger_file_holds_digests_not_order_ids(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = IdLedger(path, SCOPE)
    ledger.record_many(["ORD-SECRET-4711"])
    ledger.close()
    assert b"ORD-SECRET-4711" not in path.read_bytes()
    hi, lo = digests(["ORD-SECRET-4711", "ORD-SECRET-4712"])
    assert hi[0] != hi[1] and lo[0] != lo[1]


def test_the_bloom_filter_has_no_false_negatives_and_the_false_positives_it_predicts() -> None:
    rng = np.random.default_rng(7)
    inserted = rng.integers(0, 2**64, 50_000, dtype=np.uint64)
    bloom = BlockedBloom.of(inserted, bits_per_value=10)
    assert bloom.contains(inserted).all()
    others = rng.integers(0, 2**64, 200_000, dtype=np.uint64)
    observed = bloom.contains(others).mean()
    predicted = false_positive_chance(len(inserted), len(bloom.words))
    assert 0.005 < predicted < 0.05
    assert abs(observed - predicted) < 0.25 * predicted
