"""The `backfill` command: a thin layer that turns options into library calls and
library outcomes into messages and exit codes. The only module that prints or exits.

Exit codes: 0 every row accepted or filtered; 1 some rows are in the failure report;
2 a usage, mapping, source or key error (nothing sent); 3 the report or journal could not be
written (disk full...): the run stopped, continue with --resume; 130 interrupted.

Heavy imports (pandas, pyarrow, aiohttp) happen inside the commands, so `--help` is quick.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

if TYPE_CHECKING:
    from backfill.look.validate import Preview, ValidationResult
    from backfill.pipeline.run import Progress, RunPlan, RunSummary, Target

EXIT_OK, EXIT_ROWS_FAILED, EXIT_USAGE, EXIT_WRITE_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
API_KEY_ENV = "TORQUE_API_KEY"
ENDPOINT_ENV = "TORQUE_ENDPOINT"
BACKOFF_BASE_ENV = "BACKFILL_BACKOFF_BASE"
SANDBOX_KEY = "sandbox-key"
WRITE_FAILED_HINT = (
    "Stopped with its records consistent: make room, then run the same command again "
    "(run, rerun: with --resume, which sends only the rest)"
)


@contextmanager
def user_errors() -> Iterator[None]:
    """A `BackfillError` is the user's to fix: one line on stderr and exit 2, no traceback."""
    from backfill.errors import BackfillError, RecordWriteError

    try:
        yield
    except RecordWriteError as exc:  # disk full, file too large: the run stopped cleanly
        click.echo(f"Error: {exc}. {WRITE_FAILED_HINT}", err=True)
        sys.exit(EXIT_WRITE_FAILED)
    except BackfillError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="backfill")
def cli() -> None:
    """Replay historical orders into Torque's custom events API.

    Start with `backfill validate` (nothing is sent), rehearse with `backfill run
    --sandbox`, then run for real with TORQUE_API_KEY set.
    """


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
        return function(*args, reading=reading, **kwargs)

    options = [
        click.option("--delimiter", default=",", show_default=True, help="CSV field delimiter."),
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
    """--ledger, --endpoint, --api: whose ledger of delivered ids `validate`/`plan` count."""
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
                type=click.Choice(["torque-v1", "torque-server", "torque-ingest"]),
                help="With `id:`: the envelope whose ledger counts.",
            ),
        ]
    ):
        command = option(command)
    return command


# --- preview / validate ----------------------------------------------------------------------


@cli.command()
@source_argument
@mapping_option()
@click.option("-n", "count", default=5, show_default=True, help="How many events to show.")
@source_options
def preview(source: str, mapping_path: Path, count: int, reading: dict[str, Any]) -> None:
    """Show the first mapped events as JSON, each beside its row number."""
    from backfill.look.validate import preview as build_preview

    with user_errors():
        result = build_preview(source, mapping_path, count, **reading)
    _print_preview(result)


def _print_preview(result: Preview) -> None:
    for item in result.rows:
        where = f"row {item.row}" + (f" of {item.source}" if item.source != result.source else "")
        if item.event is not None:
            click.echo(f"{where}:")
            click.echo(json.dumps(item.event.as_dict(), indent=2, ensure_ascii=False))
        elif item.failure is not None:
            click.echo(f"{where}: FAILS: {item.failure.error}")
    if not result.rows:
        click.echo("No rows map: every row read was filtered out.")


@cli.command()
@source_argument
@mapping_option()
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the failure report (.jsonl or .csv), as `run` would.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@source_options
@ledger_scope_options
def validate(
    source: str,
    mapping_path: Path,
    report: Path | None,
    as_json: bool,
    reading: dict[str, Any],
    ledger_path: Path | None = None,
    endpoint: str | None = None,
    api_name: str = "torque-v1",
) -> None:
    """Map every row and check it; nothing is sent. Exit 1 when some rows fail."""
    from backfill.look.validate import validate as validate_file

    with user_errors():
        result = validate_file(
            source,
            mapping_path,
            report=report,
            ledger=ledger_place(ledger_path, sandbox=False),
            endpoint=endpoint,
            api=api_name,
            **reading,
        )
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        _print_validation(result)
    sys.exit(EXIT_ROWS_FAILED if result.failing else EXIT_OK)


