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
from backfill.look.column_kinds import CONSENT, column_kind, personal_data, scalar
from backfill.look.order_rows import (
    LineItems,
    find_line_items,
    id_lines,
    line_item_lines,
    status_filter_lines,
)
from backfill.look.time_guess import TimestampGuess, failed_rows, guess_timestamps
from backfill.look.time_parts import TimeParts
from backfill.mapping.convert import PubkeyChecker, missing_mask
from backfill.mapping.spec import mapping_from_dict
from backfill.read.base import is_unnamed
from backfill.read.formats import CsvReader, named_delimiter, text_file_note
from backfill.read.sampling import SAMPLE_ROWS, Sample, sample_source, sniff_source
from backfill.read.sniff import Sniffed

__all__ = ["Draft", "FieldDraft", "draft_mapping", "field_name", "scalar"]

DEFAULT_EVENT_NAME = "ORDER"
WALLET_SHARE = 0.9  # of the sampled values present: a few bad keys are the report's business
OPTIONAL_SHARE = 0.05  # empty in at least this share of the sample: optional
# When no column reads as times, the draft names one under a format no value can match, so
# that every row fails until the user picks the right column: never 1970, never a guess.
NO_TIME_FORMAT = "%Y CHOOSE THE TIME COLUMN AND ITS FORMAT"
_IDENTIFIER_NAME = re.compile(
    r"(^|[^a-z])(id|code|zip|postal|postcode|sku|phone|ean|upc)s?($|[^a-z])|id$", re.I
)
_BUYER_NAME = re.compile(r"customer|user|buyer|client|account|member|email|wallet|address", re.I)
_TIME_WORDS = re.compile(r"date|time|created|placed|_at$| at$", re.I)
_WALLET_NAME = re.compile(r"wallet|pub_?key|address|owner", re.I)
_EMAIL_NAME = re.compile(r"e-?mail", re.I)
_NOT_BUYER = re.compile(
    r"address|street|zip|postal|postcode|card|phone|name|city|country|state|province|"
    r"line ?[12]",
    re.I,
)


@dataclass
class FieldDraft:
    """One event_data line: active or commented out, and why."""

    name: str
    column: str
    spec: dict[str, object]
    note: str
    active: bool = True
    extra: list[str] = field(default_factory=list)
    personal: bool = False


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
    sniffed: Sniffed | None = None
    line_items: LineItems | None = None
    time_parts: TimeParts = field(default_factory=TimeParts)


