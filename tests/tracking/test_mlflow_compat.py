"""The official ``mlflow`` client (3.x, unmodified) against ``strata server``.

Every test talks to a real server on a loopback port (``live_server``) with
``MLFLOW_TRACKING_URI`` / ``MLFLOW_TRACKING_TOKEN`` set, as a user's script would. Runs logged
through MLflow are checked through Strata's own SDK too.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests
from conftest import LiveServer
from memory import PeakRSS
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking import fluent as mlflow_fluent
from mlflow.tracking._tracking_service import utils as mlflow_utils

from strata.tracking.models import Metric as StrataMetric

SQLITE_ONLY = pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)


@pytest.fixture
def server(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """``live_server`` with the mlflow client pointed at it (global state restored after)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", live_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", live_server.admin_token)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(mlflow_utils, "_tracking_uri", mlflow_utils._tracking_uri)
    monkeypatch.setattr(mlflow_fluent, "_active_experiment_id", None)
    mlflow.set_tracking_uri(live_server.url)
    try:
        yield live_server
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        # mlflow.set_experiment() exports the experiment id for child processes.
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


def _auth(server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_token}"}


def test_experiments_create_get_search_update_delete(server: LiveServer) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment("flights", tags={"team": "ml"})
    exp = client.get_experiment(exp_id)
    assert exp.name == "flights" and exp.tags["team"] == "ml"
    assert exp.lifecycle_stage == "active"
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    assert client.get_experiment_by_name("flights").experiment_id == exp_id
    assert client.get_experiment_by_name("nope") is None
    assert client.get_experiment("0").name == "Default"

    client.create_experiment("weather")
    names = [e.name for e in client.search_experiments(filter_string="name LIKE 'fl%'")]
    assert names == ["flights"]
    by_name = client.search_experiments(order_by=["name ASC"])
    assert [e.name for e in by_name] == ["Default", "flights", "weather"]

    client.set_experiment_tag(exp_id, "stage", "dev")
    client.rename_experiment(exp_id, "flights-2")
    assert client.get_experiment(exp_id).tags["stage"] == "dev"
    assert client.get_experiment(exp_id).name == "flights-2"
    client.set_experiment_tag(exp_id, "tmp", "x")
    client.delete_experiment_tag(exp_id, "tmp")
    assert "tmp" not in client.get_experiment(exp_id).tags

    with pytest.raises(MlflowException) as info:
        client.create_experiment("weather")
    assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"

    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    assert "flights-2" not in [e.name for e in client.search_experiments()]
    deleted = client.search_experiments(view_type=mlflow.entities.ViewType.DELETED_ONLY)
    assert [e.name for e in deleted] == ["flights-2"]
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"

    # The REST shape itself: GET search and proto JSON fields.
    resp = requests.get(
        f"{server.url}/api/2.0/mlflow/experiments/search",
        params={"max_results": 10, "filter": "name = 'weather'"},
        headers=_auth(server),
        timeout=10,
    )
    assert resp.status_code == 200
    (body,) = resp.json()["experiments"]
    assert body["name"] == "weather" and isinstance(body["creation_time"], int)

    # The same experiment through Strata's SDK.
    assert server.embedded.tracking.get_experiment(exp_id).name == "flights-2"


