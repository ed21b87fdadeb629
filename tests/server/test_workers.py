"""`strata server --workers 2`: both worker processes serve, and writes through both on the
embedded SQLite database lose nothing.

Which worker served a request is read from the kernel, not from the server: each keep-alive
connection is owned by the worker process that accepted it (psutil lists its sockets).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from strata.client import Client
from strata.core.config import Settings

from .test_run import ServerProcess, _stop, cli_server

THREADS = 8
RUNS_PER_THREAD = 12
POINTS = 25


def _workers(server: ServerProcess) -> dict[int, int]:
    """{client-side port: pid of the worker holding that connection} for every connection
    a worker of ``server`` holds on its port."""
    port = int(server.url.rsplit(":", 1)[1])
    owners: dict[int, int] = {}
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            conns = child.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        for c in conns:
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port and c.raddr:
                owners[c.raddr.port] = child.pid
    return owners


def _client_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def _connections_on_both_workers(
    server: ServerProcess, headers: dict[str, str]
) -> tuple[list[httpx.Client], list[int], list[int]]:
    """THREADS keep-alive connections, some on each worker: (clients, ports, owners).

    New connections go to whichever worker accepts first, and the second worker may still be
    starting when the first answers /healthz: open THREADS connections at once (each makes a
    request) until both workers hold some. Used at once, before the server's keep-alive
    timeout closes them."""
    deadline = time.monotonic() + 90
    while True:
        clients = [httpx.Client(headers=headers, timeout=60) for _ in range(THREADS)]
        ports = [0] * THREADS

        def hello(c: httpx.Client, i: int, ports: list[int]) -> None:
            r = c.get(f"{server.url}/api/v1/whoami")
            if r.status_code == 200:  # else the port stays 0 and this round is retried
                ports[i] = _client_port(r)

        threads = [
            threading.Thread(target=hello, args=(c, i, ports)) for i, c in enumerate(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        owners = _workers(server)
        by_thread = [owners.get(p, 0) for p in ports]
        if len(set(by_thread)) == 2 and 0 not in by_thread:
            return clients, ports, by_thread
        for c in clients:
            c.close()
        assert time.monotonic() < deadline, f"one worker accepted every connection: {owners}"
        time.sleep(0.5)


def test_two_workers_both_serve_and_lose_no_writes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    token = "strata_" + "w" * 40
    with cli_server(home, "--workers", "2", STRATA_ADMIN_TOKEN=token) as server:
        headers = {"Authorization": f"Bearer {token}"}
        api = f"{server.url}/api/2.0/mlflow"
        clients: list[httpx.Client] = []
        try:
            clients, ports, by_thread = _connections_on_both_workers(server, headers)
            exp = clients[0].post(f"{api}/experiments/create", json={"name": f"w-{time.time()}"})
            assert exp.status_code == 200, exp.text
            exp_id = exp.json()["experiment_id"]

            errors: list[str] = []
            start = threading.Barrier(len(clients))

            def post(i: int, path: str, body: dict[str, object]) -> httpx.Response | None:
                r = clients[i].post(f"{api}/{path}", json=body)
                if r.status_code != 200:
                    errors.append(f"{path}: {r.status_code} {r.text}")
                    return None
                if _client_port(r) != ports[i]:  # a new connection: maybe the other worker
                    errors.append(f"thread {i}: the connection to worker {by_thread[i]} closed")
                return r

            def write(i: int) -> None:
                start.wait(30)
                for k in range(RUNS_PER_THREAD):
                    body = {"experiment_id": exp_id, "run_name": f"t{i}-r{k}"}
                    r = post(i, "runs/create", body)
                    if r is None:
                        continue
                    run_id = r.json()["run"]["info"]["run_id"]
                    metrics = [
                        {"key": "m", "value": float(s), "timestamp": 0, "step": s}
                        for s in range(POINTS)
                    ]
                    params = [{"key": "thread", "value": str(i)}]
                    post(i, "runs/log-batch", {"run_id": run_id, "metrics": metrics,
                                               "params": params})  # fmt: skip
                    post(i, "runs/update", {"run_id": run_id, "status": "FINISHED"})

            threads = [threading.Thread(target=write, args=(i,)) for i in range(len(clients))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert errors == []
            # Every write went over these connections, which live on both workers.
            assert len(set(by_thread)) == 2
        finally:
            for c in clients:
                c.close()
        _stop(server)

    check = Client(settings=Settings(home=home))
    try:
        runs = check.tracking.search_runs(exp_id, max_results=1000)
        assert sorted(r.info.run_name for r in runs) == sorted(
            f"t{i}-r{k}" for i in range(len(by_thread)) for k in range(RUNS_PER_THREAD)
        )
        for r in runs:
            assert r.info.status == "FINISHED"
            assert r.params == {"thread": r.info.run_name[1:].split("-")[0]}
            steps = [m.step for m in check.tracking.get_metric_history(r.info.run_id, "m")]
            assert steps == list(range(POINTS)), r.info.run_name
        audit = check.governance.verify_audit()
        assert audit.ok, audit.reason
    finally:
        check.close()


def test_an_exited_workers_gauges_leave_the_merged_scrape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two real worker processes write their live-only gauges; once one has exited, the merged
    /metrics payload shows only the other (its frozen CPU and memory would stay otherwise)."""
    import subprocess
    import sys

    from prometheus_client import CollectorRegistry

    from strata.server.app import _metrics_payload

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    code = (
        "import os, sys\n"
        "from strata.serving.metrics import ServingMetrics\n"
        "m = ServingMetrics(); m.sample_process(); print(m.worker, flush=True)\n"
        "sys.stdin.read()\n"  # stay alive until told
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]  # fmt: skip
    try:
        gone, live = (p.stdout.readline().strip() for p in procs)  # type: ignore[union-attr]
        procs[0].communicate("", timeout=30)  # the first worker exits
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        text = _metrics_payload(CollectorRegistry()).decode()
        memory = [
            line for line in text.splitlines() if line.startswith("strata_serving_worker_res")
        ]
        assert len(memory) == 1 and f'worker="{live}"' in memory[0], memory
        assert f'worker="{gone}"' not in text
    finally:
        for p in procs:
            if p.poll() is None:
                p.communicate("", timeout=30)