def draft_mapping(
    path: str | Path,
    *,
    event_name: str = DEFAULT_EVENT_NAME,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> Draft:
    """Sample `path` and draft a mapping for it; the text loads with `load_mapping`. A CSV's
    delimiter and encoding, when not given, are sniffed from its first bytes."""
    sniffed = sniff_source(path) if delimiter is None or encoding is None else None
    if sniffed is not None:
        delimiter = delimiter or sniffed.delimiter
        encoding = encoding or sniffed.encoding
    sample = sample_source(
        path, delimiter=delimiter, encoding=encoding, sheet=sheet, rows=sample_rows
    )
    delimiter = _delimiter_read(sample, delimiter)
    guesses = guess_timestamps(sample.table)
    chosen = guesses[0] if guesses and not guesses[0].sparse else None
    items = find_line_items(sample.table)
    orders = sample.table.filter(pa.array(items.keep)) if items is not None else sample.table
    wallet = _wallet_column(orders, {chosen.column} if chosen else set())
    taken = {chosen.column} if chosen else set()
    taken |= {wallet} if wallet else set()
    parts = TimeParts.find(orders, chosen.date_only, taken) if chosen else TimeParts()
    taken |= parts.columns
    pubkey_column = wallet or _buyer_column(orders, taken)
    taken.add(pubkey_column)
    fields = _field_drafts(orders, taken)
    chosen_column = chosen.column if chosen else _placeholder_time_column(sample.table, taken)
    others = [g for g in guesses if g is not chosen]
    draft = Draft("", sample, chosen, others, wallet, pubkey_column, fields, sniffed, items)
    draft.time_parts = parts
    draft.text = _render(draft, event_name, chosen_column, orders, delimiter, encoding)
    mapping_from_dict(yaml.safe_load(draft.text), origin="the draft")  # one that cannot load: a bug
    return draft


def _placeholder_time_column(table: pa.Table, taken: set[str]) -> str:
    """A text column to name when none reads as times (every row then fails)."""
    names = [n for n in table.column_names if n not in taken] or table.column_names
    timely = [n for n in names if _TIME_WORDS.search(n)]
    text = [n for n in names if pa.types.is_string(table.schema.field(n).type)]
    return (timely or text or names)[0]


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
    """The column that identifies the buyer, for the wallet lookup: a customer id, then an
    e-mail address, then another buyer-like column; never an address, zip, card or name."""
    names = [n for n in table.column_names if n not in skip] or table.column_names
    return min(names, key=lambda name: (_buyer_rank(name), names.index(name)))


def _buyer_rank(name: str) -> int:
    email = bool(_EMAIL_NAME.search(name))
    if _NOT_BUYER.search(name) and not email:
        return 4
    if _BUYER_NAME.search(name) and _IDENTIFIER_NAME.search(name) and not email:
        return 0
    if email:
        return 1 if not re.search(r"(^|[^a-z])to([^a-z]|$)|seller|merchant", name, re.I) else 2
    return 2 if _BUYER_NAME.search(name) else 3


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
        chosen = next((d for d in drafts if not d.personal), None)
        if chosen is not None:
            chosen.active = True
    return drafts


def _field_draft(column_name: str, column: pa.Array, names: set[str]) -> FieldDraft:
    name = field_name(column_name, names)
    missing = missing_mask(column)
    rows, empty = len(column), int(missing.sum())
    spec: dict[str, object] = {"column": column_name}
    if rows and empty == rows:
        spec["type"] = "string"
        return FieldDraft(name, column_name, spec, "empty in every sampled row", active=False)
    present = column.filter(pa.array(~missing))
    if is_unnamed(column_name):
        spec["type"] = "string"
        note = "no name in the file's header (pandas' index column?): named as pandas reads it"
        return FieldDraft(name, column_name, spec, note, active=False)
    kind = column_kind(column_name, present)
    spec["type"] = kind.type
    spec.update(kind.marks)
    note, active = kind.note, kind.active
    personal = personal_data(column_name, present)
    if personal is not None:
        note, active = f"{personal}: {CONSENT}", False
    elif empty and empty >= OPTIONAL_SHARE * rows:
        spec["optional"] = True
        note += f"; empty in {empty:,} of {rows:,} sampled rows: left out of those events"
    elif empty:
        note += (
            f"; empty in {empty:,} sampled rows, which fail: add optional: true or default: "
            "to send them"
        )
    return FieldDraft(name, column_name, spec, note, active, kind.extra, personal is not None)


# --- YAML text ---------------------------------------------------------------------------


def _flow(spec: dict[str, object]) -> str:
    parts = []
    for key, value in spec.items():
        shown = ("true" if value else "false") if isinstance(value, bool) else scalar(str(value))
        parts.append(f"{key}: {shown}")
    return "{" + ", ".join(parts) + "}"


def _render(
    draft: Draft,
    event_name: str,
    time_column: str,
    orders: pa.Table,
    delimiter: str,
    encoding: str | None,
) -> str:
    source = source_last_part(draft.sample.source.name)
    notes = [text_file_note(f.name) for f in draft.sample.source.files[:1]]
    lines = [
        f"# A draft mapping by `backfill init` for {source}, from {draft.sample.how}.",
        *[f"# {note}" for note in notes if note],
        *_reading_lines(draft.sniffed, delimiter, encoding),
        "# Every choice is explained beside it: read them, edit, then look before you send:",
        f"#   backfill plan {source} -m map.yaml{reading_options(delimiter, encoding)}",
        "# Editors check this file as you type: `backfill schema > map.schema.json`, then",
        "# make this the first line:  # yaml-language-server: $schema=map.schema.json",
        "",
        f"event_name: {scalar(event_name)}   # the custom event's name, as created in Torque",
        *id_lines(orders, draft.line_items),
        "",
        "timestamp:",
        *_timestamp_lines(draft.timestamp, time_column, draft.other_timestamps, draft.time_parts),
        "",
        "user:",
        *_user_lines(draft.wallet, draft.pubkey_column, draft.sample.rows),
        "",
        "event_data:",
        *_field_lines(draft.fields),
    ]
    if draft.line_items is not None:
        lines += line_item_lines(draft.line_items)
    lines += status_filter_lines(orders, draft.line_items)
    return "\n".join(lines) + "\n"


def _delimiter_read(sample: Sample, given: str | None) -> str:
    """The delimiter the sample was read with (a .tsv's tab when none was given)."""
    readers = [f for f in sample.source.files if isinstance(f, CsvReader)]
    return readers[0].delimiter if readers else named_delimiter(given or ",")


def reading_options(delimiter: str, encoding: str | None) -> str:
    """The command-line options that read the source as the draft did: a delimiter by its
    name where a shell would need quoting tricks (`--delimiter tab`, never $'\\t')."""
    options = ""
    if delimiter != ",":
        options += " --delimiter " + ("tab" if delimiter == "\t" else f"'{delimiter}'")
    if encoding is not None:
        options += f" --encoding {encoding}"
    return options


def _reading_lines(sniffed: Sniffed | None, delimiter: str, encoding: str | None) -> list[str]:
    """How the file was read, when that needs options: every command must be given them."""
    if not reading_options(delimiter, encoding):
        return []
    lines = ["# Read as sniffed from the file's first bytes; give validate, plan and run the same:"]
    if delimiter != ",":
        why = sniffed.delimiter_why if sniffed is not None else "as the file's name says"
        lines.append(f"#   --delimiter: {why}")
    if encoding is not None and sniffed is not None:
        lines.append(f"#   --encoding {encoding}: {sniffed.encoding_why}")
    return lines


def _field_lines(fields: list[FieldDraft]) -> list[str]:
    width = max((len(f.name) + len(_flow(f.spec)) + 2 * (not f.active) for f in fields), default=0)
    width += 4
    lines = []
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
    return lines


def _timestamp_lines(
    chosen: TimestampGuess | None, column: str, others: list[TimestampGuess], parts: TimeParts
) -> list[str]:
    lines = []
    if chosen is None:
        lines += [
            "  # No column reads as plausible order times in the sample (ISO-8601, epoch",
            "  # numbers, dates such as 03/01/2019, between 2000 and now). Name the column",
            "  # that holds each order's time and its format: as drafted, EVERY ROW FAILS.",
            f"  column: {scalar(column)}",
            "  unit: iso",
            f'  format: "{NO_TIME_FORMAT}"',
            "  timezone: UTC",
        ]
    else:
        lines.append(f"  column: {scalar(chosen.column)}   # {chosen.why}")
        lines += parts.lines(chosen.format)
        lines.append(f"  unit: {chosen.unit}   # {chosen.unit_why}")
        if chosen.format is not None and parts.keeps_format():
            lines.append(f'  format: "{chosen.format}"   # {chosen.format_why}')
        zone_why = chosen.timezone_why
        if parts.zone_column is not None:
            zone_why = f"not used: each row's zone is in {parts.zone_column}"
        lines.append(f"  timezone: UTC   # {zone_why}")
        if chosen.date_only and parts.time_column is None:
            lines.append("  # dates without a time of day: every event is sent at midnight")
    for other in others:
        if other.sparse:
            lines.append(
                f"  # not chosen: {scalar(other.column)} ({other.summary}) is {other.empty_words}"
            )
        else:
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
