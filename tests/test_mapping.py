"""The YAML mapping: every mistake is one `MappingError` naming the file, the key, what was
found and what was expected; the CLI turns each into one line on stderr and exit code 2."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import CliResult

from backfill.cli import cli as cli_group
from backfill.errors import MappingError
from backfill.mapping.filter_tree import ALLOWED
from backfill.mapping.spec import FieldSpec, filter_columns, load_mapping, mapping_from_dict
from backfill.mapping.times import TimestampRule

COLUMNS = ["order_id", "created_at", "wallet", "total", "tier", "coupon", "status", "Order Date"]
BASE: dict[str, Any] = {
    "event_name": "STORE_ORDER",
    "timestamp": {"column": "created_at", "unit": "auto", "timezone": "UTC"},
    "user": {"pubKey": "wallet"},
    "event_data": {
        "orderId": "order_id",
        "amount": {"column": "total", "type": "number"},
        "premium": {"column": "tier", "type": "boolean", "true": ["premium"], "false": ["basic"]},
        "coupon": {"column": "coupon", "type": "string", "optional": True},
        "channel": {"value": "backfill"},
    },
    "filter": "status == 'paid'",
}
DELETE = object()


def changed(path: str, value: Any) -> dict[str, Any]:
    """BASE with the dotted `path` set to `value` (or removed, with DELETE)."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return data


def renamed(old: str, new: str) -> dict[str, Any]:
    return {new if key == old else key: value for key, value in BASE.items()}


def error_of(data: Any) -> str:
    with pytest.raises(MappingError) as caught:
        mapping_from_dict(data, origin="map.yaml")
    return str(caught.value)