def test_fluent_run_logging_matches_strata(server: LiveServer) -> None:
    mlflow.set_experiment("fluent")
    with mlflow.start_run(run_name="first") as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"depth": 5, "model": "lgbm"})
        mlflow.log_metric("loss", 1.5, step=0)
        mlflow.log_metric("loss", 0.5, step=1)
        mlflow.log_metrics({"auc": 0.91, "weird": float("nan")})
        mlflow.log_metric("big", float("inf"))
        mlflow.set_tag("team", "ml")
        mlflow.set_tags({"temp": "x"})
        mlflow.delete_tag("temp")
    run_id = run.info.run_id

    got = mlflow.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.end_time is not None
    assert got.info.run_name == "first"
    assert got.info.artifact_uri == f"mlflow-artifacts:/{got.info.experiment_id}/{run_id}/artifacts"
    assert got.data.params == {"lr": "0.1", "depth": "5", "model": "lgbm"}
    assert got.data.metrics["loss"] == 0.5 and got.data.metrics["auc"] == 0.91
    assert math.isnan(got.data.metrics["weird"])
    assert got.data.metrics["big"] == math.inf
    assert got.data.tags["team"] == "ml" and "temp" not in got.data.tags
    assert got.data.tags["mlflow.runName"] == "first"

    history = MlflowClient().get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.5), (1, 0.5)]

    # Same run through Strata's SDK.
    strata_run = server.embedded.tracking.get_run(run_id)
    assert strata_run.params == got.data.params
    assert strata_run.metrics["loss"] == 0.5 and strata_run.metrics["auc"] == 0.91
    assert math.isnan(strata_run.metrics["weird"]) and strata_run.metrics["big"] == math.inf
    assert strata_run.info.status.value == "FINISHED"
    points = server.embedded.tracking.get_metric_history(run_id, "loss")
    assert [(p.step, p.value) for p in points] == [(0, 1.5), (1, 0.5)]


def test_log_batch_history_and_bulk(server: LiveServer) -> None:
    client = MlflowClient()
    run = client.create_run("0", run_name="batch")
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric("acc", i / 1000, now + i, i) for i in range(1000)]
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param("opt", "adam"), Param("bs", "32")],
        tags=[RunTag("phase", "train")],
    )
    client.log_batch(run_id, metrics=[Metric("nan", float("nan"), now, 0)])
    history = client.get_metric_history(run_id, "acc")
    assert len(history) == 1000 and history[-1].value == 0.999 and history[3].step == 3
    assert math.isnan(client.get_metric_history(run_id, "nan")[0].value)
    data = client.get_run(run_id).data
    assert data.params == {"opt": "adam", "bs": "32"} and data.tags["phase"] == "train"
    assert data.metrics["acc"] == 0.999

    # MLflow's params are immutable: a new value is refused and the batch writes nothing.
    with pytest.raises(MlflowException) as info:
        client.log_batch(
            run_id, metrics=[Metric("acc", 5.0, now, 5000)], params=[Param("opt", "sgd")]
        )
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "adam" in info.value.message and "sgd" in info.value.message
    assert len(client.get_metric_history(run_id, "acc")) == 1000
    raw = requests.post(
        f"{server.url}/api/2.0/mlflow/runs/log-parameter",
        json={"run_id": run_id, "key": "opt", "value": "sgd"},
        headers=_auth(server),
        timeout=10,
    )
    assert raw.status_code == 400 and raw.json()["error_code"] == "INVALID_PARAMETER_VALUE"

    # Bulk history (the UI's endpoints), over two runs.
    other = client.create_run("0").info.run_id
    client.log_batch(other, metrics=[Metric("acc", 0.5, now, s) for s in range(10)])
    for path, params in (
        ("get-history-bulk", {"run_id": [run_id, other], "metric_key": "acc"}),
        (
            "get-history-bulk-interval",
            {"run_ids": [run_id, other], "metric_key": "acc", "max_results": 50},
        ),
    ):
        resp = requests.get(
            f"{server.url}/ajax-api/2.0/mlflow/metrics/{path}",
            params=params,
            headers=_auth(server),
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        points = resp.json()["metrics"]
        assert {p["run_id"] for p in points} == {run_id, other}
        mine = [p for p in points if p["run_id"] == run_id]
        assert mine[0]["step"] == 0 and mine[-1]["step"] == 999
        if path == "get-history-bulk":
            assert len(points) == 1010
        else:
            assert 50 <= len(mine) <= 52  # sampled, with first and last step kept
    # Long histories come in pages of 25,000 that the client follows to the end.
    long_run = client.create_run("0").info.run_id
    server.embedded.tracking.log_batch(
        long_run, metrics=[StrataMetric("loss", float(i), now, i) for i in range(30_000)]
    )
    long = client.get_metric_history(long_run, "loss")
    assert len(long) == 30_000 and [m.step for m in long[24_999:25_001]] == [24_999, 25_000]
    pages, token = [], None
    while True:
        params = {"run_id": run_id, "metric_key": "acc", "max_results": 400}
        resp = requests.get(
            f"{server.url}/api/2.0/mlflow/metrics/get-history",
            params={**params, **({"page_token": token} if token else {})},
            headers=_auth(server),
            timeout=10,
        ).json()
        pages.append([m["step"] for m in resp["metrics"]])
        token = resp.get("next_page_token")
        if not token:
            break
    assert [len(p) for p in pages] == [400, 400, 200]
    assert [step for page in pages for step in page] == list(range(1000))

    # NaN travels as MLflow's server sends it: the string "NaN" in proto JSON.
    resp = requests.get(
        f"{server.url}/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": "nan"},
        headers=_auth(server),
        timeout=10,
    )
    assert resp.json()["metrics"][0]["value"] == "NaN"


