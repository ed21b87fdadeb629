"""Tracking speed: the unmodified ``mlflow`` client against ``strata server`` and against
``mlflow server`` (SQLite backend, MLflow 3.x, its default settings), side by side in one run.

    .venv/bin/python benchmarks/tracking_vs_mlflow.py [--seconds 5] [--search-runs 2000]
    .venv/bin/python benchmarks/tracking_vs_mlflow.py --only log_metric [--rounds 3]

Prints one table: each workload's rate on both servers and the ratio, with the issue's target.
Then Strata-only figures: search over 10,000 runs (p50), metric history of 100,000 steps
(embedded and through the mlflow client), and 4 concurrent SQLite writer processes (errors).

``--only WORKLOAD`` (log_metric, search or log_batch) measures just that workload's busy share
(``--rounds`` times, on ``--servers``: both, or strata alone) and prints it, with the load.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _servers import mlflow_server, strata_server
from _summary import emit
from _summary import row as summary_row
from rich.console import Console
from rich.table import Table

TOKEN = "strata_" + "b" * 43
console = Console()
FILTER = "metrics.acc > 0.5 and params.lr = '0.01'"
ORDER = ["metrics.acc DESC"]
BUSY_KEYS = ("log_metric", "search", "log_batch")


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def server_cpu(uri: str) -> float:
    """CPU seconds (user + system) the server listening at ``uri`` has used so far: the
    process started with ``server --port PORT`` and all its children (workers)."""
    import psutil

    port = uri.rsplit(":", 1)[1]
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "server" in cmd and "--port" in cmd and port in cmd:
            total = 0.0
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                except psutil.Error:
                    continue
                total += t.user + t.system + t.children_user + t.children_system
            return total
    raise RuntimeError(f"no server process found for {uri}")


def timed(fn: Any, uri: str, *args: Any) -> tuple[float, float, float]:
    """Run a rate workload; return (ops/s, client CPU seconds per op, server CPU s per op).

    The second figure is what the mlflow client itself costs per operation (encoding,
    protobuf, HTTP) -- its inverse is the fastest any server could be measured at. The
    third is what the server spends on each (its whole process tree).
    """
    cpu0, srv0 = time.process_time(), server_cpu(uri)
    ops, wall = fn(uri, *args)
    n = max(ops, 1)
    return ops / wall, (time.process_time() - cpu0) / n, (server_cpu(uri) - srv0) / n


def bench_log_batch(uri: str, seconds: float) -> tuple[int, float]:
    from mlflow.entities import Metric

    c = _client(uri)
    exp = c.create_experiment(f"batch-{random.random()}")
    run = c.create_run(exp)
    now = int(time.time() * 1000)
    points = 0
    step = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        metrics = [Metric(f"m{i % 10}", random.random(), now, step + i) for i in range(1000)]
        c.log_batch(run.info.run_id, metrics=metrics)
        step += 1000
        points += 1000
    return points, time.perf_counter() - start


def bench_log_metric(uri: str, seconds: float) -> tuple[int, float]:
    c = _client(uri)
    exp = c.create_experiment(f"single-{random.random()}")
    run = c.create_run(exp)
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        c.log_metric(run.info.run_id, "loss", random.random(), step=calls)
        calls += 1
    return calls, time.perf_counter() - start


def bench_runs(uri: str, seconds: float) -> tuple[int, float]:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(f"runs-{random.random()}")
    runs = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        with mlflow.start_run():
            mlflow.log_params({f"p{i}": i for i in range(10)})
            for i in range(5):
                mlflow.log_metric(f"m{i}", random.random())
        runs += 1
    return runs, time.perf_counter() - start


def _run_rows(n: int, seed: int = 7) -> list[tuple[dict[str, str], dict[str, float]]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        params = {f"p{i}": str(rng.randint(0, 9)) for i in range(9)}
        params["lr"] = rng.choice(["0.001", "0.01", "0.1"])
        metrics = {"acc": rng.random(), **{f"m{i}": rng.random() for i in range(4)}}
        rows.append((params, metrics))
    return rows


def populate_mlflow(db_uri: str, root: Path, rows: list[Any]) -> str:
    """Fill MLflow's own store directly (its server manages ~3 runs/s; this is faster)."""
    from mlflow.entities import Metric, Param, RunStatus
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(db_uri, str(root / "mlartifacts"))
    exp = store.create_experiment("search")
    now = int(time.time() * 1000)
    for i, (params, metrics) in enumerate(rows):
        run = store.create_run(exp, "bench", now + i, [], f"r{i}")
        store.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
            tags=[],
        )
        store.update_run_info(run.info.run_id, RunStatus.FINISHED, now + i + 1, None)
    store.engine.dispose()
    return str(exp)


