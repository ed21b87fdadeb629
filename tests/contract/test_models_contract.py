"""The model metadata of runs, embedded and remote, and its REST route."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from conftest import LiveServer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import strata
import strata.models as sm
from strata.client import Client
from strata.core.errors import NotFound
from strata.tracking import fluent


@pytest.fixture(autouse=True)
def _no_active_run() -> Iterator[None]:
    yield
    while fluent.active_run() is not None:
        fluent.end_run()
    fluent._services.close_default()


def _log(client: Client) -> tuple[str, str]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = LogisticRegression(max_iter=300).fit(X, y)
    with strata.start_run(experiment="models-contract", client=client) as run:
        info = strata.log_model(clf, "model", input_example=X.head(3))
        strata.log_model(clf, "nested/copy")
    sm.export_onnx(info.model_uri, tracking=client.tracking)
    return run.run_id, info.model_uri


def test_run_models_lists_each_logged_model_with_its_spec(client: Client) -> None:
    run_id, uri = _log(client)
    found = sm.run_models(client.tracking, run_id)
    assert [m.artifact_path for m in found] == ["model", "nested/copy"]
    first, second = found
    assert first.model_uri == uri and first.status == "READY" and first.error is None
    assert first.spec is not None and list(first.spec.flavors) == ["sklearn", "onnx"]
    assert first.spec.onnx_parity is not None and first.spec.onnx_parity.label_agreement == 1.0
    assert first.spec.signature is not None and first.spec.signature.labels == [0, 1, 2]
    assert "model.onnx" in first.spec.files
    assert second.spec is not None and second.spec.signature is None
    with pytest.raises(NotFound):
        sm.run_models(client.tracking, "0" * 32)
    with strata.start_run(experiment="models-contract", client=client) as empty:
        pass
    assert sm.run_models(client.tracking, empty.run_id) == []


def test_a_broken_upload_is_listed_with_its_error(client: Client) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    with strata.start_run(experiment="models-contract", client=client) as run:
        strata.log_model(LogisticRegression(max_iter=200).fit(X, y), "model")
    client.tracking.delete_artifact(run.run_id, "model/strata-model.yaml")
    (only,) = sm.run_models(client.tracking, run.run_id)
    assert only.spec is None and only.error is not None and "strata-model.yaml" in only.error


def test_rest_route_serves_the_same_metadata(live_server: LiveServer) -> None:
    run_id, _ = _log(live_server.client())
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=headers) as http:
        r = http.get(f"/api/v1/models/runs/{run_id}")
        assert r.status_code == 200
        body = r.json()
        assert [m["artifact_path"] for m in body] == ["model", "nested/copy"]
        spec = body[0]["spec"]
        assert spec["flavors"]["onnx"]["serialization"] == "onnx"
        assert set(spec["files"]) >= {"model.skops", "model.onnx", "input_example.json"}
        assert np.isclose(spec["onnx_parity"]["label_agreement"], 1.0)
        r = http.get("/api/v1/models/runs/nope")
        assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    r = httpx.get(f"{live_server.url}/api/v1/models/runs/{run_id}")
    assert r.status_code == 401
    viewer = live_server.token_for("viewer")
    r = httpx.get(
        f"{live_server.url}/api/v1/models/runs/{run_id}",
        headers={"Authorization": f"Bearer {viewer}"},
    )
    assert r.status_code == 200  # a read
