"""strata.autolog(): fit is tracked with no extra code, once per top-level fit."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBRegressor

import strata
import strata.models as sm
from strata.client import Client
from strata.training.autolog import autolog


@pytest.fixture
def logging_on(home_client: Client) -> Iterator[Client]:
    autolog()
    yield home_client
    autolog(disable=True)


def _runs(client: Client) -> list:
    exps = client.tracking.search_experiments().items
    return [r for e in exps for r in client.tracking.search_runs([e.experiment_id]).items]


def test_sklearn_fit_becomes_a_run(logging_on: Client) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = LogisticRegression(C=0.5, max_iter=500).fit(X, y)
    (run,) = _runs(logging_on)
    assert run.info.status == "FINISHED" and run.info.run_name == "LogisticRegression"
    assert run.params["C"] == "0.5" and run.params["max_iter"] == "500"
    assert run.metrics["training_score"] == pytest.approx(clf.score(X, y))
    model = sm.load(f"runs:/{run.info.run_id}/model", tracking=logging_on.tracking)
    assert np.array_equal(model.predict(X), clf.predict(X))


def test_pipeline_is_one_run_and_boosters_log_into_the_active_run(logging_on: Client) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    make_pipeline(StandardScaler(), LGBMClassifier(n_estimators=5, verbose=-1)).fit(X, y)
    (run,) = _runs(logging_on)
    assert run.params["lgbmclassifier__n_estimators"] == "5"
    assert run.tags["strata.autolog.estimator"] == "sklearn.pipeline.Pipeline"
    Xd, yd = load_diabetes(return_X_y=True, as_frame=True)
    with strata.start_run(experiment="mine", client=logging_on) as mine:
        XGBRegressor(n_estimators=5, max_depth=2).fit(Xd, yd)
        assert strata.active_run() is not None  # autolog did not end the user's run
    got = logging_on.tracking.get_run(mine.run_id)
    assert got.params["max_depth"] == "2" and 0 < got.metrics["training_score"] <= 1


def test_a_failing_fit_leaves_a_failed_run_and_disable_restores(logging_on: Client) -> None:
    with pytest.raises(ValueError):
        LogisticRegression().fit(pd.DataFrame({"a": [1.0, 2.0]}), [0, 0])  # one class
    (run,) = _runs(logging_on)
    assert run.info.status == "FAILED"
    autolog(disable=True)
    LogisticRegression().fit(pd.DataFrame({"a": [1.0, 2.0]}), [0, 1])
    assert len(_runs(logging_on)) == 1
