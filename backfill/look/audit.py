"""The timestamp audit of `backfill plan`: what in the times (and wallets, and ids) of a file
looks like a mistake before it becomes a few million irreversible events.

Fed chunk by chunk with the rows the filter keeps, it holds counters, a few example rows
and bounded structures (see `duplicates`), never the rows: memory stays flat.

Checks (codes in `--json`): `future` and `before_2009` (values after now, or before the
shop could have existed), `unit_mismatch` (epoch magnitudes that say another unit than the
mapping's), `all_midnight` (a date column: the time of day is lost), `naive_values` (values
without an offset, read in the mapping's zone), `dst_missing` and `dst_ambiguous` (local times
that do not exist or occur twice at clock changes), `duplicate_ids`, `wallet_concentration`.
"""

from __future__ import annotations

import re
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from backfill.look.duplicates import DuplicateIds, value_hashes
from backfill.mapping.convert import true_mask
from backfill.mapping.epochs import EPOCH_TIERS
from backfill.mapping.order_ids import IdColumns, id_label
from backfill.mapping.spec import Mapping
from backfill.mapping.times import HAS_OFFSET, TimestampRule

EXAMPLE_ROWS = 5
YEAR_2009_MS = 1_230_768_000_000  # 2009-01-01T00:00:00Z
DAY_MS = 86_400_000
WALLET_SHARE = 0.1  # one wallet with this share of the events (or more) is suspicious
WALLET_MIN_EVENTS = 100
WALLETS_TRACKED = 1_000  # candidates for the wallet check, at most
WALLET_PROBE = 256  # rows of a chunk looked at to find candidates
_EPOCH_TEXT = r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"
_GAP_REASON = "does not exist in time zone"
_ORDER_ID = re.compile(r"^order[ _-]?id$", re.I)


@dataclass
class AuditWarning:
    code: str
    message: str
    count: int = 0
    example_rows: list[int] = field(default_factory=list)
    example_files: list[str] = field(default_factory=list)  # each example row's file, at the end

    def add(self, rows: np.ndarray) -> None:
        self.count += len(rows)
        room = EXAMPLE_ROWS - len(self.example_rows)
        if room > 0:
            self.example_rows.extend(int(r) for r in rows[:room])

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "count": self.count,
            "example_rows": self.example_rows,
            "example_files": self.example_files,
        }


def id_columns(mapping: Mapping) -> IdColumns:
    """The columns naming an order: the mapping's `id` where it has one, else a field named
    like an order id (orderId, order_id, "Order ID")."""
    if mapping.id_columns:
        return mapping.id_columns
    for spec in mapping.fields:
        if spec.column and (_ORDER_ID.match(spec.name) or _ORDER_ID.match(spec.column)):
            return (spec.column,)
    return ()


class TimestampAudit:
    """Every check of the audit over the rows the filter keeps: each check is a small
    function or class below; this one feeds them and gathers their warnings."""

    def __init__(self, mapping: Mapping, now_ms: int) -> None:
        self.rule = mapping.timestamp_rule
        self.zone = self.rule.timezone
        self.zone_column = mapping.timezone_column  # each row's zone: no time is naive
        self.now_ms = now_ms
        self.id_columns = id_columns(mapping)
        self.found: dict[str, AuditWarning] = {}
        self.midnight = MidnightCheck(self.zone)
        self.wallets = WalletConcentration()
        self.duplicates = DuplicateIds()

    def warn(self, code: str, message: str, rows: np.ndarray) -> None:
        if len(rows):
            self.found.setdefault(code, AuditWarning(code, message)).add(rows)

    def add_times(
        self, rows: np.ndarray, raw: pa.Array, ms: np.ndarray, parsed: np.ndarray
    ) -> None:
        """Rows the filter keeps: their raw time values, ms, and which converted."""
        self.warn(
            "future",
            "times after now: a backfill replays past orders (a wrong unit or year?)",
            rows[parsed & (ms > self.now_ms)],
        )
        self.warn(
            "before_2009",
            "times before 2009, before the shop could have existed (a wrong unit or format?)",
            rows[parsed & (ms < YEAR_2009_MS)],
        )
        mismatch = unit_mismatch(raw, self.rule.unit)
        if mismatch is not None:
            said, other = mismatch
            self.warn(
                "unit_mismatch",
                f"epoch values whose number of digits says {said}, but the mapping's unit is "
                f"{self.rule.unit}",
                rows[other],
            )
        naive = naive_values(raw, self.rule) & parsed
        if self.zone_column is not None:
            naive[:] = False
        self.warn(
            "naive_values",
            f"times without an offset, read as {self.zone} (the mapping's timezone); if they "
            "are another zone's local times, set timestamp.timezone",
            rows[naive],
        )
        if self.zone != "UTC" and naive.any():
            self.warn(
                "dst_ambiguous",
                f"local times that occur twice in {self.zone} (clocks went back); the first "
                "was taken",
                rows[naive][ambiguous_times(ms[naive], self.zone)],
            )

    def add_failures(self, rows: list[int], reasons: list[str]) -> None:
        gap = np.array(
            [r for r, reason in zip(rows, reasons) if _GAP_REASON in reason], dtype=np.int64
        )
        self.warn(
            "dst_missing",
            f"local times that do not exist in {self.zone} (clocks skipped them); these rows fail",
            gap,
        )

    def add_events(
        self, rows: np.ndarray, ms: np.ndarray, wallets: pa.Array, ids: pa.Array | None
    ) -> None:
        self.midnight.add(rows, ms)
        self.wallets.add(rows, wallets)
        if ids is not None and len(rows):
            present = ~true_mask(pc.is_null(ids))
            self.duplicates.add(rows[present], value_hashes(ids)[present])

    def warnings(self) -> list[AuditWarning]:
        found = list(self.found.values())
        found += self.midnight.warning() + self.wallets.warning()
        return found + self._duplicate_warning()

    def _duplicate_warning(self) -> list[AuditWarning]:
        found = self.duplicates.result()
        if found is None:
            return []
        count, rows, approximate = found
        about = "about " if approximate else ""
        return [
            AuditWarning(
                "duplicate_ids",
                f"ids ({id_label(self.id_columns)}) that occur more than once "
                f"({about}{count:,} repeats): each would be sent as another order "
                "(one line per item? an export made twice?)",
                count,
                rows,
            )
        ]


