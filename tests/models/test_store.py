"""Saving and loading: round trips per flavor, atomic saves, verified loads, the cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import strata.models as sm
from strata.core.errors import AlreadyExists, DigestMismatch, InvalidInput, NotFound
from strata.models import store

Iris = tuple[pd.DataFrame, Any]


def _classifiers() -> dict[str, Any]:
    return {
        "sklearn": Pipeline(
            [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]
        ),
        "lightgbm": lgb.LGBMClassifier(n_estimators=15, num_leaves=7, verbose=-1),
        "xgboost": xgb.XGBClassifier(n_estimators=15, max_depth=3),
    }


@pytest.mark.parametrize("flavor", ["sklearn", "lightgbm", "xgboost"])
def test_classifier_round_trip_gives_identical_labels_and_probabilities(
    flavor: str, iris: Iris, tmp_path: Path
) -> None:
    X, y = iris
    obj = _classifiers()[flavor].fit(X, y)
    spec = sm.save(obj, tmp_path / "m", input_example=X.head(5))
    model = sm.load(tmp_path / "m")
    assert model.flavor == flavor == spec.flavor
    assert np.array_equal(model.predict(X), obj.predict(X))
    assert np.array_equal(model.predict_proba(X), obj.predict_proba(X))
    sig = model.signature
    assert sig is not None and sig.labels == [0, 1, 2]
    assert [o.name for o in sig.outputs] == ["label", "probabilities"]
    assert sig.input_names() == list(X.columns)
    # the serving path gives the same answers from plain arrays
    arrays = {c: X[c].to_numpy() for c in X.columns}
    assert np.array_equal(model.predict_arrays(arrays), obj.predict(X))


def test_regressors_and_bare_boosters_round_trip(iris: Iris, tmp_path: Path) -> None:
    X = iris[0].copy()
    target = X.pop("petal_width")
    booster = lgb.train(
        {"objective": "regression", "verbose": -1, "num_leaves": 7},
        lgb.Dataset(X, target),
        num_boost_round=20,
    )
    xgb_booster = xgb.train({"max_depth": 3}, xgb.DMatrix(X, target), num_boost_round=20)
    cases = {
        "lgb_booster": (booster, booster.predict(X.to_numpy())),
        "xgb_booster": (xgb_booster, xgb_booster.inplace_predict(X.to_numpy())),
        "xgb_regressor": (r := xgb.XGBRegressor(n_estimators=10).fit(X, target), r.predict(X)),
        "sk_linear": (s := LinearRegression().fit(X, target), s.predict(X)),
    }
    for name, (obj, expected) in cases.items():
        sm.save(obj, tmp_path / name, input_example=X.head(3))
        model = sm.load(tmp_path / name)
        assert np.array_equal(model.predict(X), expected), name
        assert model.signature is not None and model.signature.labels is None
        assert [o.name for o in model.signature.outputs] == ["prediction"]


def test_pipeline_with_text_columns_round_trips(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "origin": ["EWR", "JFK", "LGA", "JFK"] * 10,
            "distance": np.linspace(100, 2000, 40),
            "hour": np.arange(40) % 24,
        }
    )
    y = (frame["distance"] > 900).astype(int)
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer([("cat", OneHotEncoder(), ["origin"])], remainder="passthrough"),
            ),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, y)
    sm.save(pipe, tmp_path / "m", input_example=frame.head(2))
    model = sm.load(tmp_path / "m")
    sig = model.signature
    assert sig is not None
    assert {s.name: s.dtype for s in sig.inputs} == {
        "origin": "str",
        "distance": "float64",
        "hour": "int64",
    }
    assert np.array_equal(model.predict(frame), pipe.predict(frame))
    records = frame.head(3).to_dict("records")
    assert np.array_equal(model.predict(records), pipe.predict(frame.head(3)))


def test_numpy_trained_model_gets_a_tensor_signature(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    matrix = X.to_numpy()
    clf = LogisticRegression(max_iter=500).fit(matrix, y)
    sm.save(clf, tmp_path / "m", input_example=matrix[:2])
    model = sm.load(tmp_path / "m")
    sig = model.signature
    assert sig is not None and sig.is_tensor
    assert sig.inputs[0].shape == [-1, 4]
    assert np.array_equal(model.predict(matrix), clf.predict(matrix))
    with pytest.raises(InvalidInput, match=r"'input': expected shape \[-1, 4\]"):
        model.predict(matrix[:, :3])


def test_yaml_records_environment_digests_and_provenance(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=500).fit(X, y)
    sm.save(clf, tmp_path / "m", input_example=X.head(2), run_id="r1", dataset_versions=["d@3"])
    doc = yaml.safe_load((tmp_path / "m" / "strata-model.yaml").read_text())
    assert doc["format_version"] == 1
    assert doc["flavors"]["sklearn"]["serialization"] == "skops"
    assert doc["run_id"] == "r1" and doc["dataset_versions"] == ["d@3"]
    assert doc["python_version"].count(".") == 2
    assert any(r.startswith("scikit-learn==") for r in doc["requirements"])
    assert set(doc["files"]) == {"model.skops", "input_example.json"}
    for name, entry in doc["files"].items():
        data = (tmp_path / "m" / name).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == store.sha256_file(tmp_path / "m" / name)
    example = sm.load(tmp_path / "m").input_example()
    assert isinstance(example, dict)
    assert np.array_equal(example["sepal_length"], X["sepal_length"].head(2).to_numpy())
    assert not any(r.startswith(("lightgbm==", "torch==")) for r in doc["requirements"])


def test_a_pipeline_pins_the_libraries_of_its_steps(iris: Iris, tmp_path: Path) -> None:
    import importlib.metadata

    import lightgbm
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = iris
    pipe = make_pipeline(StandardScaler(), lightgbm.LGBMClassifier(n_estimators=5, verbose=-1))
    spec = sm.save(pipe.fit(X, y), tmp_path / "p", input_example=X.head(2))
    assert f"lightgbm=={importlib.metadata.version('lightgbm')}" in spec.requirements
    assert f"scikit-learn=={importlib.metadata.version('scikit-learn')}" in spec.requirements


def test_edited_signature_is_kept_and_checked_against_the_example(
    iris: Iris, tmp_path: Path
) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=500).fit(X, y)
    inferred = sm.infer_signature(X.head(2), clf.predict(X.head(2)), labels=[0, 1, 2])
    edited = inferred.model_copy(update={"labels": ["setosa", "versicolor", "virginica"]})
    sm.save(clf, tmp_path / "m", input_example=X.head(2), signature=edited)
    assert sm.load(tmp_path / "m").labels == ["setosa", "versicolor", "virginica"]
    narrower = inferred.model_copy(update={"inputs": inferred.inputs[:3]})
    with pytest.raises(InvalidInput, match=r"'petal_width' is not in the model's signature"):
        sm.save(clf, tmp_path / "n", input_example=X.head(2), signature=narrower)
    assert not (tmp_path / "n").exists()


def test_failed_save_leaves_nothing(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=500).fit(X, y)
    # the example has a column the model was not fitted on: the probe prediction fails
    bad = X.head(2).assign(extra=1.0)
    with pytest.raises(ValueError, match=r"extra"):
        sm.save(clf, tmp_path / "m", input_example=bad)
    assert os.listdir(tmp_path) == []


def test_save_refuses_an_existing_path(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=500).fit(X, y)
    (tmp_path / "m").mkdir()
    with pytest.raises(AlreadyExists, match=r"exists already"):
        sm.save(clf, tmp_path / "m")


def test_unsupported_object_names_its_type_and_the_flavors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        sm.save({"weights": [1, 2]}, tmp_path / "m")
    assert "builtins.dict" in err.value.message
    assert err.value.details["supported"] == [
        "lightgbm",
        "xgboost",
        "sklearn",
        "sentence_transformers",
        "pytorch",
        "python_function",
    ]
    assert not (tmp_path / "m").exists()


def test_loading_the_same_digests_is_served_from_the_cache(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=500).fit(X, y)
    sm.save(clf, tmp_path / "a", input_example=X.head(2))
    first = sm.load(tmp_path / "a")
    assert sm.load(tmp_path / "a") is first
    # a byte-identical copy elsewhere shares the cached model; digests are still checked
    os.system(f"cp -r {tmp_path / 'a'} {tmp_path / 'b'}")
    assert sm.load(tmp_path / "b") is first
    (tmp_path / "b" / "model.skops").write_bytes(b"changed")
    with pytest.raises(DigestMismatch, match=r"'model.skops' changed"):
        sm.load(tmp_path / "b")


def test_no_model_at_path(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"has no strata-model.yaml"):
        sm.load(tmp_path)


def test_flavor_options_a_flavor_does_not_take_are_refused(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=300).fit(X, y)
    with pytest.raises(InvalidInput, match="'init_kwargs' is not an option of the sklearn"):
        sm.save(clf, tmp_path / "m", flavor_options={"init_kwargs": {}})
    assert not (tmp_path / "m").exists()