def test_log_inputs_and_strata_view(server: LiveServer) -> None:
    import pandas as pd

    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(df, source="s3://bucket/train.parquet", name="train-set")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    got = mlflow.get_run(run.info.run_id)
    (inp,) = got.inputs.dataset_inputs
    assert inp.dataset.name == "train-set" and inp.dataset.digest == dataset.digest
    assert inp.dataset.source_type == "s3" and "x" in inp.dataset.schema
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
    (strata_input,) = server.embedded.tracking.get_run(run.info.run_id).inputs
    assert strata_input.name == "train-set" and strata_input.context == "training"


def test_search_runs_filter_order_nested_delete_restore(server: LiveServer) -> None:
    exp_id = mlflow.create_experiment("search")
    mlflow.set_experiment(experiment_id=exp_id)
    with mlflow.start_run(run_name="parent") as parent:
        for i, (model, auc) in enumerate(
            [("lgbm", 0.81), ("xgb", 0.93), ("lgbm", 0.88), ("lgbm", 0.70)]
        ):
            with mlflow.start_run(run_name=f"trial-{i}", nested=True):
                mlflow.log_params({"model": model, "i": i})
                mlflow.log_metric("auc", auc)
    client = MlflowClient()
    runs = client.search_runs(
        [exp_id],
        filter_string="metrics.auc > 0.75 and params.model = 'lgbm'",
        order_by=["metrics.auc DESC"],
    )
    assert [r.info.run_name for r in runs] == ["trial-2", "trial-0"]
    children = client.search_runs(
        [exp_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.run_name ASC"],
    )
    assert [r.info.run_name for r in children] == [f"trial-{i}" for i in range(4)]
    assert server.embedded.tracking.get_run(children[0].info.run_id).info.parent_run_id == (
        parent.info.run_id
    )
    df = mlflow.search_runs([exp_id], order_by=["metrics.auc ASC"])
    assert list(df["metrics.auc"].iloc[:2]) == [0.70, 0.81]

    # Pages: max_results and page_token.
    first = client.search_runs([exp_id], max_results=2, order_by=["attributes.run_name ASC"])
    assert len(first) == 2 and first.token
    rest = client.search_runs(
        [exp_id], max_results=10, order_by=["attributes.run_name ASC"], page_token=first.token
    )
    assert [r.info.run_name for r in [*first, *rest]] == [
        "parent",
        "trial-0",
        "trial-1",
        "trial-2",
        "trial-3",
    ]

    victim = runs[0].info.run_id
    client.delete_run(victim)
    assert client.get_run(victim).info.lifecycle_stage == "deleted"
    assert victim not in [r.info.run_id for r in client.search_runs([exp_id])]
    deleted = client.search_runs([exp_id], run_view_type=mlflow.entities.ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [victim]
    client.restore_run(victim)
    assert client.get_run(victim).info.lifecycle_stage == "active"

    # A malformed filter is MLflow's INVALID_PARAMETER_VALUE, in its words (its set of
    # comparators; tests/tracking/test_mlflow_parity.py checks them side by side).
    with pytest.raises(MlflowException) as info:
        client.search_runs([exp_id], filter_string="metrics.auc >>> 1")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Invalid comparator '>>>' not one of" in info.value.message


def test_errors_map_to_mlflow_exceptions(server: LiveServer) -> None:
    client = MlflowClient()
    with pytest.raises(MlflowException) as info:
        client.get_run("0123456789abcdef0123456789abcdef")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "0123456789abcdef0123456789abcdef" in info.value.message
    with pytest.raises(MlflowException) as info:
        client.log_metric("0123456789abcdef0123456789abcdef", "m", 1.0)
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as info:
        client.get_experiment("424242")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    url = f"{server.url}/api/2.0/mlflow"
    run_id = client.create_run("0").info.run_id
    cases = [
        ("runs/log-metric", {"run_id": run_id, "key": "m", "value": 1.0}, "timestamp"),
        (
            "runs/log-metric",
            {"run_id": run_id, "key": "m", "value": "abc", "timestamp": 1},
            "value",
        ),
        (
            "runs/log-batch",
            {"run_id": run_id, "metrics": [{"key": "m", "timestamp": 1}]},
            "metrics[0].value",
        ),
        (
            "runs/log-batch",
            {"run_id": run_id, "params": [{"key": "p", "value": 3}]},
            "params[0].value",
        ),
        (
            "runs/log-batch",
            {"run_id": run_id, "metrics": [{"key": "m", "value": 1, "timestamp": 1}] * 1001},
            "1000",
        ),
        ("runs/log-parameter", {"run_id": run_id, "key": "bad*key", "value": "x"}, "key"),
        ("experiments/create", {}, "name"),
    ]
    for path, body, needle in cases:
        resp = requests.post(f"{url}/{path}", json=body, headers=_auth(server), timeout=10)
        assert resp.status_code == 400, (path, resp.text)
        payload = resp.json()
        assert payload["error_code"] == "INVALID_PARAMETER_VALUE"
        assert needle in payload["message"], payload
    # A failed batch wrote nothing.
    assert client.get_run(run_id).data.metrics == {}

    # Unauthenticated and viewer calls are refused with MLflow's codes.
    resp = requests.get(f"{url}/experiments/get", params={"experiment_id": "0"}, timeout=10)
    assert resp.status_code == 401 and resp.json()["error_code"] == "UNAUTHENTICATED"
    viewer = {"Authorization": f"Bearer {server.token_for('viewer')}"}
    assert (
        requests.get(
            f"{url}/experiments/get", params={"experiment_id": "0"}, headers=viewer, timeout=10
        ).status_code
        == 200
    )
    resp = requests.post(
        f"{url}/runs/create", json={"experiment_id": "0"}, headers=viewer, timeout=10
    )
    assert resp.status_code == 403 and resp.json()["error_code"] == "PERMISSION_DENIED"


def test_artifacts_log_list_download_delete(server: LiveServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "plots").mkdir(parents=True)
    (src / "model.txt").write_text("weights")
    (src / "plots" / "roc.json").write_text('{"auc": 0.9}')
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(src / "model.txt"))
        mlflow.log_artifacts(str(src / "plots"), artifact_path="plots")
        mlflow.log_dict({"a": 1}, "config/params.json")
    run_id = run.info.run_id
    client = MlflowClient()
    top = client.list_artifacts(run_id)
    assert [(f.path, f.is_dir) for f in top] == [
        ("config", True),
        ("model.txt", False),
        ("plots", True),
    ]
    assert [f.path for f in client.list_artifacts(run_id, "plots")] == ["plots/roc.json"]
    out = tmp_path / "out"
    out.mkdir()
    local = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(out))
    assert (Path(local) / "plots" / "roc.json").read_text() == '{"auc": 0.9}'
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config/params.json") == {"a": 1}
    # The same artifacts through Strata's SDK.
    assert [f.path for f in server.embedded.tracking.list_artifacts(run_id, "plots")] == [
        "plots/roc.json"
    ]

    base = f"{server.url}/api/2.0/mlflow-artifacts/artifacts"
    root = f"{run.info.experiment_id}/{run_id}/artifacts"
    resp = requests.get(f"{base}/{root}/nothing.bin", headers=_auth(server), timeout=10)
    assert resp.status_code == 404 and "nothing.bin" in resp.json()["message"]
    with pytest.raises(MlflowException, match=r"nothing\.bin"):
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="nothing.bin", dst_path=str(out)
        )
    for bad in (f"{root}/%2E%2E/%2E%2E/escape.txt", f"{root}/a/%2E%2E/%2E%2E/%2E%2E/x"):
        resp = requests.put(f"{base}/{bad}", data=b"x", headers=_auth(server), timeout=10)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    resp = requests.put(
        f"{base}/0/0123456789abcdef0123456789abcdef/artifacts/x.txt",
        data=b"x",
        headers=_auth(server),
        timeout=10,
    )
    assert resp.status_code == 404 and resp.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    listing = requests.get(base, params={"path": root}, headers=_auth(server), timeout=10).json()
    assert {"path": "model.txt", "is_dir": False, "file_size": 7} in listing["files"]

    resp = requests.delete(f"{base}/{root}/model.txt", headers=_auth(server), timeout=10)
    assert resp.status_code == 200
    assert "model.txt" not in [f.path for f in client.list_artifacts(run_id)]

    # A file corrupted at rest never arrives complete: the proxy stops short of its length.
    stored = Path(server.settings.artifact_uri) / root / "plots" / "roc.json"
    stored.write_text('{"auc": 0.1}')
    with pytest.raises(MlflowException):
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="plots/roc.json", dst_path=str(tmp_path)
        )