# (mapping, message after "<file>: "): every message `mapping_from_dict` can give.
SHAPE_ERRORS = [
    pytest.param(
        renamed("event_data", "event_dta"),
        "event_dta: unknown key (did you mean 'event_data'?). "
        "Expected event_name, timestamp, user, event_data, filter, id.",
        id="unknown-top-key",
    ),
    pytest.param(
        changed("filtr", "x"),
        "filtr: unknown key (did you mean 'filter'?). "
        "Expected event_name, timestamp, user, event_data, filter, id.",
        id="unknown-top-key-filtr",
    ),
    pytest.param(
        changed("event_name", DELETE),
        "the required key 'event_name' is missing.",
        id="missing-event-name",
    ),
    pytest.param(
        changed("timestamp", DELETE),
        "the required key 'timestamp' is missing.",
        id="missing-timestamp",
    ),
    pytest.param(changed("user", DELETE), "the required key 'user' is missing.", id="missing-user"),
    pytest.param(
        changed("event_data", DELETE),
        "the required key 'event_data' is missing.",
        id="missing-event-data",
    ),
    pytest.param(
        changed("event_name", "  "),
        "event_name: expected the custom event's name as text; found '  '.",
        id="blank-event-name",
    ),
    pytest.param(
        changed("timestamp", ["created_at"]),
        "timestamp: expected a column name or keys column, time_column, timezone_column, unit, "
        "format, timezone, dates; found a list.",
        id="timestamp-not-a-mapping",
    ),
    pytest.param(
        changed("timestamp.colum", "created_at"),
        "timestamp.colum: unknown key (did you mean 'column'?). "
        "Expected column, time_column, timezone_column, unit, format, timezone, dates.",
        id="timestamp-key-typo",
    ),
    pytest.param(
        changed("timestamp.column", DELETE),
        "timestamp.column: expected a column name; found nothing.",
        id="timestamp-without-column",
    ),
    pytest.param(
        changed("timestamp.unit", "mss"),
        "timestamp.unit: expected one of auto, s, ms, us, ns, iso, excel; found 'mss' "
        "(did you mean 'ms'?).",
        id="bad-unit-typo",
    ),
    pytest.param(
        changed("timestamp.unit", "seconds"),
        "timestamp.unit: expected one of auto, s, ms, us, ns, iso, excel; found 'seconds'.",
        id="bad-unit",
    ),
    pytest.param(
        changed("timestamp.timezone", "Europe/Berln"),
        "timestamp.timezone: 'Europe/Berln' is not an IANA time zone; "
        "expected a name such as UTC, Europe/Berlin or America/New_York.",
        id="bad-timezone",
    ),
    pytest.param(
        changed("timestamp.timezone", "+02:00"),
        "timestamp.timezone: '+02:00' is not an IANA time zone; "
        "expected a name such as UTC, Europe/Berlin or America/New_York.",
        id="offset-as-timezone",
    ),
    pytest.param(
        changed("timestamp", {"column": "created_at", "unit": "ms", "format": "%d/%m/%Y"}),
        "timestamp.format applies to text; it cannot go with unit 'ms'.",
        id="format-with-epoch-unit",
    ),
    pytest.param(
        changed("timestamp.format", "dd/mm/yyyy"),
        "timestamp.format: expected a strptime format such as '%d/%m/%y'; found 'dd/mm/yyyy'.",
        id="format-without-percent",
    ),
    pytest.param(
        changed("user", "wallet"),
        "user: expected the key pubKey naming the wallet column; found 'wallet'.",
        id="user-not-a-mapping",
    ),
    pytest.param(
        changed("user", {"pubkey": "wallet"}),
        "user.pubkey: unknown key (did you mean 'pubKey'?). Expected pubKey.",
        id="pubkey-case-typo",
    ),
    pytest.param(
        changed("user", {}),
        "user.pubKey is missing: name the wallet column.",
        id="user-without-pubkey",
    ),
    pytest.param(
        changed("event_data", {}),
        "event_data: expected the event's fields, each a column name or keys such as column "
        "and type; found a mapping.",
        id="empty-event-data",
    ),
    pytest.param(
        changed("event_data.amount", 12),
        "event_data.amount: expected a column name, or keys such as column and type; found 12.",
        id="field-not-a-mapping",
    ),
    pytest.param(
        changed("event_data.amount", {"column": "total", "typ": "number"}),
        "event_data.amount.typ: unknown key (did you mean 'type'?). "
        "Expected column, value, type, true, false, default, optional, decimal, thousands, "
        "scale, lookup, key, match.",
        id="field-key-typo",
    ),
    pytest.param(
        changed("event_data.amount", {"column": "total", "type": "numbr"}),
        "event_data.amount.type: expected one of string, number, boolean; found 'numbr' "
        "(did you mean 'number'?).",
        id="field-type-typo",
    ),
    pytest.param(
        changed("event_data.amount", {"column": "total", "type": "int"}),
        "event_data.amount.type: expected one of string, number, boolean; found 'int'.",
        id="field-type-unknown",
    ),
    pytest.param(
        changed("event_data.amount", {"column": "total", "value": 3}),
        "event_data.amount: give exactly one of column or value.",
        id="column-and-value",
    ),
    pytest.param(
        changed("event_data.amount", {"type": "number"}),
        "event_data.amount: give exactly one of column or value.",
        id="neither-column-nor-value",
    ),
    pytest.param(
        changed("event_data.amount", {"value": "12", "type": "number"}),
        "event_data.amount: the value '12' is a string, but type says number.",
        id="constant-of-wrong-type",
    ),
    pytest.param(
        changed("event_data.amount", {"value": [1, 2]}),
        "event_data.amount.value: expected text, a number or true/false; found a list.",
        id="constant-not-a-scalar",
    ),
    pytest.param(
        changed("event_data.amount", {"column": "total", "type": "number", "decimal": ";"}),
        'event_data.amount.decimal: expected "." or ","; found \';\'.',
        id="decimal-not-a-mark",
    ),
    pytest.param(
        changed("event_data.amount", {"column": "total", "type": "number", "thousands": "_"}),
        "event_data.amount.thousands: expected one of '.', ',', ' ', \"'\", '\\xa0', "
        "'\\u202f'; found '_'.",
        id="thousands-not-a-mark",
    ),
    pytest.param(
        changed(
            "event_data.amount",
            {"column": "total", "type": "number", "decimal": ",", "thousands": ","},
        ),
        "event_data.amount: decimal and thousands are both ','; a number such as 1,234 could "
        "then be read two ways.",
        id="decimal-equals-thousands",
    ),
    pytest.param(
        changed("event_data.amount", {"column": "total", "thousands": "."}),
        "event_data.amount: decimal and thousands need a column and type: number.",
        id="thousands-without-number-type",
    ),
    pytest.param(
        changed("event_data.channel", {"value": 5, "decimal": ","}),
        "event_data.channel: decimal and thousands need a column and type: number.",
        id="decimal-on-a-constant",
    ),
    pytest.param(
        changed("event_data.premium", {"column": "tier", "true": ["premium"]}),
        "event_data.premium: true and false lists need type: boolean.",
        id="true-list-without-boolean",
    ),
    pytest.param(
        changed("event_data.premium", {"column": "tier", "type": "string", "false": ["basic"]}),
        "event_data.premium: true and false lists need type: boolean.",
        id="false-list-on-string",
    ),
    pytest.param(
        changed("event_data.premium", {"column": "tier", "type": "boolean", "true": [["x"]]}),
        "event_data.premium.true: expected a list of words; found [['x']].",
        id="true-list-of-lists",
    ),
    pytest.param(
        changed("event_data.amount", {"column": "total", "type": "number", "default": "0"}),
        "event_data.amount.default: expected a number; found '0'.",
        id="default-text-for-number",
    ),
    pytest.param(
        changed("event_data.amount", {"column": "total", "type": "number", "default": True}),
        "event_data.amount.default: expected a number; found True.",
        id="default-boolean-for-number",
    ),
    pytest.param(
        changed("event_data.premium", {"column": "tier", "type": "boolean", "default": 1}),
        "event_data.premium.default: expected a boolean; found 1.",
        id="default-number-for-boolean",
    ),
    pytest.param(
        changed("event_data.coupon", {"column": "coupon", "default": None}),
        "event_data.coupon.default: expected a string, number or boolean; found None.",
        id="default-null",
    ),
    pytest.param(
        changed("event_data.coupon", {"column": "coupon", "optional": "maybe"}),
        "event_data.coupon.optional: expected true or false; found 'maybe'.",
        id="optional-not-boolean",
    ),
    pytest.param(
        changed("filter", "status =="),
        f"filter: 'status ==' is not a valid expression (invalid syntax); allowed: {ALLOWED}.",
        id="filter-syntax",
    ),
    pytest.param(
        changed("filter", "status = 'paid'"),
        "filter: \"status = 'paid'\" is not a valid expression (invalid syntax); "
        f"allowed: {ALLOWED}.",
        id="filter-assignment",
    ),
    pytest.param(
        changed("filter", 5),
        "filter: expected an expression such as \"status == 'paid'\"; found 5.",
        id="filter-not-text",
    ),
]

