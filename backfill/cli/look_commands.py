"""The commands that look before sending: init, validate, preview, plan, schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from backfill.cli.app import cli
from backfill.cli.options import (
    ledger_scope_options,
    mapping_option,
    source_argument,
    source_options,
)
from backfill.cli.output import EXIT_OK, EXIT_ROWS_FAILED, user_errors

if TYPE_CHECKING:
    from backfill.look.validate import Preview, ValidationResult


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
    if result.more_failures:
        click.echo(
            f"... and {result.more_failures:,} more failing rows "
            "(backfill validate counts them all, by reason)."
        )
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
    ledger_scope: dict[str, Any],
) -> None:
    """Map every row and check it; nothing is sent. Exit 1 when some rows fail."""
    from backfill.look.validate import validate as validate_file

    with user_errors():
        result = validate_file(
            source,
            mapping_path,
            report=report,
            **ledger_scope,
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
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Plan `run --limit N`: the first N events not sent before, as the run counts them.",
)
@source_options
@ledger_scope_options
def plan(
    source: Path,
    mapping_path: Path,
    rate: float,
    report: Path | None,
    as_json: bool,
    limit: int | None,
    reading: dict[str, Any],
    ledger_scope: dict[str, Any],
) -> None:
    """Map everything, send nothing: what a run would send, when, how long, and warnings."""
    from backfill.look.plan import plan as plan_run

    with user_errors():
        result = plan_run(
            source,
            mapping_path,
            rate=rate,
            report=report,
            **ledger_scope,
            limit=limit,
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
    for key, count in result.lookup_normalised.items():
        click.echo(f"  {key}: {count:,} rows matched their lookup only after its match: rule")
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
