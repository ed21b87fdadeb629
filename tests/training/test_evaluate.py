"""strata.evaluate on a named dataset version: the registry's promotion gates call this."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.linear_model import LinearRegression

import strata
import strata.models as sm
from strata.client import Client
from strata.core.errors import InvalidInput, NotFound
from strata.training.models import Task

from .conftest import base_config

LATE = {"name": "late", "sql": "arr_delay > 15"}


@pytest.fixture
def trained(home_client: Client, flights: str) -> str:
    return strata.train(base_config(evaluate=False), client=home_client).model_uri


def test_evaluate_a_logged_model(
    home_client: Client, flights: str, trained: str, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    report = strata.evaluate(
        trained, data=flights, target=LATE, sensitive=["carrier"], client=home_client, output=out
    )
    assert report.task is Task.CLASSIFICATION and report.data == flights
    assert report.rows + report.dropped_rows == 2000 and report.dropped_rows > 0
    assert set(report.metrics) >= {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "f1_macro",
        "f1_weighted",
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
    }
    assert report.confusion_matrix is not None
    assert sum(map(sum, report.confusion_matrix)) == report.rows
    _tn, _fp = report.confusion_matrix[0]
    fn, tp = report.confusion_matrix[1]
    assert report.metrics["recall"] == pytest.approx(tp / (tp + fn))
    assert report.calibration and len(report.calibration["prob_true"]) >= 5
    (fair,) = report.fairness
    assert fair.column == "carrier" and sum(g.count for g in fair.by_group.values()) == report.rows
    assert fair.equalized_odds_difference is not None and 0 <= fair.equalized_odds_difference <= 1
    assert report.shap_importance and report.shap_explainer == "tree"
    for name in [*report.plots, *report.files]:
        assert (out / name).is_file(), name
    assert json.loads((out / "report.json").read_text())["metrics"] == report.metrics
    shap_rows = (out / "shap_values.csv").read_text().splitlines()
    assert len(shap_rows) == 1 + 200  # header + the bounded sample


def test_evaluate_logs_into_a_run(home_client: Client, flights: str, trained: str) -> None:
    with strata.start_run(experiment="gates", client=home_client) as run:
        strata.evaluate(trained, data=flights, target=LATE, client=home_client, shap_sample=10)
    paths = {f.path for f in home_client.tracking.list_artifacts(run.run_id, "evaluation")}
    assert {"evaluation/report.json", "evaluation/report.html"} <= paths


def test_evaluate_a_regression_model_directory(
    home_client: Client, flights: str, tmp_path: Path
) -> None:
    frame = home_client.data.read_pandas(flights).dropna(subset=["arr_delay", "dep_delay"])
    X = frame[["dep_delay", "distance"]].astype(float)
    reg = LinearRegression().fit(X, frame["arr_delay"])
    sm.save(reg, tmp_path / "reg", input_example=X.head(3))
    report = strata.evaluate(
        str(tmp_path / "reg"),
        data=flights,
        target="arr_delay",
        sensitive=["origin"],
        client=home_client,
        shap_sample=20,
    )
    assert report.task is Task.REGRESSION
    assert report.metrics["r2"] > 0.7 and report.metrics["rmse"] == pytest.approx(
        report.metrics["mse"] ** 0.5
    )
    assert report.residuals is not None and abs(report.residuals["mean"]) < 5
    assert report.shap_explainer == "linear" and set(report.shap_importance or {}) == {
        "dep_delay",
        "distance",
    }
    assert report.fairness[0].by_group["JFK"].mae is not None


def test_evaluate_bad_input(home_client: Client, flights: str, trained: str) -> None:
    with pytest.raises(InvalidInput, match=r"Unknown target column 'latte'.*Available columns"):
        strata.evaluate(trained, data=flights, target="latte", client=home_client)
    with pytest.raises(
        InvalidInput, match=r"Unknown sensitive column 'carier'. Did you mean carrier"
    ):
        strata.evaluate(
            trained, data=flights, target=LATE, sensitive=["carier"], client=home_client
        )
    with pytest.raises(InvalidInput, match=r"Unknown metric 'auc'"):
        strata.evaluate(trained, data=flights, target=LATE, metrics=["auc"], client=home_client)
    with pytest.raises(NotFound):
        strata.evaluate(trained, data="nope@latest", target=LATE, client=home_client)
    small = home_client.data.ingest(
        home_client.data.read_pandas(flights)[["arr_delay", "distance"]], "narrow"
    ).ref
    assert small is not None
    with pytest.raises(InvalidInput, match=r"no column 'dep_delay', an input of the model"):
        strata.evaluate(trained, data=small, target=LATE, client=home_client)
