"""Web UI: the runs page of an experiment with 10,000 runs, rendered by ``strata server``.

Builds a fresh STRATA_HOME with one experiment of N runs (5 params, 5 metrics, 2 tags each),
starts a real ``strata server`` (auth on) on a free loopback port, logs in through the login
form, then times full page requests over one keep-alive connection: time to the last byte on
loopback, an upper bound of the server's rendering time. Also times a 100,000-step metric's
chart data (LTTB-downsampled to 1,000 points on the server). Target: the runs page < 300 ms.

Run: ``.venv/bin/python benchmarks/ui_runs_page.py [--runs 10000] [--repeat 30]``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _servers import strata_server
from _summary import emit, row

import strata
from strata.core.config import Settings
from strata.tracking.models import Metric, Param, RunTag

TARGET_MS = 300.0


def populate(home: Path, runs: int) -> tuple[str, str]:
    """The experiment id and the id of a run holding a 100,000-step metric."""
    client = strata.Client("", settings=Settings(home=home))
    tracking = client.tracking
    eid = tracking.create_experiment("bench-ui").experiment_id
    start = time.perf_counter()
    for i in range(runs):
        run = tracking.create_run(eid, run_name=f"run-{i}")
        tracking.log_batch(
            run.run_id,
            metrics=[Metric(f"m{k}", (i * 7919 + k) % 1000 / 1000, 0, 0) for k in range(5)],
            params=[Param(f"p{k}", str((i + k) % 13)) for k in range(5)],
            tags=[RunTag("team", f"t{i % 4}"), RunTag("stage", "bench")],
        )
    long_run = tracking.create_run(eid, run_name="long")
    points = [Metric("loss", 1.0 / (s + 1), 0, s) for s in range(100_000)]
    for s in range(0, len(points), 1000):
        tracking.log_batch(long_run.run_id, metrics=points[s : s + 1000])
    print(f"created {runs:,} runs in {time.perf_counter() - start:.1f} s")
    client.close()
    return eid, long_run.run_id


def login(http: httpx.Client, token: str) -> None:
    page = http.get("/login").text
    marker = 'name="csrf" value="'
    csrf = page[page.index(marker) + len(marker) :].split('"', 1)[0]
    r = http.post("/login", data={"token": token, "csrf": csrf})
    if r.status_code != 303:
        raise SystemExit(f"login failed: {r.status_code} {r.text[:200]}")


def timed(http: httpx.Client, path: str, params: dict[str, object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat + 2):
        t0 = time.perf_counter()
        r = http.get(path, params=params)  # type: ignore[arg-type]
        elapsed = (time.perf_counter() - t0) * 1000
        if r.status_code != 200:
            raise SystemExit(f"{path} {params}: {r.status_code} {r.text[:300]}")
        out.append(elapsed)
    return out[2:]  # the first requests warm caches (templates, SQLite pages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    token = "strata_" + secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        eid, long_run = populate(home, args.runs)
        with (
            strata_server(home, token=token) as url,
            httpx.Client(base_url=url, timeout=60) as http,
        ):
            login(http, token)
            cases = [
                ("runs page, default (50 runs)", f"/experiments/{eid}", {}),
                (
                    "runs page, filter + order_by",
                    f"/experiments/{eid}",
                    {"filter": "params.p1 = '3' and metrics.m2 > 0.2", "order": "metrics.m0 DESC"},
                ),
                (
                    "runs page, 3 chosen columns, sorted by a metric",
                    f"/experiments/{eid}",
                    {"col": ["params.p0", "metrics.m1", "tags.team"], "order": "metrics.m1 ASC"},
                ),
                ("runs page, 500 runs per page", f"/experiments/{eid}", {"size": 500}),
                ("chart data, 100,000 steps -> 1,000", f"/runs/{long_run}/metric", {"key": "loss"}),
            ]
            shown = http.get(f"/experiments/{eid}").text.count('data-run="')
            print(f"\n{args.runs:,} runs; {args.repeat} requests each over keep-alive (ms)")
            print(f"{'request':<50} {'median':>8} {'p95':>8} {'max':>8}  target")
            rows = [row("runs page shows one page of 50 runs", str(shown), check=shown == 50)]
            passed = True
            for name, path, params in cases:
                times = sorted(timed(http, path, params, args.repeat))
                median = statistics.median(times)
                p95 = times[int(0.95 * (len(times) - 1))]
                verdict = ""
                if name.startswith("runs page, default"):
                    passed = median < TARGET_MS
                    verdict = f"< {TARGET_MS:.0f} ms: {'PASS' if passed else 'FAIL'}"
                print(f"{name:<50} {median:8.1f} {p95:8.1f} {times[-1]:8.1f}  {verdict}")
                rows.append(
                    row(
                        f"UI {name}, {args.runs:,} runs (median)",
                        f"{median:.0f} ms",
                        target=verdict,
                    )
                )
    emit("ui_runs_page", rows)
    if not passed or shown != 50:
        sys.exit(1)


if __name__ == "__main__":
    main()
