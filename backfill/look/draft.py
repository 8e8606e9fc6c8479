"""`backfill init`: a first mapping, guessed from a sample of the source, with every guess
explained in a YAML comment beside it.

The guesses are made with the same converters `run` uses (`convert.to_epoch_ms`,
`PubkeyChecker`), so a column the draft calls a timestamp is one `run` can read. The draft
always loads: when no column holds wallets, `user.pubKey` names the column that most looks
like the buyer, and the comment says that every row fails until a wallet column is added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import yaml

from backfill.books.report import source_last_part
from backfill.look.time_guess import TimestampGuess, failed_rows, guess_timestamps
from backfill.mapping.convert import PubkeyChecker, missing_mask
from backfill.mapping.spec import mapping_from_dict
from backfill.read.sampling import SAMPLE_ROWS, Sample, sample_source

DEFAULT_EVENT_NAME = "ORDER"
WALLET_SHARE = 0.9  # of the sampled values present: a few bad keys are the report's business
OPTIONAL_SHARE = 0.05  # empty in at least this share of the sample: optional
NUMBER_SHARE = 0.98  # numbers in at least this share: a number, the rest fail
FREE_TEXT_LENGTH = 40
NAME_DISTINCT = 100
NAME_DISTINCT_SHARE = 0.2
_INT = re.compile(r"^[+-]?[0-9]+$")
_FLOAT = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_IDENTIFIER_NAME = re.compile(
    r"(^|[^a-z])(id|code|zip|postal|postcode|sku|phone|ean|upc)s?($|[^a-z])|id$", re.I
)
_BUYER_NAME = re.compile(r"customer|user|buyer|client|account|member|email|wallet|address", re.I)
_WALLET_NAME = re.compile(r"wallet|pub_?key|address|owner", re.I)
_ORDER_ID_NAME = re.compile(
    r"^(order|transaction|purchase|invoice)[ _\-]?(id|number|no|nr|ref|reference)$", re.I
)
_STATUS_NAME = re.compile(r"^(order[ _]?)?(status|state)$", re.I)
_TRUE_FALSE = ({"true", "false"}, {"yes", "no"}, {"1", "0"}, {"y", "n"}, {"t", "f"})
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .\-/]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "y", "n", "null"}


@dataclass
class FieldDraft:
    """One event_data line: active or commented out, and why."""

    name: str
    column: str
    spec: dict[str, object]
    note: str
    active: bool = True
    extra: list[str] = field(default_factory=list)


@dataclass
class Draft:
    """A drafted mapping: the YAML text, and the guesses behind it for tests and notebooks."""

    text: str
    sample: Sample
    timestamp: TimestampGuess | None
    other_timestamps: list[TimestampGuess]
    wallet: str | None
    pubkey_column: str
    fields: list[FieldDraft]


def draft_mapping(
    path: str | Path,
    *,
    event_name: str = DEFAULT_EVENT_NAME,
    delimiter: str = ",",
    encoding: str | None = None,
    sheet: str | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> Draft:
    """Sample `path` and draft a mapping for it; the text loads with `load_mapping`."""
    sample = sample_source(
        path, delimiter=delimiter, encoding=encoding, sheet=sheet, rows=sample_rows
    )
    guesses = guess_timestamps(sample.table)
    chosen = guesses[0] if guesses else None
    wallet = _wallet_column(sample.table, {chosen.column} if chosen else set())
    taken = {g.column for g in guesses[:1]} | ({wallet} if wallet else set())
    pubkey_column = wallet or _buyer_column(sample.table, taken)
    taken.add(pubkey_column)
    fields = _field_drafts(sample.table, taken)
    if chosen is None:  # nothing parses as a time: name a column so the draft still loads
        names = sample.table.column_names
        chosen_column = next((n for n in names if n not in taken), names[0])
    else:
        chosen_column = chosen.column
    text = _render(
        sample, event_name, chosen, chosen_column, guesses[1:], wallet, pubkey_column, fields
    )
    mapping_from_dict(yaml.safe_load(text), origin="the draft")  # a draft that cannot load is a bug
    return Draft(text, sample, chosen, guesses[1:], wallet, pubkey_column, fields)


# --- the wallet --------------------------------------------------------------------------


def _wallet_column(table: pa.Table, skip: set[str]) -> str | None:
    """The column whose values are (nearly all) valid 32-byte base58 keys."""
    best: tuple[int, int, str] | None = None
    checker = PubkeyChecker()
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if name in skip or not (
            pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        ):
            continue
        converted = checker.check(column)
        present = ~converted.missing
        valid = int((present & ~failed_rows(converted)).sum())
        if valid and valid >= WALLET_SHARE * int(present.sum()):
            score = (valid, int(bool(_WALLET_NAME.search(name))), name)
            best = max(best, score) if best else score
    return best[2] if best else None


def _buyer_column(table: pa.Table, skip: set[str]) -> str:
    names = [n for n in table.column_names if n not in skip] or table.column_names
    by_name = [n for n in names if _BUYER_NAME.search(n)]
    identifiers = [n for n in by_name if _IDENTIFIER_NAME.search(n)]
    return (identifiers or by_name or names)[0]


# --- event_data --------------------------------------------------------------------------


def field_name(column: str, taken: set[str]) -> str:
    """camelCase from a column name (`Order Date` -> orderDate, `Country/Region` ->
    countryRegion), unique among the fields drafted so far."""
    words = [w for w in re.split(r"[^0-9A-Za-z]+", column) if w]
    if not words:
        words = ["field"]
    parts = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", " ".join(words)).split()
    name = parts[0].lower() + "".join(p[:1].upper() + p[1:].lower() for p in parts[1:])
    if name[0].isdigit():
        name = "f" + name
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}{number}", number + 1
    taken.add(candidate)
    return candidate


def _field_drafts(table: pa.Table, skip: set[str]) -> list[FieldDraft]:
    names: set[str] = set()
    drafts = [
        _field_draft(name, table.column(name).combine_chunks(), names)
        for name in table.column_names
        if name not in skip
    ]
    if drafts and not any(d.active for d in drafts):  # event_data may not be empty
        drafts[0].active = True
    return drafts


def _field_draft(column_name: str, column: pa.Array, names: set[str]) -> FieldDraft:
    name = field_name(column_name, names)
    missing = missing_mask(column)
    rows, empty = len(column), int(missing.sum())
    spec: dict[str, object] = {"column": column_name}
    if rows and empty == rows:
        spec["type"] = "string"
        return FieldDraft(name, column_name, spec, "empty in every sampled row", active=False)
    kind, note, active, extra = _kind(column_name, column.filter(pa.array(~missing)))
    spec["type"] = kind
    if empty and empty >= OPTIONAL_SHARE * rows:
        spec["optional"] = True
        note += f"; empty in {empty:,} of {rows:,} sampled rows: left out of those events"
    elif empty:
        note += (
            f"; empty in {empty:,} sampled rows, which fail: add optional: true or default: "
            "to send them"
        )
    return FieldDraft(name, column_name, spec, note, active, extra)


def _kind(name: str, present: pa.Array) -> tuple[str, str, bool, list[str]]:
    """(type, why, active, extra comment lines) from the values that are there."""
    if pa.types.is_boolean(present.type):
        return "boolean", "a boolean column", True, []
    if pa.types.is_integer(present.type) or pa.types.is_floating(present.type):
        return "number", f"a {present.type} column", True, []
    if pa.types.is_decimal(present.type):
        return "number", "a decimal column", True, []
    if not (pa.types.is_string(present.type) or pa.types.is_large_string(present.type)):
        return "string", f"a {present.type} column, sent as text", True, []
    values = [v for v in present.to_pylist() if v is not None]
    distinct = sorted(set(values))
    if len(distinct) == 2:
        return _two_values(name, distinct, values)
    integers = [v for v in values if _INT.match(v)]
    if values and len(integers) >= NUMBER_SHARE * len(values):
        zeros = [v for v in integers if len(v.lstrip("+-")) > 1 and v.lstrip("+-")[0] == "0"]
        if zeros:
            return "string", f"digits with leading zeros ({zeros[0]!r}): kept as text", True, []
        if _IDENTIFIER_NAME.search(name):
            return "string", "an identifier made of digits: kept as text", True, []
        return "number", "whole numbers" + _not_numbers(values), True, []
    if values and sum(bool(_FLOAT.match(v)) for v in values) >= NUMBER_SHARE * len(values):
        return "number", "decimal numbers" + _not_numbers(values), True, []
    mean_length = sum(map(len, values)) / max(len(values), 1)
    if mean_length > FREE_TEXT_LENGTH:
        return (
            "string",
            f"free text (about {mean_length:.0f} characters); send it if needed",
            False,
            [],
        )
    spaced = sum(" " in v for v in values) > len(values) / 2
    if (
        spaced
        and len(distinct) >= NAME_DISTINCT
        and len(distinct) >= NAME_DISTINCT_SHARE * len(values)
    ):
        why = f"names with many values ({len(distinct):,} distinct in {len(values):,})"
        return "string", why + ": left out; send them if the offer needs them", False, []
    shown = ", ".join(_short(v) for v in distinct[:4]) + (", ..." if len(distinct) > 4 else "")
    return "string", f"text, {len(distinct):,} distinct values ({shown})", True, []


def _not_numbers(values: list[str]) -> str:
    others = [v for v in values if not _FLOAT.match(v)]
    if not others:
        return ""
    return f"; {len(others):,} sampled values are not numbers (e.g. {others[0]!r}): those rows fail"


def _two_values(
    name: str, distinct: list[str], values: list[str]
) -> tuple[str, str, bool, list[str]]:
    lowered = {v.lower() for v in distinct}
    if lowered in _TRUE_FALSE:
        return "boolean", f"two values ({', '.join(distinct)}): a boolean", True, []
    common = max(distinct, key=values.count)
    other = next(v for v in distinct if v != common)
    hint = (
        f"# two values: a boolean? {{column: {scalar(name)}, type: boolean, "
        f"true: [{scalar(common)}], false: [{scalar(other)}]}}"
    )
    return "string", f"two values ({_short(common)}, {_short(other)})", True, [hint]


def _short(value: str) -> str:
    return repr(value if len(value) <= 24 else value[:21] + "...")


# --- YAML text ---------------------------------------------------------------------------


def scalar(text: str) -> str:
    """`text` as a YAML scalar: plain where that reads back as the same text, else quoted."""
    if _PLAIN.match(text) and text.lower() not in _RESERVED and text == text.strip():
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flow(spec: dict[str, object]) -> str:
    parts = []
    for key, value in spec.items():
        shown = ("true" if value else "false") if isinstance(value, bool) else scalar(str(value))
        parts.append(f"{key}: {shown}")
    return "{" + ", ".join(parts) + "}"


def _render(
    sample: Sample,
    event_name: str,
    chosen: TimestampGuess | None,
    chosen_column: str,
    others: list[TimestampGuess],
    wallet: str | None,
    pubkey_column: str,
    fields: list[FieldDraft],
) -> str:
    source = source_last_part(sample.source.name)
    lines = [
        f"# A draft mapping by `backfill init` for {source}, from {sample.how}.",
        "# Every choice is explained beside it: read them, edit, then look before you send:",
        f"#   backfill plan {source} -m map.yaml",
        "# Editors check this file as you type: `backfill schema > map.schema.json`, then",
        "# make this the first line:  # yaml-language-server: $schema=map.schema.json",
        "",
        f"event_name: {scalar(event_name)}   # the custom event's name, as created in Torque",
        *_id_lines(sample.table),
        "",
        "timestamp:",
    ]
    lines += _timestamp_lines(chosen, chosen_column, others)
    lines += ["", "user:", *_user_lines(wallet, pubkey_column, sample.rows), "", "event_data:"]
    width = max((len(f.name) + len(_flow(f.spec)) for f in fields), default=0) + 4
    for item in fields:
        line = f"{item.name}: {_flow(item.spec)}"
        line = (
            f"  {line.ljust(width)}# {item.note}"
            if item.active
            else f"  # {line.ljust(width - 2)}# {item.note}"
        )
        lines.append(line)
        lines += [f"  {extra}" for extra in item.extra]
    if not any(item.active for item in fields):  # event_data may not be empty
        lines.append("  channel: {value: backfill}   # a constant: no other column to send")
    lines += _filter_lines(sample.table)
    return "\n".join(lines) + "\n"


def _timestamp_lines(
    chosen: TimestampGuess | None, column: str, others: list[TimestampGuess]
) -> list[str]:
    if chosen is None:
        return [
            "  # No column parses as times in the sample (ISO-8601, epoch numbers, or dates",
            "  # such as 03/01/2019). Name the right column and its format; as drafted, rows fail.",
            f"  column: {scalar(column)}",
            "  unit: auto",
            "  timezone: UTC",
        ]
    lines = [f"  column: {scalar(chosen.column)}   # {chosen.why}"]
    lines.append(f"  unit: {chosen.unit}   # {chosen.unit_why}")
    if chosen.format is not None:
        lines.append(f'  format: "{chosen.format}"   # {chosen.format_why}')
    lines.append(f"  timezone: UTC   # {chosen.timezone_why}")
    if chosen.date_only:
        lines.append("  # dates without a time of day: every event is sent at midnight")
    for other in others:
        lines.append(f"  # also parses as times: {scalar(other.column)} ({other.summary})")
    return lines


def _user_lines(wallet: str | None, column: str, rows: int) -> list[str]:
    if wallet is not None:
        return [
            f"  pubKey: {scalar(wallet)}   # its values are Solana public keys (base58, 32 bytes)"
        ]
    return [
        f"  # No column holds Solana public keys (base58 text of 32 bytes) in the {rows:,}",
        "  # sampled rows. Torque needs each buyer's wallet: add a column with it, or map",
        f"  # {column} to wallets with a lookup table. As drafted, every row fails with",
        '  # "not a Solana public key" (validate and plan exit 1; nothing can be sent).',
        f"  pubKey: {scalar(column)}",
    ]


def _id_lines(table: pa.Table) -> list[str]:
    """The order id for the ledger of delivered ids, from a column named like one: proposed
    when every sampled row has one and none repeats; else left commented, saying why."""
    for name in table.column_names:
        if not _ORDER_ID_NAME.match(name):
            continue
        values = [v for v in table.column(name).to_pylist() if v is not None and v != ""]
        if not values:
            continue
        repeats = len(values) - len(set(values))
        if repeats == 0 and len(values) == table.num_rows:
            return [
                f"id: {scalar(name)}   # an order id, none repeats in the sample: a later export "
                "that holds these orders again skips them (the ledger of delivered ids)"
            ]
        return [
            f"# id: {scalar(name)}   # not proposed: {repeats:,} of {len(values):,} sampled "
            "values repeat (an order on several lines?); with it, only each order's first "
            "row would be sent"
        ]
    return []


def _filter_lines(table: pa.Table) -> list[str]:
    for name in table.column_names:
        column = table.column(name)
        if not _STATUS_NAME.match(name) or not pa.types.is_string(column.type):
            continue
        values = [v for v in column.to_pylist() if v]
        distinct = sorted(set(values), key=lambda v: -values.count(v))
        if 2 <= len(distinct) <= 6 and "'" not in distinct[0]:
            shares = ", ".join(f"{v} {values.count(v) / len(values):.0%}" for v in distinct)
            reference = f"`{name}`" if not re.match(r"^[A-Za-z_]\w*$", name) else name
            return [
                "",
                f"# Which rows to send? {name} holds: {shares}. For example:",
                f"# filter: \"{reference} == '{distinct[0]}'\"",
            ]
    return []
