"""Issue 7, Proofs: every MLflow operation that takes a body declares it in the OpenAPI
document (25 did not, so fuzzers and generated clients could not reach them)."""

from __future__ import annotations

from pathlib import Path

from strata.client import Client
from strata.core.config import Settings
from strata.server.app import create_app


def test_every_mlflow_write_declares_its_request_body(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    doc = create_app(settings, client=Client("", settings=settings), auth=True).openapi()
    missing = [
        f"{method.upper()} {path}"
        for path, ops in doc["paths"].items()
        if "/mlflow/" in path and "mlflow-artifacts" not in path
        for method, op in ops.items()
        if method in ("post", "patch") and "requestBody" not in op
    ]
    assert not missing, missing
    body = doc["paths"]["/api/2.0/mlflow/runs/log-metric"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["required"] == ["run_id", "key", "value", "timestamp"]
