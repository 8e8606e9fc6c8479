"""What a sampled column holds, for `backfill init`: its Torque type, how its numbers are
written, and whether it is personal data.

A column is a number only when every sampled value reads as one with the very converter
`run` uses (`convert.to_number`), under the decimal and thousands marks the values show
(`95,70`, `1.234,56`, `-1,265.00`): one invoice number with a letter (`C536383`) keeps the
column text, and so do digits with leading zeros (zip codes, padded ids). Personal data
(names, e-mail addresses, phone numbers, street addresses, postcodes) is told by the
column's name and, for names and e-mails, by its values; the draft leaves it out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

from backfill.look.time_guess import failed_rows
from backfill.mapping.convert import to_number

FREE_TEXT_LENGTH = 40
NAME_DISTINCT = 100
NAME_DISTINCT_SHARE = 0.2
PERSON_SHARE = 0.8  # of the values that look like a person's name or an e-mail address
# (decimal, thousands) in the order tried: the first under which every value reads wins,
# except that marks for thousands are chosen only when some value shows them.
NUMBER_MARKS: tuple[tuple[str, str | None], ...] = (
    (".", None),
    (",", None),
    (",", "."),
    (".", ","),
    (",", " "),
    (".", " "),
    (".", "'"),
)
CONSENT = "personal data: sending it to a third party needs a reason and the customer's consent"
_INT = re.compile(r"^[+-]?[0-9]+$")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .\-/]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "y", "n", "null"}
_IDENTIFIER_NAME = re.compile(
    r"(^|[^a-z])(id|code|zip|postal|postcode|sku|phone|ean|upc)s?($|[^a-z])|id$", re.I
)
_TRUE_FALSE = ({"true", "false"}, {"yes", "no"}, {"1", "0"}, {"y", "n"}, {"t", "f"})
_EMAIL_VALUE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PERSON_VALUE = re.compile(r"^[^\W\d_][^\W\d_'.-]*([ '.-]+[^\W\d_][^\W\d_'.-]*){1,3}$")
_PERSONAL_NAMES = (
    ("an e-mail address", re.compile(r"e-?mail", re.I)),
    ("a phone number", re.compile(r"phone|mobile|(^|[^a-z])(tel|fax)($|[^a-z])", re.I)),
    ("a postcode", re.compile(r"zip|postal|postcode|post code|plz", re.I)),
    ("an IP address", re.compile(r"(^|[^a-z])ip([^a-z]|$)", re.I)),
    (
        "a street address",
        re.compile(r"address|street|addr[0-9 _]|(^|[^a-z])(line ?[12]|house)([^a-z]|$)", re.I),
    ),
    (
        "a person's name",
        re.compile(
            r"((first|last|full|given|family|middle|sur|nick|customer|buyer|billing|shipping|"
            r"recipient|bill[ _-]?to|ship[ _-]?to|contact|payer|client|user|member|owner)"
            r"[ _-]?name)|surname|^(buyer|recipient|payer|attention)$",
            re.I,
        ),
    ),
)


@dataclass
class ColumnKind:
    """The type a column is drafted with, why, and whether it is sent."""

    type: str
    note: str
    active: bool = True
    extra: list[str] = field(default_factory=list)
    marks: dict[str, str] = field(default_factory=dict)  # decimal / thousands, when not "."


def personal_data(name: str, present: pa.Array) -> str | None:
    """What personal data the column holds ("an e-mail address"...), or None."""
    for what, pattern in _PERSONAL_NAMES:
        if pattern.search(name):
            return what
    if not (pa.types.is_string(present.type) or pa.types.is_large_string(present.type)):
        return None
    values = [v.strip() for v in present.to_pylist() if v and v.strip()]
    if not values:
        return None
    if sum(bool(_EMAIL_VALUE.match(v)) for v in values) >= PERSON_SHARE * len(values):
        return "an e-mail address"
    if re.search(r"name", name, re.I) and _people(values):
        return "a person's name"
    return None


def _people(values: list[str]) -> bool:
    """Two to four capitalised words, no digits: `Ana Souza`, `Jean-Luc O'Neil`."""
    looks = [v for v in values if _PERSON_VALUE.match(v) and v[:1].isupper()]
    return len(looks) >= PERSON_SHARE * len(values)


def column_kind(name: str, present: pa.Array) -> ColumnKind:
    """The kind of a column from its values that are there (none missing)."""
    if pa.types.is_boolean(present.type):
        return ColumnKind("boolean", "a boolean column")
    if pa.types.is_integer(present.type) or pa.types.is_floating(present.type):
        return ColumnKind("number", f"a {present.type} column")
    if pa.types.is_decimal(present.type):
        return ColumnKind("number", "a decimal column")
    if not (pa.types.is_string(present.type) or pa.types.is_large_string(present.type)):
        return ColumnKind("string", f"a {present.type} column, sent as text")
    values = [v for v in present.to_pylist() if v is not None]
    distinct = sorted(set(values))
    if len(distinct) == 2:
        return _two_values(name, distinct, values)
    number = _number_kind(name, present, values)
    if number is not None:
        return number
    mean_length = sum(map(len, values)) / max(len(values), 1)
    if mean_length > FREE_TEXT_LENGTH:
        why = f"free text (about {mean_length:.0f} characters); send it if needed"
        return ColumnKind("string", why, active=False)
    spaced = sum(" " in v for v in values) > len(values) / 2
    if (
        spaced
        and len(distinct) >= NAME_DISTINCT
        and len(distinct) >= NAME_DISTINCT_SHARE * len(values)
    ):
        why = f"names with many values ({len(distinct):,} distinct in {len(values):,})"
        return ColumnKind("string", why + ": left out; send them if the offer needs them", False)
    shown = ", ".join(_short(v) for v in distinct[:4]) + (", ..." if len(distinct) > 4 else "")
    return ColumnKind("string", f"text, {len(distinct):,} distinct values ({shown})")


def _number_kind(name: str, present: pa.Array, values: list[str]) -> ColumnKind | None:
    """A number when every value reads as one; text for ids and digits with leading zeros;
    None when the values are not numbers (then they are text of some kind)."""
    if not values:
        return None
    integers = [v.strip() for v in values if _INT.match(v.strip())]
    if len(integers) == len(values):
        zeros = [v for v in integers if len(v.lstrip("+-")) > 1 and v.lstrip("+-")[0] == "0"]
        if zeros:
            return ColumnKind("string", f"digits with leading zeros ({zeros[0]!r}): kept as text")
        if _IDENTIFIER_NAME.search(name):
            return ColumnKind("string", "an identifier made of digits: kept as text")
        return ColumnKind("number", "whole numbers")
    marks = number_marks(present)
    if marks is not None:
        decimal, thousands = marks
        spec = {} if decimal == "." else {"decimal": decimal}
        if thousands is not None:
            spec["thousands"] = thousands
        how = f", written with {decimal!r} before the fraction" if spec else ""
        how += f" and {thousands!r} between thousands" if thousands else ""
        return ColumnKind("number", "decimal numbers" + how, marks=spec)
    readable = _readable_share(present)
    if integers and readable >= 0.5:
        odd = next(v for v in values if not _INT.match(v.strip()))
        return ColumnKind(
            "string",
            f"mostly numbers, but not all ({odd!r}): kept as text; type: number would fail "
            "those rows",
        )
    return None


def number_marks(present: pa.Array) -> tuple[str, str | None] | None:
    """The (decimal, thousands) marks under which every value reads as a number; marks
    for thousands only when some value holds one beside a fraction or in a group."""
    for decimal, thousands in NUMBER_MARKS:
        converted = to_number(present, decimal, thousands)
        if failed_rows(converted).any():
            continue
        if thousands is None or _shows_grouping(present, decimal, thousands):
            return decimal, thousands
    return None


def _shows_grouping(present: pa.Array, decimal: str, thousands: str) -> bool:
    grouped = re.compile(rf"^[+-]?[0-9]{{1,3}}([{re.escape(thousands)}][0-9]{{3}})+")
    return any(v and grouped.match(v.strip()) for v in present.to_pylist())


def _readable_share(present: pa.Array) -> float:
    converted = to_number(present)
    return 1 - float(failed_rows(converted).mean()) if len(present) else 0.0


def _two_values(name: str, distinct: list[str], values: list[str]) -> ColumnKind:
    lowered = {v.lower() for v in distinct}
    if lowered in _TRUE_FALSE:
        return ColumnKind("boolean", f"two values ({', '.join(distinct)}): a boolean")
    common = max(distinct, key=values.count)
    other = next(v for v in distinct if v != common)
    hint = (
        f"# two values: a boolean? {{column: {scalar(name)}, type: boolean, "
        f"true: [{scalar(common)}], false: [{scalar(other)}]}}"
    )
    return ColumnKind("string", f"two values ({_short(common)}, {_short(other)})", extra=[hint])


def scalar(text: str) -> str:
    """`text` as a YAML scalar: plain where that reads back as the same text, else quoted."""
    if _PLAIN.match(text) and text.lower() not in _RESERVED and text == text.strip():
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _short(value: str) -> str:
    return repr(value if len(value) <= 24 else value[:21] + "...")
