"""The Feast side of benchmarks/features_retrieval.py, run by a Python that has
``feast[duckdb]`` (not Strata's venv: Feast pins its own pandas).

    FEAST_PYTHON benchmarks/_feast_peer.py DIR WEATHER.parquet

``DIR`` holds ``entities.parquet`` and ``planes.parquet`` (written by the benchmark); the
weather file is the view's source. Feast's local provider with the DuckDB offline store
runs ``get_historical_features(...).to_df()`` for the same features and TTL (6 h) as
Strata; the seconds go to stdout as JSON and the answer to ``DIR/feast_out.parquet``, so
the benchmark compares it cell by cell. Planes have no event time, and Feast needs one: a
constant 1970 timestamp with no TTL gives the same static join.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

import pandas as pd

warnings.simplefilter("ignore")

WEATHER = ["temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]


def main() -> None:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.repo_config import RepoConfig
    from feast.types import Float64, Int64

    work, weather_path = Path(sys.argv[1]), sys.argv[2]
    config = RepoConfig(
        project="bench",
        registry=str(work / "feast_registry.db"),
        provider="local",
        offline_store={"type": "duckdb"},
        online_store={"type": "sqlite", "path": str(work / "feast_online.db")},
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    airport = Entity(name="airport", join_keys=["origin"])
    plane = Entity(name="plane", join_keys=["tailnum"])
    weather = FeatureView(
        name="weather",
        entities=[airport],
        ttl=timedelta(hours=6),
        schema=[Field(name=f, dtype=Float64) for f in WEATHER],
        source=FileSource(path=weather_path, timestamp_field="time_hour"),
    )
    planes = FeatureView(
        name="planes",
        entities=[plane],
        ttl=timedelta(0),  # Feast: no TTL
        schema=[Field(name="seats", dtype=Int64)],
        source=FileSource(path=str(work / "planes.parquet"), timestamp_field="ts"),
    )
    store.apply([airport, plane, weather, planes])
    entities = pd.read_parquet(work / "entities.parquet")
    features = [f"weather:{f}" for f in WEATHER] + ["planes:seats"]
    started = time.perf_counter()
    out = store.get_historical_features(entity_df=entities, features=features).to_df()
    seconds = time.perf_counter() - started
    out.to_parquet(work / "feast_out.parquet")
    print(json.dumps({"seconds": seconds, "rows": len(out)}))


if __name__ == "__main__":
    main()
