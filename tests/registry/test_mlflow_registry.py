"""The real ``mlflow`` client (pinned 3.17.2) against Strata's registry: register_model,
MlflowClient registry calls, stages, aliases, and pyfunc loading ``models:/name@alias``
through the artifact proxy. Strata sees the same versions through client.registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from conftest import LiveServer
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException
from registry_helpers import data, log_run
from sklearn.linear_model import LogisticRegression

import strata.models as sm
from strata.core.errors import PermissionDenied


@pytest.fixture
def mlflow_env(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", live_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", live_server.admin_token)
    mlflow.set_tracking_uri(live_server.url)
    mlflow.set_registry_uri(live_server.url)
    yield MlflowClient(live_server.url, live_server.url)
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def test_register_and_load_an_mlflow_model_by_alias(
    mlflow_env: MlflowClient, live_server: LiveServer, tmp_path: Path
) -> None:
    x, y = data()
    clf = LogisticRegression().fit(x, y)
    mlflow.set_experiment("mlflow-reg")
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(
            clf, name="model", serialization_format="skops", skops_trusted_types=[]
        )
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", "iris-clf")
    assert (mv.name, mv.version, mv.status) == ("iris-clf", "1", "READY")
    client = mlflow_env
    client.set_registered_model_alias("iris-clf", "champion", "1")
    assert client.get_model_version_by_alias("iris-clf", "champion").version == "1"
    loaded = mlflow.pyfunc.load_model("models:/iris-clf@champion")
    assert np.array_equal(loaded.predict(x), clf.predict(x))
    assert np.array_equal(mlflow.pyfunc.load_model("models:/iris-clf/1").predict(x), clf.predict(x))
    # Downloaded by alias and brought into Strata's format: skops needs no trust ...
    local = mlflow.artifacts.download_artifacts(
        "models:/iris-clf@champion", dst_path=str(tmp_path / "dl")
    )
    sm.import_mlflow(local, tmp_path / "imported")
    assert np.array_equal(sm.load(tmp_path / "imported").predict(x), clf.predict(x))
    # ... a pickled one does.
    with mlflow.start_run() as pickled_run:
        mlflow.sklearn.log_model(clf, name="model", serialization_format="cloudpickle")
    mlflow.register_model(f"runs:/{pickled_run.info.run_id}/model", "iris-clf")
    local2 = mlflow.artifacts.download_artifacts(
        "models:/iris-clf/2", dst_path=str(tmp_path / "dl2")
    )
    with pytest.raises(PermissionDenied, match="trusted=True"):
        sm.import_mlflow(local2, tmp_path / "imported2")
    sm.import_mlflow(local2, tmp_path / "imported2", trusted=True)
    # Strata sees the same version, with the alias move in its history.
    strata_client = live_server.client()
    try:
        version = strata_client.registry.get_version("iris-clf", 1)
        assert version.format == "mlflow" and version.model_id and version.run_id == run.info.run_id
        move = strata_client.registry.alias_history("iris-clf", "champion").items[0]
        assert (move.to_version, move.reason) == (1, "set through the MLflow API")
    finally:
        strata_client.close()


def test_mlflow_client_registry_calls(mlflow_env: MlflowClient, live_server: LiveServer) -> None:
    client = mlflow_env
    strata_client = live_server.client()
    try:
        run_id = log_run(strata_client)
    finally:
        strata_client.close()
    client.create_registered_model("flights-a", tags={"team": "ops"}, description="first")
    client.create_registered_model("flights-b", tags={"team": "ml"})
    client.create_registered_model("taxi", tags={"team": "ops"})
    for name in ("flights-a", "flights-b", "flights-a"):
        mv = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
        assert mv.status == "READY"
    found = client.search_registered_models("name LIKE 'flights%' AND tags.team = 'ops'")
    assert [m.name for m in found] == ["flights-a"]
    page = client.search_registered_models(max_results=2, order_by=["name DESC"])
    assert [m.name for m in page] == ["taxi", "flights-b"] and page.token
    rest = client.search_registered_models(order_by=["name DESC"], page_token=page.token)
    assert [m.name for m in rest] == ["flights-a"]
    versions = client.search_model_versions("name = 'flights-a'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    client.update_registered_model("flights-a", description="updated")
    got = client.get_registered_model("flights-a")
    assert got.description == "updated" and got.tags == {"team": "ops"}
    client.set_registered_model_tag("flights-a", "tier", "gold")
    client.delete_registered_model_tag("flights-a", "team")
    assert client.get_registered_model("flights-a").tags == {"tier": "gold"}
    client.set_model_version_tag("flights-a", "1", "validated", "yes")
    assert client.get_model_version("flights-a", "1").tags == {"validated": "yes"}
    client.delete_model_version_tag("flights-a", "1", "validated")
    client.update_model_version("flights-a", "1", description="v1")
    assert client.get_model_version("flights-a", "1").description == "v1"
    staged = client.transition_model_version_stage("flights-a", "2", "Staging")
    assert staged.current_stage == "Staging"
    latest = client.get_latest_versions("flights-a", stages=["Staging"])
    assert [v.version for v in latest] == ["2"]
    with pytest.raises(RestException) as denied:  # production needs an approved request
        client.transition_model_version_stage("flights-a", "1", "Production")
    assert denied.value.get_http_status_code() == 403
    client.set_registered_model_alias("flights-a", "canary", "1")
    assert client.get_registered_model("flights-a").aliases == {"canary": "1", "staging": "2"}
    client.delete_registered_model_alias("flights-a", "canary")
    with pytest.raises(MlflowException, match="no alias 'canary'"):
        client.get_model_version_by_alias("flights-a", "canary")
    uri = client.get_model_version_download_uri("flights-a", "1")
    assert uri.startswith("mlflow-artifacts:/") and uri.endswith("/model")
    model = sm.load("models:/flights-a/1", tracking=live_server.embedded.tracking)
    assert model.flavor == "sklearn"
    client.rename_registered_model("flights-b", "flights-c")
    client.delete_model_version("flights-a", "2")
    client.delete_registered_model("flights-c")
    with pytest.raises(MlflowException, match="not found"):
        client.get_registered_model("flights-c")
    with pytest.raises(MlflowException, match="no version 9"):
        client.get_model_version("flights-a", "9")


def test_graphql_lists_a_runs_model_versions(live_server: LiveServer) -> None:
    """The MLflow UI's run page asks /graphql for the run's registered versions."""
    import httpx

    client = live_server.client()
    try:
        run_id = log_run(client)
        client.registry.register("gql-model", run_id)
        client.registry.register("gql-model", run_id)
    finally:
        client.close()
    query = """query($data: MlflowGetRunInput!) { mlflowGetRun(input: $data) {
        run { info { runId } modelVersions { name version status source } } } }"""
    r = httpx.post(
        f"{live_server.url}/graphql",
        json={"query": query, "variables": {"data": {"runId": run_id}}},
        headers={"Authorization": f"Bearer {live_server.admin_token}"},
    )
    run = r.json()["data"]["mlflowGetRun"]["run"]
    assert run["info"]["runId"] == run_id
    assert sorted((v["name"], v["version"], v["status"]) for v in run["modelVersions"]) == [
        ("gql-model", "1", "READY"),
        ("gql-model", "2", "READY"),
    ]
    search = """{ mlflowSearchModelVersions(input: {filter: "name = 'gql-model'"}) {
        modelVersions { version } } }"""
    r = httpx.post(
        f"{live_server.url}/graphql",
        json={"query": search},
        headers={"Authorization": f"Bearer {live_server.admin_token}"},
    )
    found = r.json()["data"]["mlflowSearchModelVersions"]["modelVersions"]
    assert sorted(v["version"] for v in found) == ["1", "2"]


def test_promotion_walk_seen_through_the_mlflow_client(
    mlflow_env: MlflowClient, live_server: LiveServer
) -> None:
    """Issue 13's walk with the mlflow client beside Strata: two versions registered and a
    canary set through MLflow's API; production moves only through an approved request (MLflow
    has no such call: its direct moves are 403), and the mlflow client sees every move,
    the rollback included."""
    client = mlflow_env
    strata_client = live_server.client()
    try:
        first, second = log_run(strata_client), log_run(strata_client, c=0.3)
        assert mlflow.register_model(f"runs:/{first}/model", "walk").version == "1"
        mv = client.create_model_version("walk", f"runs:/{second}/model", run_id=second)
        assert (mv.version, mv.status) == ("2", "READY")
        client.set_registered_model_alias("walk", "canary", "2")
        for direct in (
            lambda: client.set_registered_model_alias("walk", "production", "1"),
            lambda: client.transition_model_version_stage("walk", "1", "Production"),
        ):
            with pytest.raises(RestException) as denied:
                direct()
            assert denied.value.get_http_status_code() == 403
        reg = strata_client.registry
        reg.update_settings({"allow_self_approval": True})
        reg.approve(reg.request_promotion("walk", 1, alias="production", reason="v1").id)
        assert client.get_model_version_by_alias("walk", "production").version == "1"
        assert client.get_model_version("walk", "1").current_stage == "Production"
        reg.approve(reg.request_promotion("walk", 2, alias="production", reason="v2").id)
        assert client.get_registered_model("walk").aliases == {"canary": "2", "production": "2"}
        reg.rollback("walk", "production", reason="v2 misbehaves")
        assert client.get_model_version_by_alias("walk", "production").version == "1"
        history = reg.alias_history("walk", "production").items
        assert [(h.from_version, h.to_version) for h in history] == [(2, 1), (1, 2), (None, 1)]
        model = sm.load("models:/walk@production", tracking=live_server.embedded.tracking)
        assert model.flavor == "sklearn"
    finally:
        strata_client.close()
