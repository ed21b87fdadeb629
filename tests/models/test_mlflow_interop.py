"""MLflow models in and out, checked with the real mlflow package (pinned in dev)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow.lightgbm
import mlflow.pyfunc
import mlflow.sklearn
import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import strata.models as sm
from strata.core.errors import NotFound, PermissionDenied

Iris = tuple[pd.DataFrame, Any]


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_import_sklearn_lightgbm_xgboost(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
    booster = lgb.train(
        {"verbose": -1, "objective": "multiclass", "num_class": 3}, lgb.Dataset(X, y), 10
    )
    xgbc = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
    mlflow.sklearn.save_model(pipe, str(tmp_path / "ml-sk"))
    mlflow.lightgbm.save_model(booster, str(tmp_path / "ml-lgb"))
    mlflow.xgboost.save_model(xgbc, str(tmp_path / "ml-xgb"))
    cases = {
        "ml-sk": ("sklearn", pipe.predict(X)),
        "ml-lgb": ("lightgbm", booster.predict(X.to_numpy())),
        "ml-xgb": ("xgboost", xgbc.predict(X)),
    }
    for name, (flavor, expected) in cases.items():
        spec = sm.import_mlflow(tmp_path / name, tmp_path / f"strata-{name}")
        model = sm.load(tmp_path / f"strata-{name}")
        assert spec.flavor == flavor
        assert np.array_equal(model.predict(X), expected), name


class Scaled(mlflow.pyfunc.PythonModel):
    """An MLflow pyfunc reading a factor from an artifact in load_context."""

    def load_context(self, context):  # type: ignore[no-untyped-def]
        self.factor = float(Path(context.artifacts["factor"]).read_text())

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return model_input["sepal_length"].to_numpy() * self.factor


def test_python_function_imports_runs_and_exports_back(iris: Iris, tmp_path: Path) -> None:
    X, _ = iris
    (tmp_path / "factor.txt").write_text("2.5")
    mlflow.pyfunc.save_model(
        str(tmp_path / "pyfunc"),
        python_model=Scaled(),
        artifacts={"factor": str(tmp_path / "factor.txt")},
    )
    expected = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc")).predict(X)
    spec = sm.import_mlflow(tmp_path / "pyfunc", tmp_path / "strata", trusted=True)
    assert spec.flavor == "python_function"
    assert any(f.startswith("artifacts/factor/") for f in spec.files)
    model = sm.load(tmp_path / "strata", trusted=True)
    assert np.array_equal(model.predict(X), expected)
    with pytest.raises(PermissionDenied):
        sm.load(tmp_path / "strata")
    sm.export_mlflow(tmp_path / "strata", tmp_path / "back", trusted=True)
    again = mlflow.pyfunc.load_model(str(tmp_path / "back"))
    assert np.array_equal(np.asarray(again.predict(X)), expected)


def test_import_refuses_pickles_and_python_function_only(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=300).fit(X, y)
    mlflow.sklearn.save_model(clf, str(tmp_path / "pkl"), serialization_format="cloudpickle")
    with pytest.raises(PermissionDenied, match="cloudpickle runs arbitrary code"):
        sm.import_mlflow(tmp_path / "pkl", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    sm.import_mlflow(tmp_path / "pkl", tmp_path / "out", trusted=True)
    assert np.array_equal(sm.load(tmp_path / "out").predict(X.to_numpy()), clf.predict(X))

    mlflow.pyfunc.save_model(str(tmp_path / "pyfunc"), python_model=Scaled())
    with pytest.raises(PermissionDenied, match="cloudpickle runs arbitrary code"):
        sm.import_mlflow(tmp_path / "pyfunc", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    with pytest.raises(NotFound, match="has no MLmodel"):
        sm.import_mlflow(tmp_path, tmp_path / "out3")


def test_export_loads_in_mlflow_with_the_same_predictions(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    objs = {
        "sk": make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y),
        "lgb": lgb.LGBMRegressor(n_estimators=10, verbose=-1).fit(X, y.astype(float)),
        "xgb": xgb.XGBRegressor(n_estimators=10).fit(X, y),
    }
    for name, obj in objs.items():
        sm.save(obj, tmp_path / name, input_example=X.head(2))
        out = sm.export_mlflow(tmp_path / name, tmp_path / f"ml-{name}")
        pyfunc = mlflow.pyfunc.load_model(str(out))
        got = np.asarray(pyfunc.predict(X))
        assert np.allclose(got, obj.predict(X), rtol=0, atol=1e-6), name
        assert np.array_equal(got, sm.load(tmp_path / name).predict(X)), name
