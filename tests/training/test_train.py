"""strata.train: a tracked run with config, params, metrics, model, inputs and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import strata
import strata.models as sm
from strata.client import Client
from strata.core.errors import InvalidInput, NotFound
from strata.training import job

from .conftest import base_config


def test_lightgbm_job_records_everything(home_client: Client, flights: str) -> None:
    cfg = base_config(cv={"folds": 2}, sensitive=["carrier"])
    result = strata.train(cfg, ["model.params.n_estimators=15"], client=home_client)
    run = home_client.tracking.get_run(result.run_id)
    m = run.metrics
    for name in ("roc_auc", "f1", "log_loss", "accuracy"):
        assert f"train_{name}" in m and f"test_{name}" in m
        assert f"cv_{name}_mean" in m and f"cv_{name}_std" in m
        assert result.metrics[f"test_{name}"] == pytest.approx(m[f"test_{name}"])
    folds = home_client.tracking.get_metric_history(result.run_id, "cv_roc_auc")
    assert [p.step for p in folds] == [0, 1]
    assert np.mean([p.value for p in folds]) == pytest.approx(m["cv_roc_auc_mean"])
    assert 0.6 < m["test_roc_auc"] <= 1.0  # dep_delay predicts arrival delay well
    params = run.params
    assert params["model.params.n_estimators"] == "15" and params["model.family"] == "lightgbm"
    assert params["data.version"] == flights and params["task"] == "classification"
    dropped = int(params["data.rows_dropped"])
    assert int(params["data.rows"]) + dropped == 2000 and dropped > 0  # cancelled flights
    tags = run.tags
    assert tags[job.TAG_DATA] == flights and "mlflow.source.git.commit" in tags
    assert json.loads(tags[job.TAG_CONFIG])["model"]["params"]["n_estimators"] == 15
    assert [i.name for i in run.inputs] == ["flights"]
    assert run.inputs[0].digest == home_client.data.get_version(flights).digest
    paths = {f.path for f in home_client.tracking.list_artifacts(result.run_id, "evaluation")}
    for name in (
        "report.json",
        "report.html",
        "shap_values.csv",
        "confusion_matrix.png",
        "calibration.png",
        "roc_curve.png",
        "feature_importance.png",
    ):
        assert f"evaluation/{name}" in paths, paths
    top = {f.path for f in home_client.tracking.list_artifacts(result.run_id, "training")}
    assert top == {"training/config.yaml", "training/feature_importance.json"}
    model = sm.load(result.model_uri, tracking=home_client.tracking)
    assert model.labels == [0, 1]
    rows = home_client.data.read_pandas(flights).head(3)
    proba = model.predict_proba(
        rows[["dep_delay", "distance", "hour", "month", "carrier", "origin"]]
    )
    assert proba.shape == (3, 2)


def test_evaluation_report_in_the_run(home_client: Client, flights: str, tmp_path: Path) -> None:
    result = strata.train(base_config(sensitive=["carrier", "origin"]), client=home_client)
    dst = home_client.tracking.download_artifacts(result.run_id, "evaluation", tmp_path)
    doc = json.loads((dst / "report.json").read_text())
    assert doc["task"] == "classification" and doc["labels"] == [0, 1]
    assert sum(map(sum, doc["confusion_matrix"])) == doc["rows"]
    assert set(doc["metrics"]) >= {"roc_auc", "pr_auc", "brier", "f1_macro", "log_loss"}
    assert doc["metrics"]["roc_auc"] == pytest.approx(result.metrics["test_roc_auc"])
    assert 0 < doc["threshold"]["threshold"] < 1
    assert doc["shap_explainer"] == "tree" and "dep_delay" in doc["shap_importance"]
    assert max(doc["shap_importance"], key=doc["shap_importance"].get) == "dep_delay"
    by_col = {f["column"]: f for f in doc["fairness"]}
    assert set(by_col) == {"carrier", "origin"}
    origin = by_col["origin"]
    assert set(origin["by_group"]) == {"EWR", "JFK", "LGA"}
    assert sum(g["count"] for g in origin["by_group"].values()) == doc["rows"]
    rates = [g["selection_rate"] for g in origin["by_group"].values()]
    assert origin["demographic_parity_difference"] == pytest.approx(max(rates) - min(rates))
    html = (dst / "report.html").read_text()
    assert "data:image/png;base64," in html and "Fairness by carrier" in html
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")


@pytest.mark.parametrize(
    ("split", "check"),
    [
        ({"method": "time", "column": "time_hour", "test_size": 0.2}, "time"),
        ({"method": "group", "column": "tailnum", "test_size": 0.3}, "group"),
        ({"method": "random", "test_size": 0.3}, "random"),
    ],
)
def test_split_methods(home_client: Client, flights: str, split: dict, check: str) -> None:
    from strata.training.config import load_config
    from strata.training.dataset import load_table, prepare
    from strata.training.split import folds, holdout

    cfg = load_config(base_config(split=split, cv={"folds": 2}))
    table, ref = load_table(home_client.data, cfg.data, sample=None, seed=1)
    data = prepare(table, ref, cfg)
    train, test = holdout(data, cfg.split, cfg.seed)
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == len(data.y)
    if check == "time":
        times = data.frame["time_hour"]
        assert times.iloc[train].max() <= times.iloc[test].min()
        assert "time_hour" not in data.features
        for tr, va in folds(data, train, cfg.split, 2, cfg.seed):
            assert times.iloc[tr].max() <= times.iloc[va].min()
    elif check == "group":
        g = data.frame["tailnum"].astype(str)
        assert not set(g.iloc[train]) & set(g.iloc[test])
        for tr, va in folds(data, train, cfg.split, 2, cfg.seed):
            assert not set(g.iloc[tr]) & set(g.iloc[va])
    else:
        assert abs(len(test) / len(data.y) - 0.3) < 0.01
    result = strata.train(cfg, client=home_client, evaluate=False)
    assert "cv_roc_auc_mean" in result.metrics


def test_sklearn_family_with_text_columns_and_missing_values(
    home_client: Client, flights: str, tmp_path: Path
) -> None:
    cfg = base_config(
        model={
            "family": "sklearn",
            "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 300},
        },
        features=["dep_delay", "distance", "carrier", "origin", "tailnum"],
        shap_sample=20,
    )
    result = strata.train(cfg, client=home_client)
    assert result.metrics["test_roc_auc"] > 0.6
    model = sm.load(result.model_uri, tracking=home_client.tracking)
    frame = home_client.data.read_pandas(flights)
    X = frame[["dep_delay", "distance", "carrier", "origin", "tailnum"]].head(20).copy()
    X["carrier"] = X["carrier"].astype(object)
    X.loc[0, "carrier"] = "NEVER-SEEN"  # unknown category: encoded, not an error
    X.loc[1, "dep_delay"] = np.nan  # missing number: imputed
    X["origin"] = X["origin"].astype(object)
    X["tailnum"] = X["tailnum"].astype(object)
    assert model.predict(X).shape == (20,)
    dst = home_client.tracking.download_artifacts(result.run_id, "evaluation", tmp_path)
    report = json.loads((dst / "report.json").read_text())
    assert report["shap_explainer"] == "linear"  # exact for scikit-learn's linear models


def test_xgboost_regression(home_client: Client, flights: str) -> None:
    cfg = base_config(
        target="arr_delay",
        features=["dep_delay", "distance", "hour", "carrier"],
        split={"method": "random"},
        metrics=["rmse", "mae", "r2"],
        model={"family": "xgboost", "params": {"n_estimators": 20, "max_depth": 3}},
        cv={"folds": 2},
    )
    result = strata.train(cfg, client=home_client)
    assert result.metrics["test_r2"] > 0.5 and result.metrics["cv_rmse_mean"] > 0
    run = home_client.tracking.get_run(result.run_id)
    assert run.params["task"] == "regression"
    paths = {f.path for f in home_client.tracking.list_artifacts(result.run_id, "evaluation")}
    assert "evaluation/residuals.png" in paths


# -- bad input ---------------------------------------------------------------------------------
def test_unknown_target_or_feature_lists_available_columns(
    home_client: Client, flights: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        strata.train(base_config(target="lateness"), client=home_client)
    assert "Unknown target column 'lateness'" in err.value.message
    assert "Available columns: month, day, dep_delay" in err.value.message
    with pytest.raises(
        InvalidInput, match=r"Unknown feature column 'distnce'. Did you mean distance"
    ):
        strata.train(base_config(features=["distnce"]), client=home_client)
    with pytest.raises(InvalidInput, match=r"Unknown target.sql column 'arr_dela'"):
        strata.train(
            base_config(target={"name": "late", "sql": "arr_dela > 15"}), client=home_client
        )
    with pytest.raises(InvalidInput, match=r"Unknown exclude column 'nope'"):
        strata.train(base_config(features=None, exclude=["nope"]), client=home_client)
    with pytest.raises(NotFound):  # refused before any run was created
        home_client.tracking.get_experiment_by_name("flights")


def test_one_class_target_is_refused(home_client: Client, flights: str) -> None:
    cfg = base_config(target={"name": "late", "sql": "arr_delay > 100000"})
    with pytest.raises(InvalidInput, match=r"has one class only \(0 in all \d+ rows\)"):
        strata.train(cfg, client=home_client)


def test_timestamp_feature_and_leakage_are_refused(home_client: Client, flights: str) -> None:
    with pytest.raises(InvalidInput, match=r"'time_hour' is a timestamp"):
        strata.train(base_config(features=["dep_delay", "time_hour"]), client=home_client)
    with pytest.raises(
        InvalidInput, match=r"'arr_delay' is the target or what it is computed from"
    ):
        strata.train(base_config(features=["dep_delay", "arr_delay"]), client=home_client)


def test_default_features_leave_out_the_target_sources(home_client: Client, flights: str) -> None:
    from strata.training.config import load_config
    from strata.training.dataset import load_table, prepare

    cfg = load_config(base_config(features=None, exclude=["tailnum"]))
    table, ref = load_table(home_client.data, cfg.data, sample=None, seed=1)
    data = prepare(table, ref, cfg)
    assert data.features == ["month", "day", "dep_delay", "carrier", "origin", "distance", "hour"]
    assert data.categorical == ["carrier", "origin"]


@pytest.mark.parametrize(
    "sql",
    [
        "arr_delay) FROM data; SELECT (1",
        "arr_delay > 15; COPY data TO '/tmp/x.csv'",
        "(SELECT count(*) FROM read_csv('/etc/passwd'))",
        "arr_delay > (SELECT 1)",
        "1 FROM data WHERE true",
        "EXISTS (SELECT 1)",
        "len(read_text('/etc/passwd'))",
    ],
)
def test_target_sql_is_one_sandboxed_expression(
    home_client: Client, flights: str, sql: str
) -> None:
    with pytest.raises(InvalidInput, match=r"target.sql") as err:
        strata.train(base_config(target={"name": "late", "sql": sql}), client=home_client)
    assert "passwd" not in err.value.message.replace(sql, "")


def test_estimators_outside_the_allow_list_need_trust(home_client: Client, flights: str) -> None:
    for path in ("os.system", "subprocess.Popen", "builtins.eval"):
        cfg = base_config(model={"family": "sklearn", "estimator": path})
        with pytest.raises(InvalidInput, match=r"outside the allowed modules.*model.trusted"):
            strata.train(cfg, client=home_client)
    cfg = base_config(model={"family": "sklearn", "estimator": "sklearn.metrics.accuracy_score"})
    with pytest.raises(InvalidInput, match=r"not a scikit-learn estimator class"):
        strata.train(cfg, client=home_client)
    cfg = base_config(model={"family": "lightgbm", "params": {"n_estimatorz": 5}})
    with pytest.raises(InvalidInput, match=r"model.params.n_estimatorz.*Did you mean n_estimators"):
        strata.train(cfg, client=home_client)


def test_failed_job_leaves_no_finished_run(home_client: Client, flights: str) -> None:
    cfg = base_config(cv={"folds": 2}, model={"family": "lightgbm", "params": {"num_leaves": -3}})
    with pytest.raises(Exception, match=r"num_leaves"):
        strata.train(cfg, client=home_client)
    exp = home_client.tracking.get_experiment_by_name("flights")
    runs = home_client.tracking.search_runs([exp.experiment_id]).items
    assert runs and all(r.info.status != "FINISHED" for r in runs)