def _print_validation(result: ValidationResult) -> None:
    click.echo(f"{result.source}: read {result.read:,} rows")
    click.echo(f"  would send  {result.mappable:,}")
    if result.new is not None:
        click.echo(f"    of which new (ids not in the ledger) {result.new:,}")
    click.echo(f"  filtered    {result.filtered:,}")
    click.echo(f"  failing     {result.failing:,}")
    for reason in result.sorted_reasons():
        click.echo(f"\n  {reason.count:,} × {reason.reason}")
        click.echo(f"      e.g. {reason.examples(result.many_files)}: {reason.example_error}")
    if result.report_path is not None:
        click.echo(f"\nFailure report: {result.report_path}")


# --- run / rerun -----------------------------------------------------------------------------


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
            type=click.Choice(["torque-v1", "torque-server", "torque-ingest"]),
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
            default=DEFAULT_RATE,
            show_default=True,
            help="Events per second at most (0: no limit, for local sinks).",
        ),
        click.option(
            "--concurrency",
            type=ConcurrencyType(),
            default="auto",
            show_default=True,
            help="Requests in flight: auto (follows the rate and answer times) or at most N.",
        ),
        click.option(
            "--max-retries",
            type=click.IntRange(min=0),
            default=DEFAULT_MAX_RETRIES,
            show_default=True,
            help="Retries per event after 429, 5xx, timeouts or dropped connections.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0.001),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="Seconds to wait for each answer.",
        ),
        click.option(
            "--rate-limit-budget",
            type=click.FloatRange(min=0),
            default=DEFAULT_RATE_LIMIT_BUDGET,
            show_default=True,
            help="Seconds one event may keep being answered 429 before it goes to the report.",
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


@cli.command()
@source_argument
@mapping_option()
@sending_options
@yes_option
@click.option("--limit", type=click.IntRange(min=1), help="Send only the first N mappable rows.")
@click.option("--dry-run", is_flag=True, help="Map and validate everything; send nothing.")
@source_options
@ledger_option
def run(
    source: str,
    mapping_path: Path,
    limit: int | None,
    dry_run: bool,
    reading: dict[str, Any],
    ledger_path: Path | None,
    **sending: Any,
) -> None:
    """Send every mappable row of SOURCE as a Torque custom event."""
    from backfill.books.report import report_name
    from backfill.look.validate import open_inputs
    from backfill.mapping.spec import load_mapping
    from backfill.pipeline.run_plan import plan_source_run

    if dry_run:
        ctx = click.get_current_context()
        ctx.invoke(
            validate,
            source=source,
            mapping_path=mapping_path,
            report=sending["report"],
            as_json=sending["as_json"],
            **reading,
        )
        return
    with user_errors():
        mapping = load_mapping(mapping_path)
        opened, mapping = open_inputs(source, mapping, **reading)
        target = build_target(sending)
        rehearsal = ".sandbox" if sending["sandbox"] else ""  # a rehearsal's records stay apart
        report = sending["report"] or Path(report_name(source, rehearsal))
        plan = plan_source_run(
            opened,
            mapping,
            target.api,
            report,
            limit=limit,
            resume=sending["resume"],
            restart=sending["restart"],
            ledger_path=ledger_place(ledger_path, sending["sandbox"]),
        )
    schema = _sandbox_schema(mapping, opened) if sending["sandbox"] else None
    confirm_before_sending(
        sending, target, lambda: _source_headline(opened, mapping, report, sending, limit)
    )
    execute(plan, target, sending, schema)


@cli.command()
@click.argument("report_in", metavar="REPORT", type=click.Path(path_type=Path))
@mapping_option(required=False)
@sending_options
@ledger_option
@yes_option
def rerun(
    report_in: Path, mapping_path: Path | None, ledger_path: Path | None, **sending: Any
) -> None:
    """Send the rows of a failure report again, re-mapped with --mapping if given."""
    from backfill.mapping.spec import load_mapping
    from backfill.pipeline.rerun import plan_rerun

    with user_errors():
        mapping = load_mapping(mapping_path) if mapping_path else None
        target = build_target(sending)
        new_report = sending["report"] or report_in.with_name(
            _rerun_name(report_in, rehearsal=sending["sandbox"])
        )
        plan = plan_rerun(
            report_in,
            mapping,
            target.api,
            new_report,
            resume=sending["resume"],
            restart=sending["restart"],
            ledger_path=ledger_place(ledger_path, sending["sandbox"]),
        )
    schema = _sandbox_schema(mapping, None) if sending["sandbox"] and mapping else None
    confirm_before_sending(sending, target, lambda: _feed_headline(plan, sending))
    summary = execute(plan, target, sending, schema, exit_when_done=False)
    if not sending["as_json"]:
        click.echo(
            f"\nRerun of {report_in}: {summary.counts.accepted:,} fixed, "
            f"{summary.counts.failed:,} still failing."
        )
    sys.exit(_exit_code(summary))


def confirm_before_sending(
    sending: dict[str, Any], target: Target, headline: Callable[[], list[str]]
) -> None:
    """On a terminal, show what is about to go to a real endpoint and ask first.

    Asked only when stdin and stderr are both terminals (the question goes to stderr, so
    `--json` output stays clean): a script, a pipe or a cron job is never asked and never
    waits. `--sandbox` and `--yes` skip it. The headline comes from a full `plan` pass,
    which costs what `validate` costs: small beside sending at any rate a real endpoint takes.
    """
    if sending["sandbox"] or sending.get("yes") or not _interactive():
        return
    click.echo("Planning (every row is mapped; nothing is sent)...", err=True)
    with user_errors():
        lines = headline()
    click.echo("\n".join(lines), err=True)
    click.echo(f"  to {target.endpoint} ({target.api.name})", err=True)
    try:
        answer = click.confirm("Send them?", default=False, err=True)
    except click.Abort:  # Ctrl-D or Ctrl-C at the question
        answer = False
    if not answer:
        click.echo("Nothing was sent.", err=True)
        sys.exit(EXIT_OK)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _source_headline(
    source: Any, mapping: Any, report: Path, sending: dict[str, Any], limit: int | None
) -> list[str]:
    from backfill.look.plan import plan, plan_headline

    return plan_headline(plan(source, mapping, rate=sending["rate"], report=report), limit)


def _feed_headline(run_plan: RunPlan, sending: dict[str, Any]) -> list[str]:
    """For rerun: its rows are few (a report), so they are mapped as the run will."""
    from backfill.look.plan import feed_headline

    return feed_headline(run_plan.feed(), run_plan.source_name, sending["rate"])


def _rerun_name(report: Path, *, rehearsal: bool = False) -> str:
    stem = report.name[: -len(report.suffix)] if report.suffix else report.name
    kind = ".sandbox.rerun" if rehearsal else ".rerun"
    return f"{stem}{kind}{report.suffix or '.jsonl'}"


def build_target(sending: dict[str, Any]) -> Target:
    """Endpoint, key and policy from the options; `Target` refuses what would leak the key."""
    from backfill.mapping.envelopes import get_api
    from backfill.pipeline.target import Target
    from backfill.send.sender import SendPolicy

    api = get_api(sending["api_name"])
    key = os.environ.get(API_KEY_ENV, "")
    if not key and sending["sandbox"]:
        key = SANDBOX_KEY
    endpoint = sending["endpoint"] or api.default_endpoint
    if sending["sandbox"]:  # the sandbox's own URL replaces it once the sandbox is up
        endpoint = api.default_endpoint
    else:  # Target checks them again itself, for library callers
        check_endpoint(endpoint, sending["allow_insecure"])
        check_network(endpoint)
    from backfill.send.gate import AUTO_CAP

    fixed = sending["concurrency"]
    policy = SendPolicy(
        rate=sending["rate"],
        concurrency=AUTO_CAP if fixed is None else fixed,
        adaptive=fixed is None,
        max_retries=sending["max_retries"],
        timeout=sending["timeout"],
        rate_limit_budget=sending["rate_limit_budget"],
        backoff_base=_backoff_base(SendPolicy.backoff_base),
    )
    return Target(
        api=api,
        endpoint=endpoint,
        api_key=key,
        policy=policy,
        allow_insecure=sending["allow_insecure"],
        rehearsal=sending["sandbox"],
    )


def _backoff_base(default: float) -> float:
    """BACKFILL_BACKOFF_BASE: the first retry's backoff ceiling in seconds (tests shorten it)."""
    from backfill.errors import UsageError

    text = os.environ.get(BACKOFF_BASE_ENV, "").strip()
    if not text:
        return default
    try:
        base = float(text)
    except ValueError:
        base = -1.0
    if not 0 < base < float("inf"):
        raise UsageError(f"{BACKOFF_BASE_ENV}={text!r} must be a positive number of seconds.")
    return base


def check_endpoint(endpoint: str, allow_insecure: bool) -> None:
    """Kept for callers of the CLI module; the check lives in `backfill.pipeline.target`."""
    from backfill.pipeline.target import check_endpoint as check

    check(endpoint, allow_insecure)


def check_network(endpoint: str) -> None:
    """Proxy and CA settings that cannot work are refused before anything is written."""
    from backfill.send.route import route_for, ssl_context

    route_for(endpoint)
    if urlsplit(endpoint).scheme == "https":
        ssl_context()


def _sandbox_schema(mapping: Any, source: Any) -> Any:
    from backfill.sandbox.server import schema_from_mapping

    return schema_from_mapping(mapping, source)


def execute(
    plan: RunPlan,
    target: Target,
    sending: dict[str, Any],
    schema: Any,
    *,
    exit_when_done: bool = True,
) -> RunSummary:
    """Run the plan with a progress bar and Ctrl-C handling; print the summary."""
    show_bar = not sending["quiet"] and not sending["as_json"] and sys.stderr.isatty()
    with progress_bar(plan.total_rows, show_bar) as on_progress, user_errors():
        from backfill.send.event_loop import event_loop_runner

        run_loop = event_loop_runner()
        _tune_interpreter_for_sending()
        summary, sandbox_stats = run_loop(
            _execute(plan, target, sending["sandbox"], schema, on_progress)
        )
    if sending["as_json"]:
        data = summary.as_dict()
        if sandbox_stats is not None:
            data["sandbox"] = sandbox_stats
        click.echo(json.dumps(data))
    else:
        _print_summary(summary, sandbox_stats)
    if exit_when_done:
        sys.exit(_exit_code(summary))
    return summary


GC_THRESHOLDS = (50_000, 20, 100)  # a young collection per 50,000 objects, not per 700
GIL_SWITCH_SECONDS = 0.0005  # the reader's thread hands the interpreter back this often


def _tune_interpreter_for_sending() -> None:
    """The sending loop's thread must not stall: at 5000/s a 30 ms stall loses tokens.

    - The modules loaded so far (pandas, pyarrow...) live as long as the process: frozen,
      a full garbage collection no longer walks them all (it stalled sending up to 50 ms).
    - With 1,400 requests in flight, Python's default of a collection per 700 new objects
      ran one every few hundred requests, 10-25 ms each; 5000/s at 250 ms held 0.95 × over
      30 s, and 0.97-0.98 × with fewer, larger ones (and the switch below).
    - While the reader's thread maps a chunk, the loop's thread waits for the interpreter
      lock each time it gave it up (every poll of its sockets): up to 5 ms by default, 0.5
      here (docs/benchmarks.md, "5000/s far away")."""
    import gc

    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)