@SQLITE_ONLY
def test_large_artifact_streams_both_ways(server: LiveServer, tmp_path: Path) -> None:
    """A 200 MB file goes up and comes back byte-identical without being held in memory.

    The server runs in this process: a thread samples its RSS throughout each transfer, so a
    server that buffered the file and freed it afterwards is caught at its peak.
    """
    size = 200 * 2**20
    big = tmp_path / "big.bin"
    digest = hashlib.sha256()
    block = os.urandom(2**20)
    with big.open("wb") as fh:
        for i in range(size // len(block)):
            chunk = bytes([i % 256]) + block[1:]
            digest.update(chunk)
            fh.write(chunk)
    with PeakRSS() as up, mlflow.start_run() as run:
        mlflow.log_artifact(str(big), artifact_path="data")
    out = tmp_path / "down"
    out.mkdir()
    with PeakRSS() as down_peak:
        local = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="data/big.bin", dst_path=str(out)
            )
        )
    assert local.stat().st_size == size
    down = hashlib.sha256()
    with local.open("rb") as fh:
        while chunk := fh.read(2**22):
            down.update(chunk)
    assert down.hexdigest() == digest.hexdigest()
    up.check(64 * 2**20, "uploading 200 MB")
    down_peak.check(64 * 2**20, "downloading 200 MB")
    (info,) = server.embedded.tracking.list_artifacts(run.info.run_id, "data")
    assert info.file_size == size