# (mapping, message after "<file>: " without the source's name): checked against COLUMNS.
COLUMN_ERRORS = [
    pytest.param(
        changed("event_data.amount.column", "totl"),
        "event_data.amount.column: the column 'totl' is not in {source} "
        "(did you mean 'total'?). Its columns are: {columns}.",
        id="field-column-typo",
    ),
    pytest.param(
        changed("event_data.orderId", "order"),
        "event_data.orderId.column: the column 'order' is not in {source} "
        "(did you mean 'order_id'?). Its columns are: {columns}.",
        id="short-form-column",
    ),
    pytest.param(
        changed("timestamp.column", "created"),
        "timestamp.column: the column 'created' is not in {source} "
        "(did you mean 'created_at'?). Its columns are: {columns}.",
        id="timestamp-column",
    ),
    pytest.param(
        changed("user.pubKey", "pubkey"),
        "user.pubKey: the column 'pubkey' is not in {source}. Its columns are: {columns}.",
        id="pubkey-column",
    ),
    pytest.param(
        changed("filter", "state == 'paid'"),
        "filter: the column 'state' is not in {source} (did you mean 'status'?). "
        "Its columns are: {columns}.",
        id="filter-column",
    ),
    pytest.param(
        changed("filter", "`Order Dat` > '2024'"),
        "filter: the column 'Order Dat' is not in {source} (did you mean 'Order Date'?). "
        "Its columns are: {columns}.",
        id="filter-backticked-column",
    ),
]