def populate_strata(home: Path, rows: list[Any], exp_name: str = "search", first: int = 0) -> str:
    """Runs ``r<first + i>`` for ``rows`` (the names the search comparison checks)."""
    os.environ["STRATA_HOME"] = str(home)
    from strata import Client
    from strata.tracking.models import Metric, Param

    client = Client()
    t = client.tracking
    try:
        exp = t.get_experiment_by_name(exp_name).experiment_id
    except Exception:
        exp = t.create_experiment(exp_name).experiment_id
    now = int(time.time() * 1000)
    for i, (params, metrics) in enumerate(rows):
        run = t.create_run(exp, run_name=f"r{first + i}", start_time=now + first + i)
        t.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        t.end_run(run.info.run_id)
    client.close()
    return exp


#: Searches per busy-share measurement. The server's CPU comes from /proc in 10 ms ticks: over
#: 7 searches of ~16 ms of server CPU each, one tick moved the share by about 1.5 points.
SEARCH_REPS = 20


def bench_search(
    uri: str, exp: str, reps: int = SEARCH_REPS, max_results: int = 1000
) -> tuple[float, list[str], float, float]:
    """(p50 seconds, the run names returned, in order, the client's busy share, the client's
    share of the CPU both sides spent). Both stores hold the same runs under the same names
    (``r<i>``), so equal lists mean the same runs in the same order. The busy share is the
    client's CPU time over the wall time of all reps."""
    c = _client(uri)
    times = []
    names: list[str] = []
    srv0 = server_cpu(uri)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(reps):
        start = time.perf_counter()
        runs = c.search_runs([exp], FILTER, order_by=ORDER, max_results=max_results)
        times.append(time.perf_counter() - start)
        names = [r.info.run_name for r in runs]
        accs = [r.data.metrics["acc"] for r in runs]
        assert accs == sorted(accs, reverse=True), "order_by not honoured"
    client_cpu = time.process_time() - cpu0
    busy = client_cpu / (time.perf_counter() - wall0)
    split = client_cpu / max(client_cpu + server_cpu(uri) - srv0, 1e-9)
    return statistics.median(times), names, busy, split


def expected_search(rows: list[Any], max_results: int) -> list[str]:
    """The run names FILTER + ORDER must return, computed from the generated rows."""
    hits = [
        (metrics["acc"], f"r{i}")
        for i, (params, metrics) in enumerate(rows)
        if metrics["acc"] > 0.5 and params["lr"] == "0.01"
    ]
    return [name for _, name in sorted(hits, reverse=True)][:max_results]


def _writer(home: str, n: int, q: Any) -> None:
    os.environ["STRATA_HOME"] = home
    from strata import Client
    from strata.tracking.models import Metric

    errors = 0
    t = Client().tracking
    for i in range(n):
        try:
            run = t.create_run("0", run_name=f"w{os.getpid()}-{i}")
            t.log_batch(run.info.run_id, metrics=[Metric("x", float(j), 0, j) for j in range(50)])
            t.end_run(run.info.run_id)
        except Exception as exc:  # counted, not hidden: the figure is the error count
            errors += 1
            print("writer error:", type(exc).__name__, exc, file=sys.stderr)
    q.put(errors)


