"""Run every benchmark and print one summary table (``make bench``).

    .venv/bin/python benchmarks/run_all.py [--full] [--only NAME ...]

Each benchmark runs as its own process with its detailed output shown as it goes, then
its summary line (``_summary.emit``) becomes rows of the final table. Quick mode (the
default) uses small sizes so the whole set takes a few minutes; the targets are stated for
the full sizes, so a missed target in quick mode is shown but fails only ``--full``; a failed
correctness check (same answers, same rows, same runs) or a crash fails either mode.
``--full`` runs each with its defaults (the sizes docs/benchmarks.md reports; tens of
minutes). Peers (``mlflow server``, Great Expectations in ``benchmarks/.venvs/ge``, plain
pyarrow) are measured in the same run; ratios are only ever against those. Exit status 1
when something failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _summary import parse
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent

BENCHMARKS: dict[str, list[str]] = {  # name -> quick-mode arguments
    "tracking_fluent": ["--points", "20000", "--repeat", "1"],
    "tracking_vs_mlflow": ["--seconds", "1", "--search-runs", "500", "--scale-runs", "2000"],
    "data_ingest": ["--mb", "100", "--repeat", "1", "--rss-gb", "0"],
    "data_validation": ["--rows", "1000000", "--repeat", "3"],
    "data_profiling": ["--rows", "1000000", "--repeat", "1"],
    "cli_startup": ["--quick"],
    "ui_runs_page": ["--runs", "2000", "--repeat", "10"],
    "models_predict": ["--train-rows", "50000", "--repeat", "5", "--calls", "300"],
    "features_retrieval": ["--repeat", "1", "--weather-copies", "10", "--lookups", "500"],
    "registry": ["--models", "300", "--versions", "10", "--repeat", "10", "--mlflow-repeat", "3"],
    "training": ["--rows", "50000", "--repeat", "1", "--trials", "8", "--epochs", "300"],
    "serving": ["--seconds", "3"],
    "serving_predlog": ["--requests", "200", "--repeat", "3"],
    "serving_predlog_cost": ["--requests", "1000"],
    "monitoring_drift": ["--rows", "100000", "--repeat", "1", "--log-rows", "1000000"],
}


def run(name: str, args: list[str]) -> tuple[int, float, list[dict[str, Any]]]:
    """Run one benchmark, echoing its output; (exit status, seconds, its summary rows)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / f"{name}.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=HERE.parent,
    )
    assert proc.stdout is not None
    rows: list[dict[str, Any]] = []
    for line in proc.stdout:
        summary = parse(line)
        if summary is None:
            print(f"  {line}", end="", flush=True)
        else:
            rows += summary["rows"]
    return proc.wait(), time.perf_counter() - started, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="each benchmark at its full size")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 150))
    table = Table(
        title=f"Strata benchmarks ({'full' if args.full else 'quick'} mode), one run",
        header_style="bold",
    )
    for col in ("benchmark", "what", "strata", "peer (same run)", "ratio", "target"):
        table.add_column(col)
    failed = []
    for name, quick in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        bench_args = [] if args.full else quick
        console.rule(f"{name} {' '.join(bench_args)}")
        status, seconds, rows = run(name, bench_args)
        wrong = [r["what"] for r in rows if r.get("check") is False]
        if not rows or wrong or (args.full and status != 0):
            failed.append(name)
        if not rows:
            table.add_row(name, "(no summary)", "", "", "", f"exit {status}: FAIL")
        for i, r in enumerate(rows):
            label = f"{name} ({seconds:.0f} s)" if i == 0 else ""
            table.add_row(label, r["what"], r["strata"], r["peer"], r["ratio"], r["target"])
        table.add_section()
    console.print(table)
    if failed:
        console.print(f"failed: {', '.join(failed)}")
    if not args.full:
        console.print("quick mode: small sizes; the targets hold for --full sizes")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
