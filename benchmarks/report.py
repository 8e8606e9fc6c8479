"""results.json as Markdown: the tables the lead copies into docs/benchmarks.md.

Every section tolerates a missing or failed benchmark (it shows the error instead), so a
partial run still renders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(value: object) -> str | None:
    """Ratios always with two decimals, so a column of them lines up."""
    return f"{value:.2f}" if isinstance(value, int | float) else None


def percent(value: object) -> str | None:
    return f"{value:.0%}" if isinstance(value, int | float) else None


def mb(kb: object) -> float | None:
    return round(kb / 1024, 1) if isinstance(kb, int | float) else None


def rows_label(rows: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if rows % size == 0:
            return f"{rows // size}{unit}"
    return f"{rows:,}"


def machine_section(machine: dict) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    return "\n".join(
        [
            f"- CPU: {machine['cpu']}, {machine['cores']} cores; RAM {machine['ram_gb']} GB",
            f"- Load average at start: {' '.join(machine['load_average_at_start'])}",
            f"- Python {machine['python']}; {packages}",
            f"- backfill's event loop: {machine.get('event_loop', 'asyncio')}; references: asyncio",
            f"- Kernel {machine['kernel']}; commit {machine['git_commit'] or '(none)'}",
            f"- Date: {machine['date']}",
        ]
    )


def waits(entry: dict) -> str | None:
    """Median seconds each side spent runnable but without a CPU: the machine's noise."""
    waited = entry.get("waited_for_cpu_seconds")
    if not waited:
        return None
    return f"{waited['backfill']:.2f} / {waited['reference']:.2f}"


def throughput_section(entries: list[dict]) -> str:
    rows = [
        (
            rows_label(entry["rows"]),
            entry["format"],
            entry["backfill_wall_seconds"],
            entry["backfill"],
            entry["reference"],
            ratio(entry["ratio"]),
            mb(entry["backfill_max_rss_kb"]),
            waits(entry),
        )
        for entry in entries
    ]
    header = (
        "rows",
        "format",
        "validate s",
        "rows/s",
        "reference rows/s",
        "ratio",
        "peak MB",
        "waited for CPU s",
    )
    return table(header, rows)


def rss_section(entries: list[dict]) -> str:
    rows = []
    for entry in entries:
        tree = None
        if (entry.get("tree_max_processes") or 0) > 1:
            tree = f"{mb(entry['tree_peak_rss_kb'])} MB in {entry['tree_max_processes']} processes"
        rows.append(
            (
                entry["command"],
                rows_label(entry["rows"]),
                entry["format"],
                mb(entry["max_rss_kb"]),
                entry["wall_seconds"],
                tree,
            )
        )
    return table(("command", "rows", "format", "peak RSS MB", "wall s", "process tree"), rows)


def send_section(send: dict) -> str:
    cpu = send["cpu_us_per_event"]
    busy = send.get("sink_busy") or {}
    reference = ("reference sender (sending only)", send["reference"], "1.00")
    whole = ("backfill run, whole process", send["backfill"], ratio(send["ratio"]))
    own = ("backfill run, its own figure", send["backfill_in_tool"], ratio(send["ratio_in_tool"]))
    rows = [
        (*reference, cpu["reference"], percent(busy.get("reference"))),
        (*whole, cpu["backfill"], percent(busy.get("backfill"))),
        (*own, None, None),
    ]
    header = ("sender", "events/s (median)", "ratio", "CPU µs/event", "sink busy")
    rounds = ", ".join(f"{value:.2f}" for value in send["ratios"])
    text = table(header, rows)
    text += f"\n\n{send['events']:,} events, concurrency 32, {len(send['ratios'])} rounds; "
    text += f"per-round ratios (whole process): {rounds}. "
    text += f"Waited for a CPU (median s, backfill / reference): {waits(send)}."
    for problem in send.get("checks") or []:
        text += f"\n\n**Check:** {problem}"
    return text


def rate_section(entries: list[dict]) -> str:
    rows = [
        (
            entry["target"],
            entry["events"],
            entry["achieved_mean"],
            ratio(entry["mean_over_target"]),
            entry["worst_1s_window"],
            ratio(entry["worst_over_target"]),
            entry.get("worst_1s_window_starts_after"),
            entry["sink"]["min_in_any_1s_window"],
            entry["cpu_us_per_event"],
        )
        for entry in entries
    ]
    header = (
        "--rate",
        "events",
        "achieved mean/s",
        "mean/target",
        "busiest 1 s",
        "busiest/target",
        "busiest starts at s",
        "quietest 1 s",
        "CPU µs/event",
    )
    return table(header, rows)


def cpu_section(entries: list[dict]) -> str:
    rows = [
        (
            entry["who"],
            entry["what"],
            entry.get("events"),
            entry.get("cpu_seconds"),
            entry["cpu_us_per_event"],
        )
        for entry in entries
    ]
    return table(("who", "what", "events", "CPU s", "CPU µs/event (user+sys)"), rows)


def startup_section(startup: dict) -> str:
    rows = [(name, value) for name, value in startup["median_wall_seconds"].items()]
    rows += [
        (
            f"first request, {rows_label(entry['rows'])} rows {entry['format']}",
            entry["median_seconds"],
        )
        for entry in startup["time_to_first_request"]
    ]
    return table(("what", "median s"), rows)


SECTIONS = (
    ("throughput", "Mapping throughput (`backfill validate`, one core)", throughput_section),
    ("rss", "Peak memory", rss_section),
    ("send", "Unthrottled send (`backfill run --rate 0`)", send_section),
    ("rate", "Rate fidelity (`--rate R`)", rate_section),
    ("startup", "Start-up", startup_section),
)


def render(results: dict) -> str:
    parts = ["# backfill benchmarks", "", machine_section(results["machine"])]
    benchmarks, errors = results["benchmarks"], results["errors"]
    for key, title, section in SECTIONS:
        if key in errors:
            parts += ["", f"## {title}", "", f"**Failed:** `{errors[key]}`"]
        elif key in benchmarks:
            parts += ["", f"## {title}", "", section(benchmarks[key])]
    if results.get("cpu"):
        parts += ["", "## CPU time per event", "", cpu_section(results["cpu"])]
    return "\n".join(parts) + "\n"
