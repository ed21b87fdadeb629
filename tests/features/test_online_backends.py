"""The skew check on both online stores: for every airport and plane, offline retrieval at
"now" equals the online lookup after materializing (SQLite and the real Redis)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from conftest import need_service

from strata.client import Client
from strata.core.config import Settings
from strata.features.models import OnlineStatus

from .conftest import FLIGHT_DEFS, WEATHER_FEATURES, planes, weather


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_offline_equals_online(backend: str, tmp_path: Path) -> None:
    online_uri = ""
    if backend == "redis":
        base = need_service("STRATA_TEST_REDIS_URL", "Redis").rsplit("/", 1)[0]
        online_uri = f"{base}/7"  # a database of its own: this test clears it
        import redis

        redis.Redis.from_url(online_uri).flushdb()
    settings = Settings(home=tmp_path / "home", online_uri=online_uri)
    with Client("", settings=settings) as client:
        client.data.ingest(weather, "weather")
        client.data.ingest(planes, "planes")
        defs = {
            **FLIGHT_DEFS,
            "feature_views": [
                {**FLIGHT_DEFS["feature_views"][0], "ttl": None},
                FLIGHT_DEFS["feature_views"][1],
            ],
        }
        client.features.apply(defs)
        now = datetime.now(UTC)
        done = {r.view: r.rows for r in client.features.materialize(None, now)}
        assert done == {"weather": 3, "planes": len(planes)}
        rows = [
            {"origin": o, "tailnum": t}
            for o, t in zip(["EWR", "JFK", "LGA"] * 1200, planes["tailnum"][:3600], strict=False)
        ]
        entities = pd.DataFrame(rows).assign(event_timestamp=now)
        features = [f"weather:{f}" for f in WEATHER_FEATURES] + ["planes:seats", "planes:year"]
        offline = client.features.get_historical_features(entities, features).to_pylist()
        online = client.features.get_online_features(features, rows)
        assert len(online.values) == len(offline)
        for off, on in zip(offline, online.values, strict=True):
            for ref in features:
                value = on[ref].value
                want = off[ref.split(":")[1]]
                assert on[ref].status is OnlineStatus.PRESENT
                assert value == want or (value != value and want != want), (ref, value, want)