@SQLITE_ONLY
def test_sklearn_autolog_logs_run_and_model(server: LiveServer) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    mlflow.set_experiment("iris")
    mlflow.autolog()
    try:
        with mlflow.start_run() as run:
            LogisticRegression(max_iter=300).fit(X, y)
    finally:
        mlflow.autolog(disable=True)
    got = mlflow.get_run(run.info.run_id)
    assert got.data.params["max_iter"] == "300"
    assert got.data.metrics["training_accuracy_score"] > 0.9
    assert got.data.tags["estimator_name"] == "LogisticRegression"
    (model_out,) = got.outputs.model_outputs
    logged = mlflow.get_logged_model(model_out.model_id)
    assert logged.source_run_id == run.info.run_id and logged.status == "READY"
    assert logged.metrics and {m.key for m in logged.metrics} >= {"training_accuracy_score"}
    names = {f.path for f in MlflowClient().list_logged_model_artifacts(logged.model_id)}
    assert {"MLmodel", "model.pkl"} <= names
    model = mlflow.sklearn.load_model(f"models:/{logged.model_id}")
    assert (model.predict(X) == y).mean() > 0.9
    # Metrics are not doubled in the run's history by the model-linked re-logging.
    history = MlflowClient().get_metric_history(run.info.run_id, "training_accuracy_score")
    assert len(history) == 1
    strata_run = server.embedded.tracking.get_run(run.info.run_id)
    assert strata_run.params == got.data.params
    assert strata_run.metrics == got.data.metrics