def concurrent_writers(home: Path, procs: int = 4, n: int = 100) -> tuple[int, float]:
    from strata import Client

    Client(settings=None, home=home).tracking.search_runs("0")  # migrate once up front
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    start = time.perf_counter()
    ps = [ctx.Process(target=_writer, args=(str(home), n, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return sum(q.get() for _ in ps), time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each rate workload")
    ap.add_argument(
        "--only",
        choices=BUSY_KEYS,
        help="measure only this workload's busy share (see --rounds, --servers)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="with --only: rounds per server")
    ap.add_argument(
        "--servers",
        choices=("both", "strata"),
        default="both",
        help="with --only: mlflow server and strata server, or strata alone",
    )
    ap.add_argument(
        "--search-runs",
        type=int,
        default=2000,
        help="runs in both stores for the side-by-side search",
    )
    ap.add_argument(
        "--scale-runs", type=int, default=10_000, help="runs for the Strata-only search figures"
    )
    args = ap.parse_args()
    if args.only:
        from _tracking_only import only

        return only(args.only, args)
    work = Path(tempfile.mkdtemp(prefix="strata-bench-"))
    (work / "mlflow").mkdir()
    (work / "strata").mkdir()
    rows = _run_rows(max(args.scale_runs, args.search_runs))
    results: dict[str, dict[str, float]] = {"strata": {}, "mlflow": {}}
    found: dict[str, list[str]] = {}

    console.print(f"populating {args.search_runs} runs into both stores (same data)...")
    ml_exp = populate_mlflow(
        f"sqlite:///{work / 'mlflow' / 'mlflow.db'}", work / "mlflow", rows[: args.search_runs]
    )
    st_exp = populate_strata(work / "strata", rows[: args.search_runs])

    os.environ["MLFLOW_TRACKING_TOKEN"] = TOKEN
    for name, ctx in (
        ("mlflow", mlflow_server(work / "mlflow")),
        ("strata", strata_server(work / "strata", token=TOKEN)),
    ):
        with ctx as uri:
            console.print(f"[bold]{name}[/bold] server at {uri}")
            exp = ml_exp if name == "mlflow" else st_exp
            r = results[name]
            r["search_s"], found[name], r["search_busy"], r["search_split"] = bench_search(uri, exp)
            for key, fn, secs in (
                ("log_batch", bench_log_batch, args.seconds),
                ("log_metric", bench_log_metric, args.seconds),
                ("runs", bench_runs, args.seconds * 2),
            ):
                r[key], r[f"{key}_cpu"], r[f"{key}_srv"] = timed(fn, uri, secs)
            console.print(r)

    table = Table(
        title="mlflow client -> strata server vs mlflow server (SQLite), one run",
        header_style="bold",
    )
    for col in (
        "workload",
        "mlflow server",
        "strata server",
        "ratio",
        "target",
        "result",
        "mlflow-client ceiling",
    ):
        table.add_column(col)

    def row(label: str, key: str, unit: str, target: float) -> None:
        m, s = results["mlflow"][key], results["strata"][key]
        # The mlflow client's own CPU per operation (measured during the strata run): no
        # server can be measured faster than its inverse through that client.
        ceiling = 1.0 / results["strata"][f"{key}_cpu"]  # ops are points for log_batch
        table.add_row(
            label,
            f"{m:,.1f} {unit}",
            f"{s:,.1f} {unit}",
            f"{s / m:,.1f}x",
            f">= {target:g}x",
            "PASS" if s / m >= target else "FAIL",
            f"{ceiling:,.0f} {unit} ({ceiling / m:,.1f}x)",
        )

    row("log_batch (1,000 metrics/call)", "log_batch", "points/s", 20)
    row("single log_metric calls", "log_metric", "calls/s", 20)
    row("start_run + 10 params + 5 metrics + end_run", "runs", "runs/s", 20)
    m_s, s_s = results["mlflow"]["search_s"], results["strata"]["search_s"]
    table.add_row(
        f"search_runs p50, {args.search_runs:,} runs, 2 clauses + order_by, "
        f"max_results=1000 ({len(found['strata'])} hits)",
        f"{m_s * 1000:,.0f} ms",
        f"{s_s * 1000:,.0f} ms",
        f"{m_s / s_s:,.1f}x",
        ">= 10x",
        "PASS" if m_s / s_s >= 10 else "FAIL",
        "",
    )
    console.print(table)

    # How busy the unmodified client is over the wall time: 1.0 means the server costs
    # nothing; the rest is time the client waits for the server (issue 17: >= 0.8 each).
    # Two figures per workload. "wall": the client's CPU over the wall time, the issue's
    # definition, exact on an idle machine but diluted by every other process on a busy one
    # (at load 8 on 2 cores a client alone gets ~25% of a core). "CPU": the client's share of
    # the CPU both sides spent (client / (client + server process tree)); what the wall share
    # would read on an idle machine if the loopback transfer were free; independent of load.
    # The target is judged on the CPU share when the machine is loaded, on the wall share
    # when it is quiet (1-min load < 1.5).
    busy = Table(
        title="mlflow client busy share (1.0 = the server costs nothing)", header_style="bold"
    )
    for col in (
        "workload",
        "mlflow server: wall / CPU",
        "strata server: wall / CPU",
        "server CPU per op",
        "target",
        "result",
    ):
        busy.add_column(col)
    shares: dict[str, dict[str, float]] = {}
    splits: dict[str, dict[str, float]] = {}
    for name in ("mlflow", "strata"):
        r = results[name]
        shares[name] = {
            "log_metric": r["log_metric"] * r["log_metric_cpu"],
            "search": r["search_busy"],
            "log_batch": r["log_batch"] * r["log_batch_cpu"],
        }
        splits[name] = {
            "log_metric": r["log_metric_cpu"] / (r["log_metric_cpu"] + r["log_metric_srv"]),
            "search": r["search_split"],
            "log_batch": r["log_batch_cpu"] / (r["log_batch_cpu"] + r["log_batch_srv"]),
        }
    load = os.getloadavg()[0]
    judged = shares if load < 1.5 else splits
    busy_ok = True
    for key, label, per_op in (
        ("log_metric", "single log_metric", results["strata"]["log_metric_srv"] * 1e3),
        (
            "search",
            f"search_runs, {args.search_runs:,} runs, {len(found['strata'])} returned",
            None,
        ),
        ("log_batch", "log_batch (1,000 metrics/call)", results["strata"]["log_batch_srv"] * 1e6),
    ):
        share = judged["strata"][key]
        busy_ok = busy_ok and share >= 0.8
        busy.add_row(
            label,
            f"{shares['mlflow'][key]:.0%} / {splits['mlflow'][key]:.0%}",
            f"{shares['strata'][key]:.0%} / {splits['strata'][key]:.0%}",
            ""
            if per_op is None
            else f"{per_op:.2f} ms/call"
            if key == "log_metric"
            else f"{per_op:.1f} ms/call",
            ">= 80%",
            "PASS" if share >= 0.8 else "FAIL",
        )
    console.print(busy)
    console.print(
        f"load while measuring: {load:.2f} (1-min average); judged on the "
        f"{'wall' if load < 1.5 else 'CPU'} share"
    )
    expected = expected_search(rows[: args.search_runs], 1000)
    same_runs = found["mlflow"] == found["strata"] == expected
    console.print(
        f"search: both servers returned the same {len(expected)} runs in the same order: "
        f"{'PASS' if same_runs else 'FAIL'}"
    )
    if not same_runs:
        for name in ("mlflow", "strata"):
            extra = sorted(set(found[name]) - set(expected))[:5]
            missing = sorted(set(expected) - set(found[name]))[:5]
            console.print(f"  {name}: {len(found[name])} runs, extra {extra}, missing {missing}")

    def ceiling(key: str) -> float:
        return 1.0 / results["strata"][f"{key}_cpu"]

    summary = [
        summary_row(
            label,
            f"{results['strata'][key]:,.0f} {unit}",
            f"mlflow server {results['mlflow'][key]:,.0f} {unit}",
            f"{results['strata'][key] / results['mlflow'][key]:.1f}x",
            f"mlflow-client ceiling {ceiling(key) / results['mlflow'][key]:.1f}x",
        )
        for label, key, unit in (
            ("mlflow client log_batch (1,000/call)", "log_batch", "points/s"),
            ("mlflow client log_metric", "log_metric", "calls/s"),
            ("mlflow client start_run..end_run", "runs", "runs/s"),
        )
    ]
    summary.append(
        summary_row(
            "mlflow client busy share, wall | CPU (log_metric / search / log_batch)",
            " / ".join(f"{shares['strata'][k]:.0%}" for k in BUSY_KEYS)
            + " | "
            + " / ".join(f"{splits['strata'][k]:.0%}" for k in BUSY_KEYS),
            "mlflow server "
            + " / ".join(f"{shares['mlflow'][k]:.0%}" for k in BUSY_KEYS)
            + " | "
            + " / ".join(f"{splits['mlflow'][k]:.0%}" for k in BUSY_KEYS),
            target=f">= 80% each ({'wall' if load < 1.5 else 'CPU'}): "
            f"{'PASS' if busy_ok else 'FAIL'}",
        )
    )
    summary.append(
        summary_row(
            f"search_runs, {args.search_runs:,} runs, mlflow client",
            f"{s_s * 1000:,.0f} ms",
            f"mlflow server {m_s * 1000:,.0f} ms",
            f"{m_s / s_s:.1f}x",
            f"same runs: {'PASS' if same_runs else 'FAIL'}",
            check=same_runs,
        )
    )

    # Strata-only figures at full scale.
    console.print(f"adding runs to Strata up to {len(rows):,} ...")
    populate_strata(work / "strata", rows[args.search_runs :], first=args.search_runs)
    os.environ["STRATA_HOME"] = str(work / "strata")
    from strata import Client
    from strata.tracking.models import Metric

    t = Client().tracking
    t2 = Table(title=f"Strata at scale ({len(rows):,} runs)", header_style="bold")
    for col in ("figure", "value", "target", "result"):
        t2.add_column(col)
    with strata_server(work / "strata", token=TOKEN) as uri:
        for max_results in (1000, 100):
            emb = _p50(
                lambda mr=max_results: t.search_runs(st_exp, FILTER, order_by=ORDER, max_results=mr)
            )
            rest = _p50(lambda mr=max_results: _rest_search(uri, st_exp, mr))
            via_client, hits, _, _ = bench_search(uri, st_exp, max_results=max_results)
            assert hits == expected_search(rows, max_results), "search returned other runs"
            if max_results == 1000:
                summary.append(
                    summary_row(
                        f"search_runs, {len(rows):,} runs, 1,000 results, embedded",
                        f"{emb * 1000:.0f} ms",
                        target=f"< 100 ms: {'PASS' if emb < 0.1 else 'FAIL'}",
                    )
                )
            t2.add_row(
                f"search_runs p50, 2 clauses + order_by, max_results={max_results} "
                f"({len(hits)} hits): embedded SDK",
                f"{emb * 1000:.0f} ms",
                "< 100 ms",
                "PASS" if emb < 0.1 else "FAIL",
            )
            t2.add_row(
                "  same through strata server, MLflow REST endpoint (raw HTTP)",
                f"{rest * 1000:.0f} ms",
                "(info)",
                "",
            )
            t2.add_row(
                "  same through the mlflow client (incl. its parsing)",
                f"{via_client * 1000:.0f} ms",
                "(info)",
                "",
            )
        run = t.create_run("0")
        t.log_batch(
            run.info.run_id, metrics=[Metric("loss", float(i), 0, i) for i in range(100_000)]
        )
        embedded_hist = _p50(lambda: t.get_metric_history(run.info.run_id, "loss"))
        start = time.perf_counter()
        remote_hist = _client(uri).get_metric_history(run.info.run_id, "loss")
        mlflow_client_hist = time.perf_counter() - start
        assert len(remote_hist) == 100_000
    t2.add_row(
        "metric history, 100,000 steps, embedded SDK (p50)",
        f"{embedded_hist * 1000:.0f} ms",
        "< 200 ms",
        "PASS" if embedded_hist < 0.2 else "FAIL",
    )
    t2.add_row(
        "metric history, 100,000 steps, mlflow client -> strata server",
        f"{mlflow_client_hist * 1000:.0f} ms",
        "(info)",
        "",
    )
    errors, secs = concurrent_writers(work / "writers")
    t2.add_row(
        "4 SQLite writer processes x 100 runs (create + 50 points + end)",
        f"{errors} errors in {secs:.1f} s",
        "0 errors",
        "PASS" if errors == 0 else "FAIL",
    )
    console.print(t2)
    summary.append(
        summary_row(
            "metric history, 100,000 steps, embedded",
            f"{embedded_hist * 1000:.0f} ms",
            target=f"< 200 ms: {'PASS' if embedded_hist < 0.2 else 'FAIL'}",
        )
    )
    summary.append(
        summary_row(
            "4 SQLite writer processes x 100 runs",
            f"{errors} errors",
            target=f"0 errors: {'PASS' if errors == 0 else 'FAIL'}",
        )
    )
    emit("tracking_vs_mlflow", summary)
    return 0 if same_runs and errors == 0 else 1


def _p50(fn: Any, reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rest_search(uri: str, exp: str, max_results: int) -> bytes:
    import httpx

    response = httpx.post(
        f"{uri}/api/2.0/mlflow/runs/search",
        json={
            "experiment_ids": [exp],
            "filter": FILTER,
            "order_by": ORDER,
            "max_results": max_results,
        },
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    )
    response.raise_for_status()
    return response.content


if __name__ == "__main__":
    raise SystemExit(main())