# --- the time checks, each over one chunk's kept rows -----------------------------------------


def unit_mismatch(raw: pa.Array, unit: str) -> tuple[str, np.ndarray] | None:
    """Epoch values whose magnitude says another unit than the mapping's: the unit most
    of them say, and which they are; None when the unit is not named or all agree."""
    if unit not in ("s", "ms", "us", "ns"):
        return None
    if pa.types.is_integer(raw.type):
        numbers = pc.fill_null(pc.cast(raw, pa.int64()), 0).to_numpy()
        digits = ~np.asarray(raw.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    elif pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type):
        digits = true_mask(pc.match_substring_regex(raw, r"^\s*-?[0-9]{1,18}\s*$"))
        text = pc.if_else(pa.array(digits), pc.utf8_trim_whitespace(raw), "0")
        numbers = pc.cast(text, pa.int64()).to_numpy()
    else:
        return None
    magnitude = np.abs(numbers)
    tier = np.select([magnitude < t for t, _ in EPOCH_TIERS], [u for _, u in EPOCH_TIERS], "ns")
    other = digits & (tier != unit) & (magnitude > 0)
    if not other.any():
        return None
    return Counter(tier[other].tolist()).most_common(1)[0][0], other


def naive_values(raw: pa.Array, rule: TimestampRule) -> np.ndarray:
    """Which values carry no offset (and are no epoch): read in the mapping's zone."""
    kind = raw.type
    present = ~true_mask(pc.is_null(raw))
    if pa.types.is_timestamp(kind):
        return present if kind.tz is None else np.zeros(len(raw), bool)
    if pa.types.is_date(kind):
        return present
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return np.zeros(len(raw), bool)
    fmt = rule.format
    if fmt is not None and ("%z" in fmt or "%Z" in fmt):
        return np.zeros(len(raw), bool)
    if fmt is not None:
        return present & true_mask(pc.greater(pc.utf8_length(raw), 0))
    zulu = true_mask(pc.ends_with(raw, "Z")) | true_mask(pc.ends_with(raw, "z"))
    naive = present & ~zulu  # cheap: most values end in Z
    if naive.any():  # regular expressions cost 0.5 us a value: only on the rest
        rest = raw.filter(pa.array(naive))
        marked = true_mask(pc.match_substring_regex(rest, HAS_OFFSET))
        marked |= true_mask(pc.match_substring_regex(rest, _EPOCH_TEXT))
        marked |= ~true_mask(pc.greater(pc.utf8_length(rest), 0))
        naive[np.flatnonzero(naive)[marked]] = False
    return naive


def ambiguous_times(ms: np.ndarray, zone_name: str) -> np.ndarray:
    """Which instants show a wall-clock time that occurs twice in the zone (instants beyond
    the years 1684 to 2255 are not looked at: the range checks speak of them)."""
    inside = _in_zone_range(ms)
    found = np.zeros(len(ms), dtype=bool)
    if inside.any():
        zone = zoneinfo.ZoneInfo(zone_name)
        wall = pd.DatetimeIndex(wall_clock_ms(ms[inside], zone_name).astype("datetime64[ms]"))
        again = wall.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        found[inside] = np.asarray(again.isna())
    return found


