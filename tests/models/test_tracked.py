"""log_model inside a run, load by runs:/ URI, the LoggedModel MLflow lists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import LiveServer
from sklearn.linear_model import LogisticRegression

import strata
import strata.models as sm
from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import DigestMismatch, InvalidInput, NotFound
from strata.tracking import fluent

Iris = tuple[pd.DataFrame, Any]


def _reset() -> None:
    while fluent.active_run() is not None:
        fluent.end_run()
    fluent._services.close_default()


@pytest.fixture
def emb(sqlite_settings: Settings) -> Iterator[Client]:
    client = Client("", settings=sqlite_settings)
    yield client
    _reset()
    client.close()


def test_log_model_then_load_by_run_uri(emb: Client, iris: Iris) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=300).fit(X, y)
    with strata.start_run(experiment="models", client=emb) as run:
        info = strata.log_model(clf, "model", input_example=X.head(3), dataset_versions=["iris@1"])
    assert info.model_uri == f"runs:/{run.run_id}/model"
    assert info.spec.run_id == run.run_id and info.spec.dataset_versions == ["iris@1"]
    names = sorted(f.path for f in emb.tracking.list_artifacts(run.run_id, "model"))
    assert names == ["model/input_example.json", "model/model.skops", "model/strata-model.yaml"]
    model = sm.load(info.model_uri, tracking=emb.tracking)
    assert np.array_equal(model.predict(X), clf.predict(X))
    logged = emb.tracking.get_logged_model(info.model_id)
    assert logged.status == "READY" and logged.source_run_id == run.run_id
    assert logged.model_type == "sklearn" and logged.tags["strata.model.uri"] == info.model_uri
    files = sorted(f.path for f in emb.tracking.list_model_artifacts(info.model_id))
    assert files == ["input_example.json", "model.skops", "strata-model.yaml"]


def test_run_uri_errors(emb: Client, iris: Iris) -> None:
    with pytest.raises(InvalidInput, match=r"runs:/RUN_ID/PATH"):
        sm.load("runs:/only-a-run", tracking=emb.tracking)
    with pytest.raises(NotFound, match=r"Registered model 'flights' not found"):
        sm.load("models:/flights@champion", tracking=emb.tracking)  # the registry's scheme
    with pytest.raises(InvalidInput, match=r"Unknown model URI scheme 'nope'"):
        sm.load("nope:/flights@champion", tracking=emb.tracking)
    with strata.start_run(client=emb) as run:
        pass
    with pytest.raises(NotFound):
        sm.load(f"runs:/{run.run_id}/model", tracking=emb.tracking)


def test_a_tampered_logged_model_refuses_to_load(
    emb: Client, iris: Iris, sqlite_settings: Settings
) -> None:
    X, y = iris
    with strata.start_run(client=emb):
        info = strata.log_model(LogisticRegression(max_iter=300).fit(X, y), "m")
    store_root = Path(sqlite_settings.artifact_uri.removeprefix("file://"))
    (target,) = store_root.rglob(f"{info.run_id}/artifacts/m/model.skops")
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch):
        sm.load(info.model_uri, tracking=emb.tracking)


def test_resolver_hook_serves_a_new_scheme(tmp_path: Path, iris: Iris) -> None:
    X, y = iris
    sm.save(LogisticRegression(max_iter=300).fit(X, y), tmp_path / "v1")
    sm.register_resolver("models", lambda uri, tracking: tmp_path / uri.rsplit("/", 1)[-1])
    try:
        assert sm.load("models:/flights/v1").flavor == "sklearn"
    finally:
        from strata.models import tracked

        tracked._resolvers.pop("models")


def test_mlflow_lists_the_logged_model(live_server: LiveServer, iris: Iris) -> None:
    X, y = iris
    client = live_server.client()
    try:
        with strata.start_run(experiment="listed", client=client) as run:
            info = strata.log_model(LogisticRegression(max_iter=300).fit(X, y), "model")
        mlflow.set_tracking_uri(live_server.url)
        import os

        os.environ["MLFLOW_TRACKING_TOKEN"] = live_server.admin_token
        try:
            found = mlflow.search_logged_models(
                experiment_ids=[run.experiment_id], output_format="list"
            )
        finally:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        assert [(m.model_id, m.source_run_id, m.status) for m in found] == [
            (info.model_id, run.run_id, "READY")
        ]
        model = sm.load(info.model_uri, tracking=client.tracking)
        assert np.array_equal(
            model.predict(X), LogisticRegression(max_iter=300).fit(X, y).predict(X)
        )
    finally:
        _reset()
        client.close()


def test_run_downloads_are_removed_with_the_model(
    emb: Client, iris: Iris, sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    monkeypatch.setenv("STRATA_HOME", str(sqlite_settings.home))
    X, y = iris
    with strata.start_run(client=emb):
        info = strata.log_model(LogisticRegression(max_iter=300).fit(X, y), "m")
    tmp = Path(sqlite_settings.home) / "tmp"

    def downloads() -> list[Path]:
        return sorted(tmp.glob("model-*")) if tmp.exists() else []

    sm.clear_cache()
    model = sm.load(info.model_uri, tracking=emb.tracking)
    assert downloads() and model.path.is_relative_to(downloads()[0])
    again = sm.load(info.model_uri, tracking=emb.tracking)  # same digests: the cached model
    assert again is model and len(downloads()) == 1  # the second download is gone already
    del model, again
    sm.clear_cache()
    gc.collect()
    assert downloads() == []
    store_root = Path(sqlite_settings.artifact_uri.removeprefix("file://"))
    (target,) = store_root.rglob(f"{info.run_id}/artifacts/m/strata-model.yaml")
    target.chmod(0o644)
    target.write_text(target.read_text().replace("format_version: 1", "format_version: 9"))
    with pytest.raises((InvalidInput, DigestMismatch)):
        sm.load(info.model_uri, tracking=emb.tracking)
    assert downloads() == []  # a failed load leaves nothing behind
