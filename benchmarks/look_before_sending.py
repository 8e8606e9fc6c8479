"""`plan` against `validate`, and `init` on a big file: the numbers issue 15 asks for.

    .venv/bin/python benchmarks/look_before_sending.py --rows 1m --rounds 3
    .venv/bin/python benchmarks/look_before_sending.py --rows 10m --rounds 1

`plan` and `validate` run on the same file and mapping (benchmarks/map.yaml), alternating,
each under GNU time (wall, CPU, peak RSS); the ratio of medians is what matters on a shared
machine, CPU time more than wall time. `init` runs on the CSV and Parquet files of the same
size. Data files come from `make_orders.py` (generated on first use into benchmarks/data/).
Results go to stdout as Markdown and to benchmarks/out/look_before_sending.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_orders import parse_rows  # noqa: E402
from measure import Measured, bench_env, run_measured  # noqa: E402
from run_benchmarks import ensure_data  # noqa: E402

MAPPING = HERE / "map.yaml"


def data_file(rows: int, fmt: str) -> Path:
    """The same files as run_benchmarks.py's (`orders_1m.csv`), made once and reused."""
    return ensure_data(rows, fmt)


def tool(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "backfill", *map(str, args)]


def figures(run: Measured) -> dict[str, float]:
    return {
        "wall_s": round(run.wall_seconds, 2),
        "cpu_s": round(run.cpu_seconds, 2),
        "rss_mb": round(run.max_rss_kb / 1024, 1),
    }


def compare(source: Path, rounds: int) -> dict[str, object]:
    runs: dict[str, list[dict[str, float]]] = {"validate": [], "plan": []}
    for _ in range(rounds):
        for command in ("validate", "plan"):
            run = run_measured(tool(command, source, "-m", MAPPING, "--json"), env=bench_env())
            if run.returncode not in (0, 1):
                raise SystemExit(f"{command} failed: {run.stderr_tail}")
            runs[command].append(figures(run))
    medians = {
        command: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for command, results in runs.items()
    }
    ratios = {
        key: round(medians["plan"][key] / medians["validate"][key], 3) for key in medians["plan"]
    }
    return {"runs": runs, "medians": medians, "plan_over_validate": ratios}


def time_init(source: Path) -> dict[str, float]:
    run = run_measured(tool("init", source), env=bench_env())
    if run.returncode != 0:
        raise SystemExit(f"init failed: {run.stderr_tail}")
    return figures(run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1m", help="rows of the files (e.g. 1m, 10m)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-compare", action="store_true", help="only time init")
    options = parser.parse_args(argv)
    rows = parse_rows(options.rows)
    csv_file = data_file(rows, "csv")
    result: dict[str, object] = {"rows": rows, "rounds": options.rounds}
    if not options.skip_compare:
        result["plan_vs_validate_csv"] = compare(csv_file, options.rounds)
    result["init"] = {"csv": time_init(csv_file), "parquet": time_init(data_file(rows, "parquet"))}
    out = HERE / "out" / "look_before_sending.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