def wall_clock_ms(ms: np.ndarray, zone_name: str) -> np.ndarray:
    """The zone's wall-clock time of each instant, as ms since 1970 read as if in UTC: total
    over every instant (no local midnight is ever built, so no skipped one can be met)."""
    inside = _in_zone_range(ms)
    wall = ms.copy()
    if inside.any():
        utc = pd.DatetimeIndex(ms[inside].astype("datetime64[ms]"), tz="UTC")
        local = utc.tz_convert(zoneinfo.ZoneInfo(zone_name)).tz_localize(None)
        wall[inside] = local.as_unit("ms").asi8
    return wall


def _in_zone_range(ms: np.ndarray) -> np.ndarray:
    return (ms > _ZONE_MIN_MS) & (ms < _ZONE_MAX_MS)


_ZONE_MIN_MS = -9_000_000_000_000  # 1684: zone rules are asked only inside pandas' range
_ZONE_MAX_MS = 9_000_000_000_000  # 2255


class MidnightCheck:
    """Whether every event's time is at local midnight: a date column, the time lost."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self.events = 0
        self.all_midnight = True
        self.found = AuditWarning("all_midnight", "")

    def add(self, rows: np.ndarray, ms: np.ndarray) -> None:
        self.events += len(rows)
        if self.all_midnight and len(rows):
            self.all_midnight = bool(self._at_midnight(ms).all())
            self.found.add(rows)

    def _at_midnight(self, ms: np.ndarray) -> np.ndarray:
        wall = ms if self.zone == "UTC" else wall_clock_ms(ms, self.zone)
        return wall % DAY_MS == 0

    def warning(self) -> list[AuditWarning]:
        if not (self.events and self.all_midnight):
            return []
        self.found.message = (
            "every time is at midnight: a date column, so the time of day is lost (is "
            "there a column with the time?)"
        )
        return [self.found]


class WalletConcentration:
    """One wallet with a large share of the events: a test wallet or a default."""

    def __init__(self) -> None:
        self.events = 0
        self.wallets: Counter[str] = Counter()
        self.wallet_rows: dict[str, list[int]] = {}

    def add(self, rows: np.ndarray, wallets: pa.Array) -> None:
        """A wallet with WALLET_SHARE of all events has that share in at least one chunk, and
        then shows in a strided sample of it: only those become candidates, counted exactly
        from then on (a lower bound, vectorised; no hash of every key)."""
        self.events += len(rows)
        if not len(rows):
            return
        step = max(1, len(rows) // WALLET_PROBE)
        probe = pc.value_counts(wallets.take(pa.array(np.arange(0, len(rows), step))))
        busy = probe.field("counts").to_numpy() >= WALLET_SHARE / 2 * -(-len(rows) // step)
        for value in probe.field("values").filter(pa.array(busy)).to_pylist():
            if value is not None and value not in self.wallets:
                self.wallets[value] = 0
                self.wallet_rows[value] = []
        if self.wallets:
            self._count(rows, wallets)

    def _count(self, rows: np.ndarray, wallets: pa.Array) -> None:
        candidates = pa.array(list(self.wallets), wallets.type)
        matched = true_mask(pc.is_in(wallets, value_set=candidates))
        if not matched.any():
            return
        counts = pc.value_counts(wallets.filter(pa.array(matched)))
        for value, number in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist()
        ):
            self.wallets[value] += number
            if len(self.wallet_rows[value]) < EXAMPLE_ROWS:
                mask = true_mask(pc.equal(wallets, pa.scalar(value, wallets.type)))
                self.wallet_rows[value].extend(int(r) for r in rows[mask][:EXAMPLE_ROWS])
        if len(self.wallets) > WALLETS_TRACKED:  # many chunks with different busy wallets
            kept = self.wallets.most_common(WALLETS_TRACKED // 2)
            self.wallets = Counter(dict(kept))
            self.wallet_rows = {key: self.wallet_rows[key] for key, _ in kept}

    def warning(self) -> list[AuditWarning]:
        if self.events < WALLET_MIN_EVENTS or not self.wallets:
            return []
        wallet, count = self.wallets.most_common(1)[0]
        if count < WALLET_SHARE * self.events:
            return []
        share = count / self.events
        return [
            AuditWarning(
                "wallet_concentration",
                f"one wallet, {wallet}, holds {share:.0%} of the events: a test wallet or a "
                "default put in where the buyer's was missing?",
                count,
                sorted(self.wallet_rows.get(wallet, []))[:EXAMPLE_ROWS],
            )
        ]
