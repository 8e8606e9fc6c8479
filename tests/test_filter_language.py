"""The filter language: what it accepts, and that anything else is refused when the mapping
loads, with one line naming the construct, and without running or writing anything."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLE, examples, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backfill.errors import MappingError
from backfill.mapping.filter_language import MAX_DEPTH, MAX_LENGTH, filter_columns, parse_filter
from backfill.mapping.filter_tree import (
    Check,
    Column,
    Comparison,
    Constant,
    Function,
    Logic,
    Membership,
    Not,
    Truth,
)
from backfill.mapping.spec import mapping_from_dict

BASE = {
    "event_name": "E",
    "timestamp": "created_at",
    "user": {"pubKey": "wallet"},
    "event_data": {"sku": "sku"},
}
ISSUE_12_FILTERS = [  # the hostile filters of issue 12, which pandas would have run
    "status == 'paid' or status.str.len().values[0:1].tofile('{target}', sep=' ', "
    "format='import os; os.system(\"id\") # %d') == 1",
    "status == 'paid' or status.values.dump('{target}') == 1",
]


def load_error(expression: str) -> str:
    with pytest.raises(MappingError) as caught:
        mapping_from_dict({**BASE, "filter": expression}, origin="map.yaml")
    return str(caught.value)


# --- what the language is ------------------------------------------------------------------


def test_a_filter_parses_into_the_languages_own_tree() -> None:
    tree = parse_filter(
        "`Order Status` in ['paid', 'shipped'] and not (number(total) <= -1.5 or isna(coupon))"
        " or startswith(lower(sku), 'ab') or flag == true"
    )
    status, total, coupon, sku, flag = (
        Column("Order Status", "`Order Status`"),
        Column("total", "total"),
        Column("coupon", "coupon"),
        Column("sku", "sku"),
        Column("flag", "flag"),
    )
    assert isinstance(tree, Logic) and tree.op == "or"
    first, second, third = tree.operands
    assert isinstance(first, Logic) and first.op == "and"
    membership, negation = first.operands
    assert membership == Membership(
        status,
        (Constant("paid", "'paid'"), Constant("shipped", "'shipped'")),
        False,
        "`Order Status` in ['paid', 'shipped']",
    )
    assert isinstance(negation, Not) and isinstance(negation.operand, Logic)
    comparison, missing = negation.operand.operands
    assert comparison == Comparison(
        "<=",
        Function("number", total, "number(total)"),
        Constant(-1.5, "-1.5"),
        "number(total) <= -1.5",
    )
    assert missing == Check("isna", coupon, None, "isna(coupon)")
    assert second == Check(
        "startswith",
        Function("lower", sku, "lower(sku)"),
        "ab",
        "startswith(lower(sku), 'ab')",
    )
    assert third == Comparison("==", flag, Constant(True, "true"), "flag == true")


def test_signs_true_and_false_and_not_equal_parse_as_written() -> None:
    text = "total > +5 and flag != True and flag in [true, false]"
    tree = parse_filter(text)
    total, flag = Column("total", "total"), Column("flag", "flag")
    assert isinstance(tree, Logic) and tree.text == text
    assert parse_filter("not flag") == Not(Truth(flag, "flag"), "not flag")
    assert tree.operands == (
        Comparison(">", total, Constant(5, "+5"), "total > +5"),
        Comparison("!=", flag, Constant(True, "True"), "flag != True"),
        Membership(
            flag,
            (Constant(True, "true"), Constant(False, "false")),
            False,
            "flag in [true, false]",
        ),
    )


@pytest.mark.parametrize(
    ("expression", "columns"),
    [
        ("status == 'paid'", ["status"]),
        ("`Order Date` >= '2024-01-01' and status != 'refunded'", ["Order Date", "status"]),
        ("number(total) > 10 or coupon == ''", ["total", "coupon"]),
        ("startswith(`Country/Region`, 'K')", ["Country/Region"]),
        ("flag == True and paid", ["flag", "paid"]),
        ("`a`b` == 1", None),  # a backtick inside backticks cannot be written
        ("status == 'it`s'", ["status"]),  # a backtick in quoted text is text
        ("`true` or `status`", ["true", "status"]),
        ("\ufb01eld == 'x' and Größe > 1", ["\ufb01eld", "Größe"]),  # not folded to "field"
        ("\uff54rue", ["\uff54rue"]),  # a fullwidth t: a column, not the word true
    ],
)
def test_the_columns_a_filter_reads(expression: str, columns: list[str] | None) -> None:
    if columns is None:
        with pytest.raises(ValueError):
            filter_columns(expression)
    else:
        assert filter_columns(expression) == columns


@pytest.mark.parametrize(
    ("expression", "columns"),
    [
        ("status == '''it's `x`''' or flag", ["status", "flag"]),
        ('status == """say "`x`" """ or flag', ["status", "flag"]),
        ("'''`a`''' == status", ["status"]),
        ("status == '''it's `x`'''", ["status"]),
        ("INBOX == 'a' or `Order Status`", ["INBOX", "Order Status"]),
        ("'''a''' == `Order Status`", ["Order Status"]),
        ("status == 'a\\'`x`' or `Order Status`", ["status", "Order Status"]),
        ("status == 'a\\'' or `Order Status`", ["status", "Order Status"]),  # \' is text
        ('status == "\\\\" or `Order Status`', ["status", "Order Status"]),  # \\ is text
    ],
)
def test_triple_quoted_text_is_text_to_its_closing_triple_quote(
    expression: str, columns: list[str]
) -> None:
    """A quote or a backtick inside '''text''' neither ends the text nor names a column."""
    assert filter_columns(expression) == columns


@pytest.mark.parametrize("expression", ["lower('ABC') == status", "number('12') > total"])
def test_a_function_of_a_text_literal_is_allowed(expression: str) -> None:
    parse_filter(expression)


@pytest.mark.parametrize(("length", "shown"), [(80, "x" * 69 + "'"), (81, "x" * 67 + "...")])
def test_a_long_filter_is_shown_cut_to_80_characters_in_a_syntax_error(
    length: int, shown: str
) -> None:
    expression = "status = '" + "x" * (length - 11) + "'"
    assert len(expression) == length
    assert load_error(expression).startswith(
        f'map.yaml: filter: "status = \'{shown}" is not a valid expression'
    )


def test_a_bare_boolean_column_is_a_condition() -> None:
    assert parse_filter("paid") == Truth(Column("paid", "paid"), "paid")


# --- what it refuses, and how it says so ---------------------------------------------------

ALLOWED = (
    "allowed: comparisons (== != < <= > >=), in / not in [list of literals], and, or, not, "
    "parentheses, column names (`backticks` for other names), 'text', numbers, true/false, "
    "and the functions isna, notna, startswith, endswith, contains, lower, number."
)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "total.astype('float') > 10",
            "attribute access (`total.astype`) is not allowed; to compare text as a number "
            f"write number(total); {ALLOWED}",
        ),
        (
            ISSUE_12_FILTERS[0].format(target="/tmp/x.pth"),
            "attribute access (`status.str`) is not allowed; for text write "
            f"startswith(status, 'x'), endswith, contains or lower(status); {ALLOWED}",
        ),
        (
            ISSUE_12_FILTERS[1].format(target="/tmp/x.pkl"),
            f"attribute access (`status.values`) is not allowed; {ALLOWED}",
        ),
        ("status.str.startswith('p')", None),
        (
            "open('/tmp/x', 'w') == 1",
            f"a call of open() (`open('/tmp/x', 'w')`) is not allowed; {ALLOWED}",
        ),
        ("status[0] == 'p'", f"subscript (`status[0]`) is not allowed; {ALLOWED}"),
        (
            "(lambda: 1)() == 1",
            f"a call of a computed function() (`(lambda: 1)()`) is not allowed; {ALLOWED}",
        ),
        ("status == b'x'", f"a bytes literal (`b'x'`) is not allowed; {ALLOWED}"),
        ("status == (1, 2)", f"Tuple (`(1, 2)`) is not allowed; {ALLOWED}"),  # by its node
        (
            "x[0].lower() == 'a'",
            f"subscript (`x[0]`) is not allowed; write lower(column); {ALLOWED}",
        ),
        (
            "status.values.str.lower() == 'a'",  # the hint of the first link that has one
            "attribute access (`status.values`) is not allowed; for text write "
            f"startswith(status, 'x'), endswith, contains or lower(status); {ALLOWED}",
        ),
        (
            "(a == 1) | (b == 2)",
            f"`|` (write or) (`(a == 1) | (b == 2)`) is not allowed; {ALLOWED}",
        ),
        ("flag < true", "`flag < true`: true/false compare only with == and !=."),
        ("[x for x in y] == 1", f"comprehension (`[x for x in y]`) is not allowed; {ALLOWED}"),
        ("f'{status}' == 'paid'", f"f-string (`f'{{status}}'`) is not allowed; {ALLOWED}"),
        (
            "status == @paid",
            f"`@` (pandas' local variables, or matrix products) is not allowed; {ALLOWED}",
        ),
        ("(x := 1) == 1", f"assignment (:=) (`x := 1`) is not allowed; {ALLOWED}"),
        ("number(*cols) > 1", f"starred argument (`*cols`) is not allowed; {ALLOWED}"),
        (
            "status == None",
            f"None (for a missing value write isna(column)) (`None`) is not allowed; {ALLOWED}",
        ),
        ("quantity + 1 > 2", f"arithmetic (`quantity + 1`) is not allowed; {ALLOWED}"),
        (
            "(a == 1) & (b == 2)",
            f"`&` (write and) (`(a == 1) & (b == 2)`) is not allowed; {ALLOWED}",
        ),
        ("~(a == 1)", f"`~` (write not) (`~(a == 1)`) is not allowed; {ALLOWED}"),
        (
            "1 < quantity < 3",
            "chained comparisons (`1 < quantity < 3`) are not allowed; write a < b and b < c.",
        ),
        (
            "status is None",
            "`is` (`status is None`) is not allowed; write == or !=, or isna(column).",
        ),
        (
            "status in 'paid'",
            "`status in 'paid'`: `in` takes a list of literals, e.g. status in "
            "['paid', 'shipped'].",
        ),
        (
            "status in [1, 'a']",
            "`status in [1, 'a']` mixes number and text in one list; use one kind.",
        ),
        ("status in [other]", None),
        (
            "number(total) == 'a'",
            "`number(total) == 'a'` compares number with text; they are never equal.",
        ),
        ("1 == 1", "`1 == 1` compares two constants; name a column."),
        ("'paid'", "`'paid'` is a constant, not a condition; compare it, e.g. status == 'paid'."),
        (
            "number(total)",
            "`number(total)` is a value, not a condition; compare it, e.g. status == 'paid'.",
        ),
        (
            "isna(a) == True",
            "`isna(a)` is a condition; it cannot be compared or nested: join conditions with "
            "and, or, not.",
        ),
        (
            "status is not None",
            "`is not` (`status is not None`) is not allowed; write == or !=, or isna(column).",
        ),
        (
            "a > 9223372036854775808",
            "the number 9223372036854775808 is too large; at most 2^63 - 1.",
        ),
        (
            "startswith(a, 1)",
            "`startswith(a, 1)`: the second argument of startswith() must be 'text'.",
        ),
        ("isna(a, b)", "`isna(a, b)`: write isna(column)."),
        ("contains(a, pat='x')", "`contains(a, pat='x')`: write contains(column, 'text')."),
        ("lower(number(a)) == 'x'", "`lower(number(a))`: lower() takes text or a column."),
        ("a > 1e999", "the number 1e999 is not finite."),
        (
            "a > 99999999999999999999",
            "the number 99999999999999999999 is too large; at most 2^63 - 1.",
        ),
        ("status ==", None),
        ("status == 'paid", None),  # quoted text never closed
        ("`Order Status == 'paid'", "a backtick (`) is not closed; write `Column Name`."),
        ("`` == 'paid'", "`` names no column; write `Column Name`."),
    ],
)
def test_anything_outside_the_language_is_refused_naming_the_construct(
    expression: str, message: str | None
) -> None:
    error = load_error(expression)
    assert error.startswith("map.yaml: filter: ")
    assert "\n" not in error
    if message is not None:
        assert error == f"map.yaml: filter: {message}"


FILTER_FUNCTIONS = ("isna", "notna", "startswith", "endswith", "contains", "lower", "number")


@pytest.mark.parametrize(
    ("expression", "construct", "hint"),
    [
        ("x.lower(status) == 'a'", "x.lower", "write lower(x)"),
        ("status.isna()", "status.isna", "write isna(status)"),
        ("status.notna()", "status.notna", "write notna(status)"),
        ("`Order Status`.startswith('p')", "`Order Status`.startswith", None),
        ("status.contains('p')", "status.contains", "write contains(status, 'x')"),
        ("x.endswith(status, 'p')", "x.endswith", "write endswith(x, 'x')"),
        ("__import__('os').number(total) > 1", "__import__('os').number", None),
        ("lower(status).lower(status) == 'a'", "lower(status).lower", "write lower("),
        ("number(x.number(total)) > 1", "x.number", None),
        ("not status.isna()", "status.isna", "write isna(status)"),
        ("status in [x.lower('A')]", "x.lower", "write lower(x)"),
    ],
)
def test_method_call_spellings_of_the_filter_functions_are_refused_as_attribute_access(
    expression: str, construct: str, hint: str | None
) -> None:
    """Only a bare name calls a filter function: `x.lower(status)` names `lower` too, but as
    an attribute of something, which is where Python would run code."""
    error = load_error(expression)
    assert error.startswith(f"map.yaml: filter: attribute access (`{construct}`) is not allowed")
    assert error.endswith(ALLOWED)
    if hint is not None:
        assert f"; {hint}" in error


@pytest.mark.parametrize("name", FILTER_FUNCTIONS)
def test_no_filter_function_is_callable_as_a_method_of_a_value(name: str) -> None:
    arguments = "(status, 'a')" if name in ("startswith", "endswith", "contains") else "(status)"
    for receiver in ("status", "x", "`Order Status`", "lower(status)", "__import__('os')"):
        for shell in ("{call}", "{call} == 'a'", "not {call}", "number({call}) > 1"):
            for call in (f"{receiver}.{name}{arguments}", f"{receiver}.{name}()"):
                expression = shell.format(call=call)
                assert "attribute access" in load_error(expression), expression


def test_parsing_a_filter_warns_about_nothing(recwarn: pytest.WarningsRecorder) -> None:
    warnings.simplefilter("always")
    parse_filter("status == '\\d' or status == 'a'")  # an invalid escape, in quoted text
    load_error("status is 'x'")
    assert [str(w.message) for w in recwarn] == []


def test_a_syntax_error_says_so_and_lists_what_is_allowed() -> None:
    assert load_error("status = 'paid'") == (
        "map.yaml: filter: \"status = 'paid'\" is not a valid expression (invalid syntax); "
        + ALLOWED
    )


@pytest.mark.parametrize(
    "expression",
    ["not " * 200 + "paid", "(" * 500 + "paid" + ")" * 500, " or ".join(["a == 1"] * 30_000)],
)
def test_huge_or_deeply_nested_filters_are_refused_cleanly(expression: str) -> None:
    error = load_error(expression)
    assert "nested too deeply" in error or "characters long" in error or "too many" in error


# --- generated hostile filters -------------------------------------------------------------

identifier = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
not_a_filter_function = st.one_of(
    st.sampled_from(["open", "eval", "exec", "__import__", "getattr", "print", "compile"]),
    identifier.filter(
        lambda name: (
            name not in {"isna", "notna", "startswith", "endswith", "contains", "lower", "number"}
        )
    ),
)
column = st.sampled_from(["status", "total", "`Order Status`", "number(total)", "lower(status)"])


def poisons(target: str) -> st.SearchStrategy[str]:
    """Constructs outside the language, each of which pandas or Python would run."""
    payload = st.sampled_from(
        [
            f"open('{target}', 'w')",
            f"status.values.tofile('{target}')",
            f"status.values.dump('{target}')",
            f"total.to_csv('{target}')",
            f"__import__('os').system('touch {target}')",
        ]
    )
    attribute_name = st.one_of(
        st.sampled_from(["values", "tofile", "dump", "to_csv", "str", "__class__", "astype"]),
        st.sampled_from(FILTER_FUNCTIONS),  # the language's own names, spelled as methods
        identifier,
    )
    receiver = st.one_of(column, st.sampled_from(["x", "__import__('os')", "open('/x')"]))
    return st.one_of(
        payload,
        st.builds(
            lambda r, f, a: f"{r}.{f}({a})",
            receiver,
            st.sampled_from(FILTER_FUNCTIONS),
            st.sampled_from(["", "status", "total", "status, 'a'", "lower(status)"]),
        ),
        st.builds(lambda c, a: f"{c}.{a}", column, attribute_name),
        st.builds(lambda c, a, p: f"{c}.{a}({p!r})", column, attribute_name, st.just(target)),
        st.builds(lambda f, p: f"{f}({p})", not_a_filter_function, payload),
        st.builds(lambda f, c: f"{f}({c})", not_a_filter_function, column),
        st.builds(lambda c, i: f"{c}[{i}]", column, st.sampled_from(["0", "0:1", "'a'", "::-1"])),
        st.builds(lambda p: f"(lambda: {p})()", payload),
        st.builds(lambda p: f"(lambda x: x)({p})", payload),
        st.builds(lambda p: f"[{p} for _ in [1]]", payload),
        st.builds(lambda p: f"{{{p} for _ in [1]}}", payload),
        st.builds(lambda p: f"({p} for _ in [1])", payload),
        st.builds(lambda p: f"{{1: {p} for _ in [1]}}", payload),
        st.builds(lambda p: f'f"{{{p}}}"', payload),
        st.builds(lambda p: f"f'{{status!r}}{{{p}}}'", payload),
        st.builds(lambda n: f"@{n}", identifier),
        st.builds(lambda p: f"(w := {p})", payload),
        st.builds(lambda p: f"number(*[{p}])", payload),
        st.builds(lambda p: f"[*{p}]", payload),
        st.builds(lambda p: f"({p} if status else 1)", payload),
        st.builds(lambda c, p: f"{c} + {p}", column, payload),
        st.builds(lambda p: f"{{'a': {p}}}", payload),
        st.builds(lambda p: f"(await {p})", payload),
        st.builds(lambda p: f"(yield {p})", payload),
        st.builds(lambda p: f"b'{p}'", st.just("x")),
        st.builds(lambda c, p: f"{c} is {p}", column, payload),
    )


def hostile_filters(target: str) -> st.SearchStrategy[str]:
    """A poison inside the places the language does allow something."""
    return st.builds(
        lambda shell, poison: shell.format(p=poison),
        st.sampled_from(
            [
                "{p}",
                "{p} == 1",
                "status == 'paid' or {p} == 1",
                "not ({p})",
                "number({p}) > 1",
                "startswith({p}, 'a')",
                "contains(status, {p})",
                "status in [{p}]",
                "({p}) and paid",
                "isna({p})",
                "'x' == {p}",
                "(status == 'paid') and (total != 'x' or {p})",
            ]
        ),
        poisons(target),
    )


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_hostile_filters_are_refused_at_load_and_write_nothing(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("hostile", numbered=True)
    expression = data.draw(hostile_filters(str(folder / "written")))
    error = load_error(expression)
    assert error.startswith("map.yaml: filter: ")
    assert "\n" not in error
    assert "not allowed" in error or "is not a valid expression" in error, error
    assert list(folder.iterdir()) == []


def test_no_module_of_backfill_hands_text_to_an_evaluator() -> None:
    """No eval/exec/compile, and no pandas eval/query, anywhere in the package."""
    found = []
    for path in sorted((ROOT / "backfill").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("eval", "exec", "compile"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {func.id}()")
            if isinstance(func, ast.Attribute) and func.attr in ("eval", "query"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{func.attr}()")
    assert found == []


# --- end to end: the real CLI ----------------------------------------------------------------


def hostile_mapping(folder: Path, expression: str) -> Path:
    text = (SAMPLE / "map.yaml").read_text(encoding="utf-8")
    [line] = [line for line in text.splitlines() if line.startswith("filter:")]
    escaped = expression.replace("\\", "\\\\").replace('"', '\\"')
    path = folder / "map.yaml"
    path.write_text(text.replace(line, f'filter: "{escaped}"'), encoding="utf-8")
    return path


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize(
    ("hostile", "command"), [(ISSUE_12_FILTERS[0], "run"), (ISSUE_12_FILTERS[1], "validate")]
)
def test_the_cli_refuses_issue_12s_hostile_filters_with_exit_2_and_writes_nothing(
    tmp_path: Path, hostile: str, command: str
) -> None:
    target = tmp_path / "x.pth"
    mapping = hostile_mapping(tmp_path, hostile.format(target=target))
    before = files_under(tmp_path)
    extra = ["--sandbox"] if command == "run" else []
    result = run_cli(command, SAMPLE / "orders.parquet", "--mapping", mapping, *extra, cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.startswith(f"Error: {mapping}: filter: attribute access (`status.")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert files_under(tmp_path) == before  # no x.pth, no report, no journal
    assert not target.exists()


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_cli_refuses_generated_hostile_filters_with_exit_2_and_writes_nothing(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("cli-hostile", numbered=True)
    expression = data.draw(hostile_filters(str(folder / "written")))
    mapping = hostile_mapping(folder, expression)
    before = files_under(folder)
    result = run_cli(
        "run", SAMPLE / "orders.parquet", "--mapping", mapping, "--sandbox", cwd=folder
    )
    assert result.code == 2, result.stderr
    assert result.stderr.startswith(f"Error: {mapping}: filter: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert files_under(folder) == before


def test_the_cli_refuses_a_number_comparison_on_a_csv_text_column_with_one_line(
    tmp_path: Path,
) -> None:
    mapping = hostile_mapping(tmp_path, "total > 10")
    result = run_cli("validate", SAMPLE / "orders.csv", "--mapping", mapping, cwd=tmp_path)
    assert result.code == 2
    assert result.stderr == (
        f"Error: {mapping}: filter: `total > 10` compares column 'total' (text in "
        f"{SAMPLE / 'orders.csv'}) with 10; to compare it as a number write number(total).\n"
    )


def test_a_filter_may_nest_to_the_documented_depth_and_no_deeper() -> None:
    """Each `not` is a level, and so are the filter itself and the column it ends at."""
    deepest = "not " * (MAX_DEPTH - 2) + "paid"
    assert parse_filter(deepest).text == deepest
    assert load_error("not " + deepest).endswith(
        f"is nested too deeply; at most {MAX_DEPTH} levels."
    )
    beyond_python = "not " * 5000 + "paid"  # deeper than Python's own parser goes
    assert load_error(beyond_python) == (
        f"map.yaml: filter: is nested too deeply; at most {MAX_DEPTH} levels."
    )


def test_quoted_text_keeps_its_quotes_and_backticks_as_written() -> None:
    text = "status == '''it's `x`'''"
    assert parse_filter(text) == Comparison(
        "==", Column("status", "status"), Constant("it's `x`", text[10:]), text
    )


def test_a_filter_may_be_as_long_as_the_documented_limit_and_no_longer() -> None:
    longest = "status == '" + "a" * (MAX_LENGTH - 12) + "'"
    assert len(longest) == MAX_LENGTH and parse_filter(longest).text == longest
    assert load_error(longest + " ").endswith(f"at most {MAX_LENGTH:,}.")
