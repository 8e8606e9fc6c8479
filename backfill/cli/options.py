"""The options several commands share: the mapping, how SOURCE is read, the ledger, sending."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from backfill.cli.app import ENDPOINT_ENV
from backfill.mapping.envelopes import APIS


def mapping_option(required: bool = True) -> Callable[[Any], Any]:
    return click.option(
        "--mapping",
        "-m",
        "mapping_path",
        type=click.Path(dir_okay=False, path_type=Path),
        required=required,
        help="The YAML mapping of columns to event fields.",
    )


SOURCE_OPTIONS = ("delimiter", "encoding", "sheet")


def source_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options that say how SOURCE is read (--delimiter, --encoding, --sheet); the command
    receives them together as `reading`, a dict to pass on as keyword arguments."""

    @functools.wraps(function)
    def with_reading(*args: Any, **kwargs: Any) -> Any:
        reading = {name: kwargs.pop(name) for name in SOURCE_OPTIONS}
        if reading["delimiter"] is None and isinstance(kwargs.get("source"), str):
            _say_how_text_is_read(kwargs["source"])
        return function(*args, reading=reading, **kwargs)

    options = [
        click.option(
            "--delimiter",
            help="CSV field delimiter: one character, or tab, comma, semicolon, pipe (\\t too). "
            "Default: a tab for .tsv, .tab and tab-separated .txt files, else a comma.",
        ),
        click.option(
            "--encoding",
            help="The text encoding of a CSV SOURCE: any Python codec (cp1252, latin-1, "
            "utf-16...). Default: UTF-8, or UTF-16 when the file starts with its byte order mark.",
        ),
        click.option("--sheet", help="The sheet of an .xlsx SOURCE to read. Default: the first."),
    ]
    for option in reversed(options):
        with_reading = option(with_reading)
    return with_reading


def _say_how_text_is_read(source: str) -> None:
    """A .txt SOURCE read as tab-separated: said on stderr, so that no one wonders."""
    from backfill.read.formats import local_text_note

    note = local_text_note(source)
    if note is not None:
        click.echo(note, err=True)


# Text, not a click.Path: SOURCE may be a glob or an s3:// URL, which a Path would mangle.
source_argument = click.argument("source")


ledger_option = click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The ledger of delivered ids, for mappings with `id:` (default: BACKFILL_LEDGER, "
    "else the user's data folder; --sandbox: a throwaway one).",
)


def ledger_place(ledger_path: Path | None, sandbox: bool) -> Path:
    """--ledger, else a throwaway ledger for a rehearsal, else the user's one."""
    from backfill.books.id_ledger import default_ledger_path

    if ledger_path is not None:
        return ledger_path
    return Path(":memory:") if sandbox else default_ledger_path()


def ledger_scope_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--ledger, --endpoint, --api: whose ledger of delivered ids `validate`/`plan` count. The
    command receives them together as `ledger_scope`, keyword arguments for the library call."""

    @functools.wraps(command)
    def with_ledger_scope(*args: Any, **kwargs: Any) -> Any:
        ledger_scope = {
            "ledger": ledger_place(kwargs.pop("ledger_path"), sandbox=False),
            "endpoint": kwargs.pop("endpoint"),
            "api": kwargs.pop("api_name"),
        }
        return command(*args, ledger_scope=ledger_scope, **kwargs)

    for option in reversed(
        [
            ledger_option,
            click.option(
                "--endpoint",
                envvar=ENDPOINT_ENV,
                help="With `id:`: count the rows new to this endpoint's ledger "
                "(default: the API's).",
            ),
            click.option(
                "--api",
                "api_name",
                default="torque-v1",
                type=click.Choice(list(APIS)),
                help="With `id:`: the envelope whose ledger counts.",
            ),
        ]
    ):
        with_ledger_scope = option(with_ledger_scope)
    return with_ledger_scope


def _shown_option(name: str, kind: Any, default: Any, help: str) -> Callable[[Any], Any]:
    """An option whose default `--help` shows."""
    return click.option(name, type=kind, default=default, show_default=True, help=help)


class ConcurrencyType(click.ParamType):
    """`auto`, or a hard cap from 1 to MAX_CONCURRENCY; converts to None for auto."""

    name = "auto|N"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | None:
        from backfill.send.gate import MAX_CONCURRENCY

        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return None
        if text.isdigit() and 1 <= int(text) <= MAX_CONCURRENCY:
            return int(text)
        self.fail(f"{value!r} is not auto or a number from 1 to {MAX_CONCURRENCY}.", param, ctx)


def sending_options(function: Callable[..., Any]) -> Callable[..., Any]:
    from backfill.send.sender import (
        DEFAULT_MAX_RETRIES,
        DEFAULT_RATE,
        DEFAULT_RATE_LIMIT_BUDGET,
        DEFAULT_TIMEOUT,
    )

    options = [
        click.option(
            "--api",
            "api_name",
            default="torque-v1",
            show_default=True,
            type=click.Choice(list(APIS)),
            help="The envelope: torque-v1 (documented) or torque-ingest (current ingest).",
        ),
        click.option(
            "--endpoint",
            envvar=ENDPOINT_ENV,
            help="Where events go (also TORQUE_ENDPOINT). Default: the API's endpoint.",
        ),
        click.option(
            "--rate",
            type=click.FloatRange(min=0),
            default=None,
            help=f"Events per second at most (default {DEFAULT_RATE:g}; with --sandbox as fast "
            "as the sandbox takes; 0: no limit).",
        ),
        _shown_option(
            "--concurrency",
            ConcurrencyType(),
            "auto",
            "Requests in flight: auto (follows the rate and answer times) or at most N.",
        ),
        _shown_option(
            "--max-retries",
            click.IntRange(min=0),
            DEFAULT_MAX_RETRIES,
            "Retries per event after 429, 5xx, timeouts or dropped connections.",
        ),
        _shown_option(
            "--timeout",
            click.FloatRange(min=0.001),
            DEFAULT_TIMEOUT,
            "Seconds to wait for each answer.",
        ),
        _shown_option(
            "--rate-limit-budget",
            click.FloatRange(min=0),
            DEFAULT_RATE_LIMIT_BUDGET,
            "Seconds one event may keep being answered 429 before it goes to the report.",
        ),
        click.option(
            "--report",
            type=click.Path(dir_okay=False, path_type=Path),
            help="The failure report (.jsonl or .csv).",
        ),
        click.option("--resume", is_flag=True, help="Continue an interrupted run."),
        click.option("--restart", is_flag=True, help="Discard an earlier run's journal."),
        click.option(
            "--sandbox",
            is_flag=True,
            help="Send to a local Torque-compatible sandbox started for this run.",
        ),
        click.option(
            "--allow-insecure",
            is_flag=True,
            help="Allow plain http:// to a host that is not this machine.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


yes_option = click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Do not ask before sending to a real endpoint (asked only on a terminal).",
)


def sending_rate(sending: dict[str, Any]) -> float:
    """--rate, else as fast as a rehearsal's local sandbox takes, else the default rate."""
    from backfill.send.sender import DEFAULT_RATE

    if sending["rate"] is not None:
        return float(sending["rate"])
    return 0.0 if sending["sandbox"] else DEFAULT_RATE
