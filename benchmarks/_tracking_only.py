"""``tracking_vs_mlflow.py --only WORKLOAD``: one workload's busy share, a few rounds, without
the whole run (which takes several minutes)."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _servers import mlflow_server, strata_server
from rich.table import Table
from tracking_vs_mlflow import (
    SEARCH_REPS,
    TOKEN,
    _run_rows,
    bench_log_batch,
    bench_log_metric,
    bench_search,
    console,
    populate_mlflow,
    populate_strata,
    server_cpu,
    timed,
)


def only(workload: str, args: argparse.Namespace) -> int:
    """One workload's busy share, ``args.rounds`` times per server: the quick check of one
    figure without the whole run (several minutes)."""
    work = Path(tempfile.mkdtemp(prefix="strata-bench-"))
    os.environ["MLFLOW_TRACKING_TOKEN"] = TOKEN
    names = ["strata"] if args.servers == "strata" else ["mlflow", "strata"]
    exps: dict[str, str] = {}
    if workload == "search":
        rows = _run_rows(args.search_runs)
        console.print(f"populating {args.search_runs} runs ...")
        for name in names:
            (work / name).mkdir()
        if "mlflow" in names:
            exps["mlflow"] = populate_mlflow(
                f"sqlite:///{work / 'mlflow' / 'mlflow.db'}", work / "mlflow", rows
            )
        exps["strata"] = populate_strata(work / "strata", rows)
    else:
        for name in names:
            (work / name).mkdir()
    table = Table(title=f"mlflow client busy share: {workload}", header_style="bold")
    for col in (
        "server",
        "round",
        "wall share",
        "CPU share",
        "client CPU per op",
        "server CPU per op",
    ):
        table.add_column(col)
    load0 = os.getloadavg()
    for name in names:
        ctx = (
            mlflow_server(work / name)
            if name == "mlflow"
            else strata_server(work / name, token=TOKEN)
        )
        with ctx as uri:
            # unmeasured: the first calls import the mlflow client's modules
            if workload == "search":
                bench_search(uri, exps[name], reps=1)
            else:
                (bench_log_metric if workload == "log_metric" else bench_log_batch)(uri, 0.5)
            for i in range(args.rounds):
                if workload == "search":
                    srv0, cpu0 = server_cpu(uri), time.process_time()
                    _, _, wall, split = bench_search(uri, exps[name])
                    client_op = (time.process_time() - cpu0) / SEARCH_REPS
                    server_op = (server_cpu(uri) - srv0) / SEARCH_REPS
                else:
                    fn = bench_log_metric if workload == "log_metric" else bench_log_batch
                    rate, client_op, server_op = timed(fn, uri, args.seconds)
                    if workload == "log_batch":  # rates and costs per point: per call here
                        rate, client_op, server_op = rate / 1000, client_op * 1000, server_op * 1000
                    wall = rate * client_op
                    split = client_op / (client_op + server_op)
                table.add_row(
                    name,
                    str(i + 1),
                    f"{wall:.1%}",
                    f"{split:.1%}",
                    f"{client_op * 1e3:.3f} ms",
                    f"{server_op * 1e3:.3f} ms",
                )
    console.print(table)
    load1 = os.getloadavg()
    console.print(
        "load (1, 5, 15 min) before "
        + " / ".join(f"{x:.2f}" for x in load0)
        + ", after "
        + " / ".join(f"{x:.2f}" for x in load1)
    )
    return 0
