"""The lean dispatcher of the MLflow routes (server/fastpath.py): the same answers, checks,
audit and metrics as FastAPI's routing, without its routing and dependency machinery."""

from __future__ import annotations

from typing import Any

import fastapi.routing
import pytest

from strata.core.principal import Role
from strata.server.fastpath import lean_table

from .conftest import AppEnv

API = "/api/2.0/mlflow"


def _count_solves(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return calls


def test_table_holds_static_mlflow_routes_only(env: AppEnv) -> None:
    table = lean_table(env.app)
    for method, path in (
        ("POST", f"{API}/runs/log-metric"),
        ("POST", f"{API}/runs/log-batch"),
        ("POST", f"{API}/runs/search"),
        ("GET", f"{API}/runs/get"),
        ("POST", "/ajax-api/2.0/mlflow/runs/log-metric"),
    ):
        assert (method, path) in table
    assert all("{" not in path for _, path in table)  # parameterised paths stay with FastAPI
    # Strata's REST goes through FastAPI, but for the routes marked lean (the online lookup)
    assert {p for _, p in table if p.startswith("/api/v1/")} == {"/api/v1/features/online"}


def test_online_lookup_is_lean_with_the_same_checks_and_400s(
    env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_solves(monkeypatch)
    url = "/api/v1/features/online"
    viewer = env.auth(Role.VIEWER)
    body = {"features": ["weather:temp"], "entity_rows": [{"origin": "JFK"}]}
    assert env.http.post(url, json=body).status_code == 401
    unknown = env.http.post(url, json=body, headers=viewer)
    assert unknown.status_code == 404 and "weather" in unknown.json()["message"]
    for bad, field in (
        ({"entity_rows": []}, "features"),
        ({"features": "s", "entity_rows": "JFK"}, "entity_rows"),
        ({"features": "s", "entity_rows": [], "extra": 1}, "extra"),
        ({"features": "s", "entity_rows": [{}] * 10_001}, "entity_rows"),
    ):
        r = env.http.post(url, json=bad, headers=viewer)
        assert r.status_code == 400, r.text
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert r.json()["message"].startswith(f"Invalid request: {field}"), r.text
    for raw in (b"", b"{not json", b"[]"):
        r = env.http.post(url, content=raw, headers={**viewer, "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["message"].startswith("Invalid request: body")
    assert calls[0] == 0
    spec = env.http.get("/openapi.json").json()["paths"][url]["post"]
    schema = spec["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"features", "entity_rows"}


def test_lean_routes_skip_fastapi_dependency_solving(
    env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_solves(monkeypatch)
    editor = env.auth(Role.EDITOR)
    run = env.http.post(f"{API}/runs/create", json={"experiment_id": "0"}, headers=editor)
    run_id = run.json()["run"]["info"]["run_id"]
    for step in range(5):
        r = env.http.post(
            f"{API}/runs/log-metric",
            json={"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": step},
            headers=editor,
        )
        assert r.status_code == 200, r.text
    assert calls[0] == 0
    hist = env.http.get(
        f"{API}/metrics/get-history",
        params={"run_id": run_id, "metric_key": "loss"},
        headers=editor,
    )
    assert [m["step"] for m in hist.json()["metrics"]] == [0, 1, 2, 3, 4]
    env.http.get("/api/v1/experiments/0", headers=editor)  # Strata's REST: through FastAPI
    assert calls[0] > 0


def test_lean_routes_keep_auth_permissions_and_audit(env: AppEnv) -> None:
    body = {"experiment_id": "0"}
    none = env.http.post(f"{API}/runs/create", json=body)
    assert none.status_code == 401 and none.json()["error_code"] == "UNAUTHENTICATED"
    bad = env.http.post(f"{API}/runs/create", json=body, headers={"Authorization": "Bearer x"})
    assert bad.status_code == 401
    viewer = env.http.post(f"{API}/runs/create", json=body, headers=env.auth(Role.VIEWER))
    assert viewer.status_code == 403 and viewer.json()["error_code"] == "PERMISSION_DENIED"
    read = env.http.post(
        f"{API}/runs/search", json={"experiment_ids": ["0"]}, headers=env.auth(Role.VIEWER)
    )
    assert read.status_code == 200
    events = env.gov.list_audit(limit=50).items
    refused = [e for e in events if e.action == f"POST {API}/runs/create"]
    assert {e.outcome for e in refused} >= {"unauthenticated", "denied"}


def test_lean_routes_keep_metrics_and_request_ids(env: AppEnv) -> None:
    r = env.http.post(
        f"{API}/runs/search",
        json={"experiment_ids": ["0"]},
        headers={**env.auth(Role.VIEWER), "X-Request-ID": "lean-123"},
    )
    assert r.headers["x-request-id"] == "lean-123"
    metrics = env.http.get("/metrics", headers=env.auth(Role.ADMIN)).text
    assert f'route="{API}/runs/search"' in metrics


def test_mlflow_integers_beyond_int64_are_a_400_not_a_500(env: AppEnv) -> None:
    """Found by the fuzz: an end_time past int64 overflowed the database (a 500)."""
    editor = env.auth(Role.EDITOR)
    run = env.http.post(f"{API}/runs/create", json={"experiment_id": "0"}, headers=editor)
    run_id = run.json()["run"]["info"]["run_id"]
    for field in ("end_time",):
        r = env.http.post(
            f"{API}/runs/update", json={"run_id": run_id, field: 2**64}, headers=editor
        )
        assert r.status_code == 400, r.text
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert f"'{field}'" in r.json()["message"]
