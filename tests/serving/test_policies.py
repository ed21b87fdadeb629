"""Traffic policies set at runtime through the serving service and applied by a live server:
canary (weighted, sticky, returned and logged), shadow (mirrored, logged, never returned),
fallback (low confidence) and the response cache; each visible in metrics."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import duckdb
import httpx

from .conftest import FEATURES, Flights, rows, start_serving


def _wait_policy(url: str, field: str) -> None:
    """Until the server applies a policy whose ``field`` is set (its models loaded)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/v1/endpoints").json()["endpoints"][0]
        if status["policy"][field] and len(status["loaded_versions"]) > 1:
            return
        time.sleep(0.1)
    raise AssertionError(f"policy with {field} not applied: {status}")


def test_runtime_policies(flights: Flights) -> None:
    config = {
        "endpoints": [{"model": "flights@champion"}],
        "poll_seconds": 0.1,
        "prediction_log": {"enabled": True, "flush_seconds": 0.1},
    }
    flights.client.registry.set_alias("flights", "champion", 1)
    body = {"records": rows(flights.frame, 2)[FEATURES].to_dict(orient="records")}
    serving = flights.client.serving
    for url in start_serving(flights.settings, config):
        deadline = time.monotonic() + 30  # workers publish their endpoints after start
        while not serving.list_endpoints() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [e.name for e in serving.list_endpoints()] == ["flights"]
        serving.set_traffic_policy("flights", {"canary": [{"model": "flights/2", "weight": 0.5}]})
        _wait_policy(url, "canary")
        paths: Counter[tuple[str, str]] = Counter()
        sticky: dict[str, set[str]] = {}
        for i in range(200):
            key = f"user-{i % 20}"
            r = httpx.post(
                f"{url}/v1/models/flights/predict", json=body, headers={"x-strata-key": key}
            )
            assert r.status_code == 200
            doc = r.json()
            paths[(doc["path"], doc["version"])] += 1
            sticky.setdefault(key, set()).add(doc["path"])
            assert r.headers["x-strata-path"] == doc["path"]
        assert set(paths) == {("primary", "1"), ("canary", "2")}
        assert all(len(p) == 1 for p in sticky.values())  # a key always lands the same way
        assert 40 < paths[("canary", "2")] < 160

        # weight 0: the canary stays configured (and loaded) but gets no request
        serving.set_traffic_policy("flights", {"canary": [{"model": "flights/2", "weight": 0}]})
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/v1/endpoints").json()["endpoints"][0]["policy"]["canary"][0][
            "weight"
        ]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for i in range(40):
            r = httpx.post(
                f"{url}/v1/models/flights/predict", json=body, headers={"x-strata-key": f"u{i}"}
            )
            assert r.json()["path"] == "primary"

        serving.set_traffic_policy(
            "flights",
            {
                "shadow": {"model": "flights/2"},
                "fallback": {"model": "flights/2", "min_confidence": 0.999},
            },
        )
        _wait_policy(url, "shadow")
        r = httpx.post(
            f"{url}/v1/models/flights/predict", json=body, headers={"x-request-id": "fb-1"}
        )
        assert r.json()["path"] == "fallback" and r.json()["version"] == "2"

        serving.set_traffic_policy("flights", {"cache": {"ttl_seconds": 60}})
        deadline = time.monotonic() + 20
        while not httpx.get(f"{url}/v1/endpoints").json()["endpoints"][0]["policy"]["cache"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        first = httpx.post(f"{url}/v1/models/flights/predict", json=body).json()
        second = httpx.post(f"{url}/v1/models/flights/predict", json=body).json()
        assert first["path"] == "primary" and second["path"] == "cache"
        assert first["predictions"] == second["predictions"]

        deadline = time.monotonic() + 10
        metrics = ""
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{url}/metrics").text
            if 'path="shadow"' in metrics:
                break
            time.sleep(0.1)
        assert (
            'strata_serving_fallbacks_total{endpoint="flights",reason="low_confidence"}' in metrics
        )
        for path in ("primary", "canary", "shadow", "fallback", "cache"):
            assert f'path="{path}"' in metrics, path
        time.sleep(0.5)  # the prediction log's next flush
    root = Path(flights.settings.artifact_uri)
    glob = str(root / "predictions" / "model=flights" / "*" / "*.parquet")
    logged = dict(
        duckdb.sql(
            f"select path, count(*) from read_parquet('{glob}', hive_partitioning=true, "
            f"union_by_name=true) group by path"
        ).fetchall()
    )
    assert {"primary", "canary", "shadow", "fallback", "cache"} <= set(logged)
    shadow_of_fb = duckdb.sql(
        f"select path, version from read_parquet('{glob}', hive_partitioning=true, "
        f"union_by_name=true) where request_id = 'fb-1' order by path"
    ).fetchall()
    assert ("fallback", "2") in shadow_of_fb and ("shadow", "2") in shadow_of_fb
    audit = flights.client.governance.list_audit(action="serving.set_traffic_policy")
    assert len(audit) >= 3


def test_field_stickiness_reads_the_named_field_in_every_protocol(flights: Flights) -> None:
    """``sticky_key: field:hour``: a request is placed by its ``hour`` (a top-level field,
    else the input's first row), whatever else it carries (a Strata ``key``, other
    features), in Strata JSON, OIP and MLflow alike."""
    config = {
        "endpoints": [
            {
                "model": "flights@champion",
                "name": "sticky",  # not "flights": test_runtime_policies stored its policy
                "policy": {
                    "canary": [{"model": "flights/2", "weight": 0.5}],
                    "sticky_key": "field:hour",
                },
            }
        ],
        "prediction_log": {"enabled": False},
    }
    flights.client.registry.set_alias("flights", "champion", 1)
    frame = rows(flights.frame, 40)[FEATURES]
    for url in start_serving(flights.settings, config):
        by_hour: dict[float, set[str]] = {}
        for i, record in enumerate(frame.to_dict(orient="records")):
            hour = record["hour"]
            strata = httpx.post(
                f"{url}/v1/models/sticky/predict", json={"records": [record], "key": f"k{i}"}
            ).json()["path"]
            split = {"columns": FEATURES, "data": [[record[f] for f in FEATURES]]}
            mlflow = httpx.post(f"{url}/invocations", json={"dataframe_split": split})
            oip = httpx.post(
                f"{url}/v2/models/sticky/infer",
                json={
                    "inputs": [
                        {"name": f, "shape": [1], "datatype": "FP64", "data": [record[f]]}
                        for f in FEATURES
                    ]
                },
            )
            assert mlflow.status_code == 200 and oip.status_code == 200
            paths = {strata, mlflow.headers["x-strata-path"], oip.headers["x-strata-path"]}
            by_hour.setdefault(hour, set()).update(paths)
        assert all(len(p) == 1 for p in by_hour.values()), by_hour  # an hour: one path
        assert {p for ps in by_hour.values() for p in ps} == {"primary", "canary"}
        # a top-level field of the body wins over the inputs' (OIP: its parameters)
        record = frame.iloc[0].to_dict()
        placed = {
            httpx.post(
                f"{url}/v1/models/sticky/predict",
                json={"records": [{**record, "hour": float(h)}], "hour": 5},
            ).json()["path"]
            for h in range(24)
        }
        assert len(placed) == 1


def test_response_cache_evicts_the_least_recent_and_expires(flights: Flights) -> None:
    """``cache: {max_entries: 2, ttl_seconds: 3}``: a third distinct input evicts the least
    recently used; an entry past its TTL is predicted again."""
    config = {
        "endpoints": [
            {
                "model": "flights/1",
                "name": "cached",
                "policy": {"cache": {"max_entries": 2, "ttl_seconds": 3}},
            }
        ],
        "prediction_log": {"enabled": False},
    }
    records = rows(flights.frame, 3)[FEATURES].to_dict(orient="records")

    def path(url: str, i: int) -> str:
        r = httpx.post(f"{url}/v1/models/cached/predict", json={"records": [records[i]]})
        assert r.status_code == 200
        return str(r.json()["path"])

    for url in start_serving(flights.settings, config):
        assert [path(url, i) for i in (0, 1, 0)] == ["primary", "primary", "cache"]
        assert path(url, 2) == "primary"  # evicts 1 (0 was used after it)
        assert [path(url, 0), path(url, 2), path(url, 1)] == ["cache", "cache", "primary"]
        time.sleep(3.2)
        assert path(url, 1) == "primary"  # expired
