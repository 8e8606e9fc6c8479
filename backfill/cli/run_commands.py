"""The commands that send: run and rerun, and the question asked before a real run."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from backfill.cli.app import cli
from backfill.cli.look_commands import validate
from backfill.cli.options import (
    ledger_option,
    ledger_place,
    mapping_option,
    sending_options,
    sending_rate,
    source_argument,
    source_options,
    yes_option,
)
from backfill.cli.output import EXIT_OK, exit_code, user_errors
from backfill.cli.sending import build_target, execute, sandbox_schema

if TYPE_CHECKING:
    from backfill.pipeline.run import RunPlan
    from backfill.pipeline.target import Target


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
            restart=starts_fresh(sending, report),
            ledger_path=ledger_place(ledger_path, sending["sandbox"]),
        )
    schema = sandbox_schema(mapping, opened) if sending["sandbox"] else None
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
            restart=starts_fresh(sending, new_report),
            ledger_path=ledger_place(ledger_path, sending["sandbox"]),
        )
    schema = sandbox_schema(mapping, None) if sending["sandbox"] and mapping else None
    confirm_before_sending(sending, target, lambda: _feed_headline(plan, sending))
    summary = execute(plan, target, sending, schema, exit_when_done=False)
    if not sending["as_json"]:
        click.echo(
            f"\nRerun of {report_in}: {summary.counts.accepted:,} fixed, "
            f"{summary.counts.failed:,} still failing."
        )
    sys.exit(exit_code(summary))


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


def starts_fresh(sending: dict[str, Any], report: Path) -> bool:
    """--restart; and every rehearsal (--sandbox without --resume): its own report and
    journal are replaced, so that it can be repeated. A real run's are never touched: a
    report beside which a real run's journal lies is refused."""
    from backfill.books.journal import journal_path
    from backfill.errors import UsageError

    if not sending["sandbox"]:
        return bool(sending["restart"])
    real = journal_path(report)
    if real != journal_path(report, rehearsal=True) and real.exists():
        raise UsageError(
            f"--sandbox: {report} is the report of a real run (its journal {real} is "
            "beside it); a rehearsal keeps its own records: leave "
            "out --report, or name another file."
        )
    return bool(sending["restart"]) or not sending["resume"]


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _source_headline(
    source: Any, mapping: Any, report: Path, sending: dict[str, Any], limit: int | None
) -> list[str]:
    from backfill.look.plan import plan, plan_headline

    result = plan(source, mapping, rate=sending_rate(sending), report=report)
    return plan_headline(result, limit)  # the whole plan, and what --limit takes of it


def _feed_headline(run_plan: RunPlan, sending: dict[str, Any]) -> list[str]:
    """For rerun: its rows are few (a report), so they are mapped as the run will."""
    from backfill.look.plan import feed_headline

    return feed_headline(run_plan.feed(), run_plan.source_name, sending_rate(sending))


def _rerun_name(report: Path, *, rehearsal: bool = False) -> str:
    """`orders.csv.failures.jsonl` -> `orders.csv.rerun.jsonl`; a rehearsal's
    `orders.csv.sandbox.failures.jsonl` -> `orders.csv.sandbox.rerun.jsonl`."""
    stem = report.name[: -len(report.suffix)] if report.suffix else report.name
    if stem.endswith(".failures"):
        stem = stem.removesuffix(".failures").removesuffix(".sandbox")
    kind = ".sandbox.rerun" if rehearsal else ".rerun"
    return f"{stem}{kind}{report.suffix or '.jsonl'}"