@pytest.mark.parametrize(("data", "message"), SHAPE_ERRORS)
def test_every_mapping_mistake_is_one_message_naming_the_key(data: Any, message: str) -> None:
    assert error_of(data) == f"map.yaml: {message}"


@pytest.mark.parametrize(("data", "message"), COLUMN_ERRORS)
def test_a_column_the_source_lacks_is_named_with_the_sources_columns(
    data: Any, message: str
) -> None:
    mapping = mapping_from_dict(data, origin="map.yaml")
    with pytest.raises(MappingError) as caught:
        mapping.check_columns(COLUMNS, "orders.csv")
    expected = message.format(source="orders.csv", columns=", ".join(COLUMNS))
    assert str(caught.value) == f"map.yaml: {expected}"


@pytest.mark.parametrize(
    ("top", "kind"),
    [(None, "nothing"), ([1, 2], "a list"), ("STORE_ORDER", "'STORE_ORDER'"), (3, "3")],
)
def test_a_mapping_file_that_is_not_a_mapping_fails(top: Any, kind: str) -> None:
    assert error_of(top) == (
        "map.yaml: expected a mapping with the keys event_name, timestamp, user, event_data; "
        f"found {kind}."
    )


def test_the_base_mapping_and_all_its_forms_are_accepted() -> None:
    mapping = mapping_from_dict(BASE, origin="map.yaml")
    assert mapping.event_name == "STORE_ORDER"
    assert mapping.timestamp_column == "created_at"
    assert mapping.timestamp_rule == TimestampRule(unit="auto", timezone="UTC")
    assert mapping.pubkey_column == "wallet"
    assert mapping.filter == "status == 'paid'"
    assert mapping.fields == (
        FieldSpec(name="orderId", column="order_id"),
        FieldSpec(name="amount", column="total", type="number"),
        FieldSpec(
            name="premium",
            column="tier",
            type="boolean",
            true_values=("premium",),
            false_values=("basic",),
        ),
        FieldSpec(name="coupon", column="coupon", type="string", optional=True),
        FieldSpec(name="channel", value="backfill", type="string"),
    )
    assert mapping.columns == [
        "created_at",
        "wallet",
        "order_id",
        "total",
        "tier",
        "coupon",
        "status",
    ]
    mapping.check_columns(COLUMNS, "orders.csv")  # no error


def test_timestamp_short_form_and_defaults() -> None:
    mapping = mapping_from_dict(changed("timestamp", "created_at"))
    assert mapping.timestamp_column == "created_at"
    assert mapping.timestamp_rule == TimestampRule(unit="auto", format=None, timezone="UTC")


def test_a_mapping_without_filter_checks_its_columns() -> None:
    mapping = mapping_from_dict(changed("filter", DELETE), origin="map.yaml")
    assert mapping.filter is None
    mapping.check_columns(COLUMNS, "orders.csv")
    with pytest.raises(MappingError, match=r"the column 'total' is not in orders\.csv"):
        mapping.check_columns([c for c in COLUMNS if c != "total"], "orders.csv")


@pytest.mark.parametrize(
    ("value", "field_type"), [("web", "string"), (3, "number"), (2.5, "number"), (True, "boolean")]
)
def test_constants_take_the_type_of_their_value(value: Any, field_type: str) -> None:
    mapping = mapping_from_dict(changed("event_data.channel", {"value": value}))
    assert mapping.fields[-1] == FieldSpec(name="channel", value=value, type=field_type)


def test_defaults_of_the_right_type_are_kept() -> None:
    spec = {"column": "total", "type": "number", "default": 0}
    [_, amount, *_] = mapping_from_dict(changed("event_data.amount", spec)).fields
    assert (amount.default, amount.has_default, amount.optional) == (0, True, False)


@pytest.mark.parametrize(
    ("expression", "columns"),
    [
        ("status == 'paid'", ["status"]),
        ("`Order Date` >= '2024-01-01' and status != 'refunded'", ["Order Date", "status"]),
        ("number(total) > 10 or coupon == ''", ["total", "coupon"]),
        ("startswith(`Country/Region`, 'K')", ["Country/Region"]),
        ("flag == True", ["flag"]),
    ],
)
def test_filter_columns_include_backticked_names(expression: str, columns: list[str]) -> None:
    assert sorted(filter_columns(expression)) == sorted(columns)


