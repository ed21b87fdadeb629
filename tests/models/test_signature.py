"""Signature enforcement on every accepted input type, and the errors bad inputs get."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

import strata.models as sm
from strata.core.errors import InvalidInput
from strata.models.signature import enforce

Iris = tuple[pd.DataFrame, Any]


@pytest.fixture(scope="module")
def model(iris: Iris, tmp_path_factory: pytest.TempPathFactory) -> tuple[sm.Model, Any]:
    X, y = iris
    clf = LogisticRegression(max_iter=500).fit(X, y)
    path = tmp_path_factory.mktemp("sig") / "m"
    sm.save(clf, path, input_example=X.head(3))
    return sm.load(path), clf


def test_every_input_type_gives_the_same_predictions(model: Any, iris: Iris) -> None:
    loaded, clf = model
    X, _ = iris
    rows = X.head(20)
    expected = clf.predict(rows)
    inputs = {
        "pandas": rows,
        "arrow table": pa.Table.from_pandas(rows, preserve_index=False),
        "arrow batch": pa.RecordBatch.from_pandas(rows, preserve_index=False),
        "polars": pl.from_pandas(rows),
        "numpy matrix": rows.to_numpy(),
        "dict of arrays": {c: rows[c].to_numpy() for c in rows.columns},
        "dict of lists": {c: rows[c].tolist() for c in rows.columns},
        "records": rows.to_dict("records"),
    }
    for name, data in inputs.items():
        assert np.array_equal(loaded.predict(data), expected), name
    one = rows.iloc[0].to_dict()
    assert np.array_equal(loaded.predict(one), expected[:1])


def test_missing_column_is_named(model: Any, iris: Iris) -> None:
    loaded, _ = model
    X, _ = iris
    with pytest.raises(InvalidInput, match=r"'petal_width' \(float64\) is missing") as err:
        loaded.predict(X.drop(columns="petal_width"))
    assert err.value.details["column"] == "petal_width"


def test_unknown_column_errors_or_is_dropped(model: Any, iris: Iris) -> None:
    loaded, clf = model
    X, _ = iris
    wider = X.head(5).assign(color="red")
    with pytest.raises(InvalidInput, match=r"'color' is not in the model's signature"):
        loaded.predict(wider)
    assert np.array_equal(loaded.predict(wider, on_unknown="drop"), clf.predict(X.head(5)))


def test_safe_casts_are_applied(model: Any, iris: Iris) -> None:
    loaded, clf = model
    X, _ = iris
    ints = X.head(10).round().astype("int64")
    assert np.array_equal(loaded.predict(ints), clf.predict(ints.astype("float64")))
    f32 = X.head(10).astype("float32")
    assert np.array_equal(loaded.predict(f32), clf.predict(f32.astype("float64")))
    with_none = X.head(2).to_dict("records")
    with_none[0]["sepal_width"] = None  # None in a float column is NaN
    cols = enforce(loaded.signature, with_none)
    assert np.isnan(cols["sepal_width"][0]) and cols["sepal_width"].dtype == np.float64


@pytest.mark.parametrize(
    ("value", "received"),
    [
        (np.array(["5.1", "4.9"]), "str"),
        (np.array([5, 4], dtype=object).astype(str), "str"),
        (np.array([1 + 2j, 3j]), "complex128"),
        (np.array(["a", 1.0], dtype=object), "str"),
    ],
)
def test_unsafe_cast_names_column_expected_and_received(
    model: Any, value: np.ndarray, received: str
) -> None:
    loaded, _ = model
    data = {
        "sepal_length": np.array([5.1, 4.9]),
        "sepal_width": value,
        "petal_length": np.array([1.4, 1.4]),
        "petal_width": np.array([0.2, 0.2]),
    }
    with pytest.raises(InvalidInput, match=r"'sepal_width': expected float64") as err:
        loaded.predict_arrays(data)
    assert err.value.details == {
        "column": "sepal_width",
        "expected": "float64",
        "received": received,
    }


def test_integer_column_refuses_floats(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": np.arange(20), "b": np.arange(20) % 3})
    clf = LogisticRegression().fit(frame, frame["b"] > 0)
    sm.save(clf, tmp_path / "m", input_example=frame.head(2))
    loaded = sm.load(tmp_path / "m")
    assert loaded.predict({"a": np.array([1], dtype=np.int32), "b": [2]}).shape == (1,)
    with pytest.raises(InvalidInput, match=r"'a': expected int64, received float64"):
        loaded.predict({"a": [1.5], "b": [2]})
    with pytest.raises(InvalidInput, match=r"'b': expected int64, received missing values"):
        loaded.predict([{"a": 1, "b": None}])


def test_ragged_columns_and_wrong_shapes(model: Any) -> None:
    loaded, _ = model
    data = {n: np.ones(3) for n in ("sepal_length", "sepal_width", "petal_length")}
    data["petal_width"] = np.ones(2)
    with pytest.raises(InvalidInput, match=r"'petal_width': expected 3 rows"):
        loaded.predict(data)
    data["petal_width"] = np.ones((3, 2))
    with pytest.raises(InvalidInput, match=r"'petal_width': expected one value per row"):
        loaded.predict(data)
    with pytest.raises(InvalidInput, match=r"shape \(2, 3\) does not match"):
        loaded.predict(np.ones((2, 3)))


def test_unsupported_input_type_is_named(model: Any) -> None:
    loaded, _ = model
    with pytest.raises(InvalidInput, match=r"Cannot predict on a builtins.set"):
        loaded.predict({1.0, 2.0})


def test_regressor_has_no_probabilities(iris: Iris, tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    X, y = iris
    sm.save(LinearRegression().fit(X, y), tmp_path / "r", input_example=X.head(2))
    with pytest.raises(InvalidInput, match=r"not a classifier"):
        sm.load(tmp_path / "r").predict_proba(X)


def test_narrowing_casts_are_refused() -> None:
    sig = sm.Signature(
        inputs=[sm.TensorSpec(name="x", dtype="float32"), sm.TensorSpec(name="n", dtype="int8")],
        outputs=[sm.TensorSpec(name="prediction", dtype="float64")],
    )
    ok = enforce(sig, {"x": np.ones(2, dtype=np.float16), "n": np.ones(2, dtype=np.int8)})
    assert ok["x"].dtype == np.float32
    with pytest.raises(InvalidInput, match=r"'x': expected float32, received float64"):
        enforce(sig, {"x": np.ones(2), "n": np.ones(2, dtype=np.int8)})
    with pytest.raises(InvalidInput, match=r"'n': expected int8, received int64"):
        enforce(sig, {"x": np.ones(2, dtype=np.float32), "n": np.ones(2, dtype=np.int64)})