async def _execute(
    plan: RunPlan,
    target: Target,
    use_sandbox: bool,
    schema: Any,
    on_progress: Callable[[Progress], None] | None,
) -> tuple[RunSummary, dict[str, Any] | None]:
    """The run, inside a sandbox started for it when asked, on this same event loop."""
    import dataclasses

    from backfill.pipeline.run import Run

    def notice(text: str) -> None:
        click.echo(f"\n{text}", err=True)

    if not use_sandbox:
        run = Run(plan, target, on_progress=on_progress, on_notice=notice)
        return await _run_with_signals(run), None
    from backfill.sandbox.server import Sandbox, SandboxConfig

    config = SandboxConfig(port=0, key=target.api_key, schemas=(schema,) if schema else ())
    async with Sandbox(config) as sandbox:
        local = dataclasses.replace(target, endpoint=sandbox.url + target.api.path)
        summary = await _run_with_signals(
            Run(plan, local, on_progress=on_progress, on_notice=notice)
        )
        return summary, sandbox.stats()


async def _run_with_signals(run: Any) -> RunSummary:
    """First Ctrl-C or SIGTERM: finish what is in flight and stop. Second: stop now."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            click.echo(
                "\nStopping: finishing requests in flight (Ctrl-C again to stop now)...",
                err=True,
            )
            run.request_stop()
        else:
            run.abort()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await run.execute()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@contextmanager
def progress_bar(total: int | None, enabled: bool) -> Iterator[Callable[[Progress], None] | None]:
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, unit="row", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def update(progress: Progress) -> None:
        bar.update(progress.done - bar.n)
        answer = "-" if progress.answer_ms is None else f"{_milliseconds(progress.answer_ms)}ms"
        bar.set_postfix(
            accepted=progress.accepted,
            failed=progress.failed,
            in_flight=progress.in_flight,
            answer=answer,
            refresh=False,
        )

    try:
        yield update
    finally:
        bar.close()


def _print_summary(summary: RunSummary, sandbox_stats: dict[str, Any] | None) -> None:
    counts = summary.counts
    headline = {
        None: "Done.",
        "interrupted": "Interrupted.",
        "auth": "Stopped: the server refused the API key.",
        "unreachable": "Stopped: the endpoint cannot be reached; the rest was not sent.",
        "endpoint": f"Stopped: {summary.message}",
    }[summary.stopped]
    click.echo(headline)
    click.echo(f"  read          {counts.read:,}")
    click.echo(f"  accepted      {counts.accepted:,}")
    click.echo(f"  filtered      {counts.filtered:,}")
    click.echo(f"  failed        {counts.failed:,}")
    if counts.already_done:
        click.echo(f"  done before   {counts.already_done:,} (resumed)")
        click.echo(f"    of which failed, in the report: {counts.failed_before:,}")
    if counts.already_sent:
        click.echo(f"  already sent  {counts.already_sent:,} (ids in the ledger)")
    if counts.unsent:
        click.echo(f"  not sent      {counts.unsent:,}")
    if counts.uncertain:
        click.echo(
            f"  uncertain     {counts.uncertain:,} (sent again after a crash; Torque may "
            f"hold them twice: {summary.uncertain_path})"
        )
    click.echo(f"  retries       {counts.retries:,}")
    click.echo(
        f"  elapsed       {summary.elapsed:.1f} s ({summary.events_per_second:,.0f} events/s)"
    )
    network = summary.network
    if network.get("median_answer_ms") is not None:
        click.echo(
            f"  in flight     {network['peak_in_flight']:,} at most, "
            f"{_milliseconds(network['median_answer_ms'])} ms per answer (median)"
        )
    if network.get("concurrency_note"):
        click.echo(f"  {network['concurrency_note']}")
    for reason, count in counts.failed_by_reason.most_common(10):
        click.echo(f"    {count:,} × {reason}")
    if counts.failed or counts.failed_before:
        click.echo(f"Failure report: {summary.report_path}")
    if summary.stopped in ("auth", "unreachable"):
        click.echo(f"  {summary.message}")
    if summary.stopped is not None and summary.journal_path is not None:
        click.echo("To continue, run the same command again with --resume.")
    if sandbox_stats is not None:
        click.echo(
            f"Sandbox: {sandbox_stats['accepted']:,} events accepted, "
            f"{sandbox_stats['duplicates']:,} duplicates."
        )


def _milliseconds(value: float) -> str:
    """An answer time: tenths below 10 ms (a local sandbox answers in under one)."""
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def _exit_code(summary: RunSummary) -> int:
    if summary.stopped in ("auth", "endpoint"):
        return EXIT_USAGE
    if summary.stopped == "interrupted":
        return EXIT_INTERRUPTED
    some_failed = summary.counts.failed or summary.counts.failed_before
    return EXIT_ROWS_FAILED if some_failed else EXIT_OK


# --- init / plan / schema (issue 15: look before you send) ----------------------------------


@cli.command()
@source_argument
@click.option("--event-name", default="ORDER", show_default=True, help="The custom event's name.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the draft here instead of stdout.",
)
@click.option("--force", is_flag=True, help="Let -o replace an existing file.")
@source_options
def init(
    source: Path, event_name: str, output: Path | None, force: bool, reading: dict[str, Any]
) -> None:
    """Draft a mapping from a sample of SOURCE, each guess explained in a comment."""
    from backfill.errors import UsageError
    from backfill.look.draft import draft_mapping

    with user_errors():
        if output is not None and output.exists() and not force:
            raise UsageError(f"{output} exists; add --force to replace it, or choose another -o.")
        draft = draft_mapping(source, event_name=event_name, **reading)
        if output is None:
            click.echo(draft.text, nl=False)
            return
        try:
            with output.open("w" if force else "x", encoding="utf-8") as handle:
                handle.write(draft.text)
        except FileExistsError:
            raise UsageError(f"{output} exists; add --force to replace it.") from None
        except OSError as exc:
            raise UsageError(f"{output}: cannot write the draft ({exc.strerror}).") from None
    click.echo(f"Draft written to {output}. Next: backfill plan {source} -m {output}", err=True)


@cli.command()
@source_argument
@mapping_option()
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=100.0,
    show_default=True,
    help="Events per second the run would send at, for the ETA (0: no limit).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The run's failure report, beside which its journal is (default as run).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@source_options
@ledger_scope_options
def plan(
    source: Path,
    mapping_path: Path,
    rate: float,
    report: Path | None,
    as_json: bool,
    reading: dict[str, Any],
    ledger_path: Path | None = None,
    endpoint: str | None = None,
    api_name: str = "torque-v1",
) -> None:
    """Map everything, send nothing: what a run would send, when, how long, and warnings."""
    from backfill.look.plan import plan as plan_run

    with user_errors():
        result = plan_run(
            source,
            mapping_path,
            rate=rate,
            report=report,
            ledger=ledger_place(ledger_path, sandbox=False),
            endpoint=endpoint,
            api=api_name,
            **reading,
        )
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        _print_plan(result)
    sys.exit(EXIT_ROWS_FAILED if result.counts.failing else EXIT_OK)


def _print_plan(result: Any) -> None:
    from backfill.look.plan import format_ms
    from backfill.look.validate import examples_text

    counts = result.counts
    click.echo(f"{counts.source}: read {counts.read:,} rows")
    click.echo(f"  would send    {counts.mappable:,}")
    click.echo(f"  filtered      {counts.filtered:,}")
    click.echo(f"  failing       {counts.failing:,}  (backfill validate shows why)")
    click.echo(f"  already sent  {result.already_sent:,}")
    click.echo(f"  requests      {result.requests:,}{_eta_words(result)}")
    click.echo(f"  first         {format_ms(result.first_timestamp)}")
    click.echo(f"  last          {format_ms(result.last_timestamp)}")
    if result.by_month:
        click.echo("  events per month (UTC):")
        widest = max(result.by_month.values())
        for month, count in result.by_month.items():
            bar = "#" * max(1, round(40 * count / widest))
            click.echo(f"    {month}  {count:>10,}  {bar}")
    if result.warnings:
        click.echo("\nWarnings:")
    for warning in result.warnings:
        examples = examples_text(
            warning.example_rows, warning.example_files, result.counts.many_files
        )
        click.echo(f"  [{warning.code}] {warning.count:,} × {warning.message}")
        click.echo(f"      e.g. {examples}")


def _eta_words(result: Any) -> str:
    from backfill.look.plan import duration_words

    if result.eta_seconds is None:
        return " (no rate limit)"
    return f" at {result.rate:g}/s: about {duration_words(result.eta_seconds)}"


@cli.command()
def schema() -> None:
    """Print the JSON Schema of map.yaml, for editors that complete and check mappings."""
    from backfill.mapping.json_schema import mapping_schema

    click.echo(json.dumps(mapping_schema(), indent=2))


# --- sandbox ---------------------------------------------------------------------------------


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
def sandbox(options: tuple[str, ...]) -> None:
    """A local Torque-compatible endpoint, to rehearse a backfill before production.

    Takes the same options as `python -m backfill.sandbox` (see `backfill sandbox --help`):
    --port, --mapping, --key, --rate, faults, --latency, --capacity, --tls-cert/--tls-key,
    --redirect-to.
    """
    from backfill.sandbox.command import main as sandbox_main

    sandbox_main(list(options), prog="backfill sandbox")


def main() -> None:
    cli()