# --- the YAML file -------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "map.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_mapping_reads_a_yaml_file(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(BASE, sort_keys=False))
    mapping = load_mapping(path)
    assert mapping == mapping_from_dict(BASE, origin=str(path))
    assert mapping.origin == str(path)


def test_a_missing_mapping_file_fails(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as caught:
        load_mapping(tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: no such mapping file."


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        (
            "event_name: E\ntimestamp: ts\nuser: {pubKey: w\nevent_data: {a: b}\n",
            "line 4, column 11",
            "expected ',' or '}', but got ':'",
        ),
        (
            "event_name: E\n  bad: indent\n",
            "line 2, column 6",
            "mapping values are not allowed here",
        ),
        (
            "event_name: E\n\ttimestamp: ts\n",
            "line 2, column 1",
            "found character '\\t' that cannot start any token",
        ),
    ],
)
def test_bad_yaml_names_the_line(tmp_path: Path, text: str, where: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert str(caught.value) == f"{path}: not valid YAML at {where}: {problem}."


def test_bare_yaml_true_false_keys_and_yes_no_words_make_boolean_lists(tmp_path: Path) -> None:
    text = yaml.safe_dump(changed("event_data.premium", None), sort_keys=False).replace(
        "premium: null",
        "premium: {column: tier, type: boolean, true: [yes, Premium, 1], false: [no, basic, 0]}",
    )
    assert "true: [yes" in text
    [_, _, premium, *_] = load_mapping(write(tmp_path, text)).fields
    assert premium.type == "boolean"
    # YAML reads `yes` as true and loses the spelling: it stands for every spelling of true.
    assert set(premium.true_values or ()) == {"true", "yes", "on", "Premium", "1"}
    assert set(premium.false_values or ()) == {"false", "no", "off", "basic", "0"}


def test_quoted_true_false_keys_work_like_bare_ones(tmp_path: Path) -> None:
    field = '{column: tier, type: boolean, "true": [premium], "false": [basic]}'
    text = yaml.safe_dump(changed("event_data.premium", None), sort_keys=False)
    mapping = load_mapping(write(tmp_path, text.replace("premium: null", f"premium: {field}")))
    assert mapping.fields[2].true_values == ("premium",)
    assert mapping.fields[2].false_values == ("basic",)


def test_a_single_word_instead_of_a_list_is_a_list_of_one(tmp_path: Path) -> None:
    spec = {"column": "tier", "type": "boolean", "true": "premium", "false": "basic"}
    [_, _, premium, *_] = mapping_from_dict(changed("event_data.premium", spec)).fields
    assert (premium.true_values, premium.false_values) == (("premium",), ("basic",))


def test_fingerprint_ignores_comments_and_key_order_but_not_meaning(tmp_path: Path) -> None:
    plain = load_mapping(write(tmp_path, yaml.safe_dump(BASE, sort_keys=True), "a.yaml"))
    commented = "# orders\n" + yaml.safe_dump(BASE, sort_keys=False)
    same = load_mapping(write(tmp_path, commented, "b.yaml"))
    other = load_mapping(
        write(tmp_path, yaml.safe_dump(changed("timestamp.timezone", "Europe/Berlin")), "c.yaml")
    )
    assert plain.fingerprint == same.fingerprint
    assert plain.fingerprint != other.fingerprint


def test_with_field_checks_the_new_field_and_keeps_the_rest() -> None:
    mapping = mapping_from_dict(BASE, origin="map.yaml")
    fixed = mapping.with_field("amount", {"column": "total", "type": "number", "default": 0})
    assert fixed.fields[1].has_default and fixed.fields[1].default == 0
    assert fixed.fields[0] == mapping.fields[0]
    assert mapping.fields[1].has_default is False  # the original is unchanged
    with pytest.raises(MappingError, match=r"event_data\.amount\.type: .* found 'numbr'"):
        mapping.with_field("amount", {"column": "total", "type": "numbr"})


# --- through the CLI: exit 2, one line on stderr, no traceback -----------------------------
# Every message goes through the real `validate` command in-process (CliRunner: quick); a few
# also through `python -m backfill` in a subprocess, as a user runs it.

CLI_CASES = [  # (mapping data or raw YAML text or None for no file, message)
    *[pytest.param(*case.values, id=case.id) for case in SHAPE_ERRORS],
    *[pytest.param(*case.values, id=case.id) for case in COLUMN_ERRORS],
    pytest.param(
        "- event_name\n- timestamp\n",
        "expected a mapping with the keys event_name, timestamp, user, event_data; found a list.",
        id="yaml-list",
    ),
    pytest.param(
        "event_name: E\ntimestamp: ts\nuser: {pubKey: w\nevent_data: {a: b}\n",
        "not valid YAML at line 4, column 11: expected ',' or '}', but got ':'.",
        id="bad-yaml",
    ),
    pytest.param(None, "no such mapping file.", id="missing-file"),
]
SUBPROCESS_CASES = ("missing-file", "bad-yaml", "unknown-top-key", "field-column-typo")


def cli_case(tmp_path: Path, data: Any) -> tuple[Path, Path]:
    """An orders file with COLUMNS (no rows) and the mapping file of one case."""
    source = tmp_path / "orders.csv"
    source.write_text(",".join(f'"{c}"' for c in COLUMNS) + "\n", encoding="utf-8")
    path = tmp_path / "map.yaml"
    if data is not None:
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return source, path


def expected_line(message: str, path: Path, source: Path) -> str:
    text = message.replace("{source}", str(source)).replace("{columns}", ", ".join(COLUMNS))
    return f"Error: {path}: {text}\n"


@pytest.mark.parametrize(("data", "message"), CLI_CASES)
def test_cli_reports_each_mapping_mistake_in_one_line_with_exit_code_2(
    tmp_path: Path, data: Any, message: str
) -> None:
    source, path = cli_case(tmp_path, data)
    result = CliRunner().invoke(cli_group, ["validate", str(source), "--mapping", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr == expected_line(message, path, source)
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("data", "message"), [case for case in CLI_CASES if case.id in SUBPROCESS_CASES]
)
def test_backfill_process_exits_2_with_one_line_and_no_traceback(
    cli: Callable[..., CliResult], tmp_path: Path, data: Any, message: str
) -> None:
    source, path = cli_case(tmp_path, data)
    result = cli("validate", source, "--mapping", path)
    assert result.code == 2
    assert result.stderr == expected_line(message, path, source)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_accepts_the_base_mapping(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    source, path = cli_case(tmp_path, BASE)
    result = cli("validate", source, "--mapping", path, "--json")
    assert (result.code, result.stderr) == (0, "")
    assert result.json()["read"] == 0


@pytest.mark.parametrize(
    "expression",
    [
        "total.to_csv('/tmp/leak.csv') > 0",
        "status.__class__ == 1",
        "total.pipe(print) > 0",
        "total.apply(len) > 0",
    ],
)
def test_a_filter_that_could_write_files_or_run_code_is_refused(expression: str) -> None:
    raw = {
        "event_name": "E",
        "timestamp": "t",
        "user": {"pubKey": "w"},
        "event_data": {"a": "b"},
        "filter": expression,
    }
    with pytest.raises(MappingError, match=r"^<mapping>: filter: attribute access \(`\w+\.\w+`\)"):
        mapping_from_dict(raw)


def test_decimal_and_thousands_are_kept_on_the_field() -> None:
    data = changed(
        "event_data.amount", {"column": "total", "type": "number", "decimal": ",", "thousands": " "}
    )
    amount = mapping_from_dict(data, origin="map.yaml").fields[1]
    assert (amount.decimal, amount.thousands) == (",", " ")
    assert mapping_from_dict(BASE, origin="map.yaml").fields[1].decimal == "."


def test_a_column_in_backticks_is_the_column_of_that_name() -> None:
    data = changed("event_data.orderId", "`customer.id`")
    data["event_data"]["amount"] = {"column": "`amount.value`", "type": "number"}
    data["user"]["pubKey"] = "`customer.wallet`"
    mapping = mapping_from_dict(data, origin="map.yaml")
    assert mapping.pubkey_column == "customer.wallet"
    assert [spec.column for spec in mapping.fields[:2]] == ["customer.id", "amount.value"]