def test_optuna_mlflow_callback_runs_visible_in_strata(server: LiveServer) -> None:
    import optuna
    from optuna.integration.mlflow import MLflowCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    callback = MLflowCallback(tracking_uri=server.url, metric_name="loss")
    study = optuna.create_study(study_name="hpo-quadratic", direction="minimize")
    study.optimize(
        lambda t: (t.suggest_float("x", -5, 5) - 2) ** 2, n_trials=5, callbacks=[callback]
    )

    tracking = server.embedded.tracking
    exp = tracking.get_experiment_by_name("hpo-quadratic")
    runs = tracking.search_runs(exp.experiment_id, order_by=["metrics.loss ASC"]).items
    assert len(runs) == 5
    assert {float(r.params["x"]) for r in runs} == {t.params["x"] for t in study.trials}
    assert runs[0].metrics["loss"] == pytest.approx(study.best_value)
    assert all(r.info.status.value == "FINISHED" for r in runs)


def test_logged_models_lifecycle_and_search(server: LiveServer, tmp_path: Path) -> None:
    exp_id = mlflow.create_experiment("models")
    mlflow.set_experiment(experiment_id=exp_id)
    client = MlflowClient()
    with mlflow.start_run() as run:
        a = mlflow.initialize_logged_model(
            name="ranker", params={"depth": "6"}, tags={"stage": "dev"}, model_type="agent"
        )
        b = mlflow.initialize_logged_model(name="baseline")
        mlflow.log_metric("ndcg", 0.7, model_id=a.model_id)
        mlflow.log_metric("ndcg", 0.4, model_id=b.model_id)
    assert a.status == "PENDING" and a.source_run_id == run.info.run_id
    assert a.artifact_location == f"mlflow-artifacts:/{exp_id}/models/{a.model_id}/artifacts"
    (src := tmp_path / "m").mkdir()
    (src / "weights.txt").write_text("w")
    client.log_model_artifacts(a.model_id, str(src))
    assert [f.path for f in client.list_logged_model_artifacts(a.model_id)] == ["weights.txt"]
    mlflow.finalize_logged_model(a.model_id, "READY")
    client.set_logged_model_tags(a.model_id, {"owner": "me"})
    client.delete_logged_model_tag(a.model_id, "stage")
    mlflow.log_model_params({"lr": "0.1"}, model_id=a.model_id)

    got = mlflow.get_logged_model(a.model_id)
    assert got.status == "READY" and got.tags["owner"] == "me" and "stage" not in got.tags
    assert got.params == {"depth": "6", "lr": "0.1"} and got.model_type == "agent"
    assert [(m.key, m.value) for m in got.metrics] == [("ndcg", 0.7)]
    assert mlflow.get_run(run.info.run_id).data.metrics["ndcg"] == 0.4

    found = mlflow.search_logged_models(
        experiment_ids=[exp_id], filter_string="metrics.ndcg > 0.5", output_format="list"
    )
    assert [m.model_id for m in found] == [a.model_id]
    by_name = mlflow.search_logged_models(
        experiment_ids=[exp_id],
        order_by=[{"field_name": "name", "ascending": True}],
        output_format="list",
    )
    assert [m.name for m in by_name] == ["baseline", "ranker"]
    with pytest.raises(MlflowException) as info:
        mlflow.search_logged_models(experiment_ids=[exp_id], filter_string="name ==== 'x'")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE" and "position" in str(info.value)
    with pytest.raises(MlflowException) as info:
        mlflow.log_model_params({"lr": "0.2"}, model_id=a.model_id)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"

    client.delete_logged_model(b.model_id)
    with pytest.raises(MlflowException) as info:
        mlflow.get_logged_model(b.model_id)
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST" and b.model_id in str(info.value)

    # The MLflow 2 model record endpoint keeps a history tag on the run.
    resp = requests.post(
        f"{server.url}/api/2.0/mlflow/runs/log-model",
        json={
            "run_id": run.info.run_id,
            "model_json": '{"artifact_path": "m", "flavors": {}, '
            '"utc_time_created": "2026-01-01", "run_id": "' + run.info.run_id + '"}',
        },
        headers=_auth(server),
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    history = mlflow.get_run(run.info.run_id).data.tags["mlflow.log-model.history"]
    assert '"artifact_path": "m"' in history
