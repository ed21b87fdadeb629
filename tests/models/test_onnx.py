"""ONNX export: each converter passes parity, the yaml records it, failures leave the model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import strata.models as sm
from strata.core.config import Settings
from strata.core.errors import Conflict, DigestMismatch, InvalidInput
from strata.models import store

Iris = tuple[pd.DataFrame, Any]


def _classifier(flavor: str) -> Any:
    return {
        "sklearn": Pipeline(
            [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]
        ),
        "lightgbm": lgb.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1),
        "xgboost": xgb.XGBClassifier(n_estimators=10, max_depth=3),
    }[flavor]


@pytest.mark.parametrize("flavor", ["sklearn", "lightgbm", "xgboost"])
def test_classifier_exports_with_parity_recorded_and_predicts_on_onnx_runtime(
    flavor: str, iris: Iris, tmp_path: Path
) -> None:
    X, y = iris
    obj = _classifier(flavor).fit(X, y)
    path = tmp_path / "m"
    before = sm.save(obj, path, input_example=X.head(5))
    spec = sm.export_onnx(path)
    assert list(spec.flavors) == [flavor, "onnx"]  # the native flavor stays the default
    assert spec.files["model.onnx"].size > 0 and "model.onnx" not in before.files
    parity = spec.onnx_parity
    assert parity is not None and parity.rows == 5 and parity.label_agreement == 1.0
    assert parity.max_abs_diff < 1e-4
    assert any(r.startswith("onnxruntime==") for r in spec.requirements)
    # the directory verifies with the new digests; the yaml on disk is the returned spec
    sm.clear_cache()
    model = sm.load(path)
    assert model.spec == spec
    native = model.predict(X)
    onnx_labels = model.predict(X, runtime="onnx")
    assert np.array_equal(native, obj.predict(X))
    assert np.mean(onnx_labels == native) >= 0.99
    assert onnx_labels.dtype == native.dtype
    diff = np.abs(model.predict_proba(X, runtime="onnx") - obj.predict_proba(X))
    assert diff.max() < 1e-4
    arrays = {c: X[c].to_numpy() for c in X.columns}
    assert np.array_equal(model.predict_arrays(arrays, runtime="onnx"), onnx_labels)


def test_regressor_with_text_column_feeds_one_input_per_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 200
    X = pd.DataFrame(
        {
            "distance": rng.uniform(100, 2000, n),
            "hour": rng.integers(0, 24, n),
            "origin": rng.choice(["EWR", "JFK", "LGA"], n),
        }
    )
    y = X["distance"] / 100 + (X["origin"] == "JFK") * 3.0 + X["hour"] * 0.1
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["distance", "hour"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["origin"]),
                    ]
                ),
            ),
            ("reg", LinearRegression()),
        ]
    ).fit(X, y)
    sm.save(pipe, tmp_path / "m", input_example=X.head(8))
    spec = sm.export_onnx(tmp_path / "m")
    options = spec.flavors["onnx"].options
    assert options["feed"] == "columns"
    assert [i["dtype"] for i in options["inputs"]] == ["float32", "int64", "str"]
    model = sm.load(tmp_path / "m")
    out = model.predict(X, runtime="onnx")
    assert np.allclose(out, pipe.predict(X), rtol=1e-4)


def test_dataset_version_parity_and_quantized_delta(
    iris: Iris, tmp_path: Path, sqlite_settings: Settings
) -> None:
    """A dataset version adds its rows to the parity check; a graph with MatMul weights
    quantizes and the accuracy delta is measured against the target column."""
    from strata.client import Client

    X, y = iris
    frame = X.assign(species=y.astype("int64"))
    src = tmp_path / "iris.parquet"
    frame.to_parquet(src)
    mlp_like = Pipeline(
        [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]
    ).fit(X, y)
    sm.save(mlp_like, tmp_path / "m", input_example=X.head(3))
    with Client("", settings=sqlite_settings) as client:
        ref = client.data.ingest(str(src), "iris").ref
        assert ref is not None
        # LinearClassifier is an ONNX-ML operator: nothing for dynamic INT8 to quantize
        with pytest.raises(InvalidInput, match="Nothing to quantize"):
            sm.export_onnx(tmp_path / "m", data=ref, quantize=True, data_service=client.data)
        spec = sm.export_onnx(tmp_path / "m", data=ref, target="species", data_service=client.data)
    parity = spec.onnx_parity
    assert parity is not None
    assert parity.rows == 3 + len(X) and parity.dataset_version == ref
    assert parity.label_agreement is not None and parity.label_agreement >= 0.999


def test_parity_miss_is_refused_and_leaves_the_model_untouched(iris: Iris, tmp_path: Path) -> None:
    X = iris[0].copy()
    target = X.pop("petal_width")
    reg = LinearRegression().fit(X, target)
    sm.save(reg, tmp_path / "m", input_example=X)
    raw = (tmp_path / "m" / store.SPEC_FILE).read_bytes()
    listing = sorted(os.listdir(tmp_path / "m"))
    with pytest.raises(Conflict, match="ONNX export refused") as err:
        sm.export_onnx(tmp_path / "m", tolerance=1e-12)  # float32 cannot be this close
    assert err.value.details["source"] == "input_example"
    assert (tmp_path / "m" / store.SPEC_FILE).read_bytes() == raw
    assert sorted(os.listdir(tmp_path / "m")) == listing
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no work directory left behind


def test_errors_name_the_problem(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=300).fit(X, y)
    sm.save(clf, tmp_path / "plain")  # no input example: no signature
    with pytest.raises(InvalidInput, match="no signature"):
        sm.export_onnx(tmp_path / "plain")
    sm.save(clf, tmp_path / "m", input_example=X.head(2))
    with pytest.raises(InvalidInput, match="no ONNX export"):
        sm.load(tmp_path / "m").predict(X, runtime="onnx")
    with pytest.raises(InvalidInput, match="Unknown runtime"):
        sm.load(tmp_path / "m").predict(X, runtime="gpu")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="tolerance"):
        sm.export_onnx(tmp_path / "m", tolerance=0)
    with pytest.raises(InvalidInput, match="target"):
        sm.export_onnx(tmp_path / "m", target="species")
    sm.export_onnx(tmp_path / "m")
    with pytest.raises(InvalidInput, match="not quantized"):
        sm.load(tmp_path / "m").predict(X, runtime="onnx-int8")


def test_tampered_onnx_file_refuses_to_load(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    clf = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    sm.save(clf, tmp_path / "m", input_example=X.head(2))
    sm.export_onnx(tmp_path / "m")
    sm.clear_cache()
    with (tmp_path / "m" / "model.onnx").open("ab") as f:
        f.write(b"\x00")
    with pytest.raises(DigestMismatch, match=r"model\.onnx"):
        sm.load(tmp_path / "m")


def test_export_again_replaces_the_graph(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
    sm.save(clf, tmp_path / "m", input_example=X.head(4))
    first = sm.export_onnx(tmp_path / "m")
    second = sm.export_onnx(tmp_path / "m", tolerance=1e-3)
    assert second.onnx_parity is not None and second.onnx_parity.tolerance == 1e-3
    assert set(second.files) == set(first.files)
    sm.load(tmp_path / "m").predict(X, runtime="onnx")


def test_run_model_export_is_uploaded_to_the_run(iris: Iris, sqlite_settings: Settings) -> None:
    import strata
    from strata.client import Client
    from strata.tracking import fluent

    X, y = iris
    client = Client("", settings=sqlite_settings)
    try:
        with strata.start_run(experiment="onnx", client=client):
            info = strata.log_model(
                lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y),
                "model",
                input_example=X.head(3),
            )
        spec = sm.export_onnx(info.model_uri, tracking=client.tracking)
        names = sorted(f.path for f in client.tracking.list_artifacts(info.run_id, "model"))
        assert "model/model.onnx" in names
        sm.clear_cache()
        model = sm.load(info.model_uri, tracking=client.tracking)  # digests verified again
        assert model.spec.onnx_parity == spec.onnx_parity
        assert np.array_equal(model.predict(X, runtime="onnx"), model.predict(X))
    finally:
        while fluent.active_run() is not None:
            fluent.end_run()
        fluent._services.close_default()
        client.close()


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
def test_bare_binary_booster_exports_its_probabilities(
    library: str, iris: Iris, tmp_path: Path
) -> None:
    """A Booster trained with a binary objective has no classes: it predicts P(class 1),
    which the converter's graph gives as the second probability column."""
    X, y = iris
    target = (y == 2).astype(int)
    if library == "lightgbm":
        booster = lgb.train(
            {"objective": "binary", "verbose": -1}, lgb.Dataset(X, target), num_boost_round=5
        )
    else:
        booster = xgb.train(
            {"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(X, target), 5
        )
    sm.save(booster, tmp_path / "m", input_example=X.head(5))
    spec = sm.export_onnx(tmp_path / "m")
    assert spec.onnx_parity is not None and spec.onnx_parity.max_abs_diff < 1e-5
    model = sm.load(tmp_path / "m")
    assert np.allclose(model.predict(X, runtime="onnx"), model.predict(X), atol=1e-5)


def test_run_model_export_refreshes_the_logged_model_and_drops_stale_files(
    sqlite_settings: Settings,
) -> None:
    """A runs:/ export reaches the MLflow LoggedModel's own copy too (what
    search_logged_models hands out), and exporting again without INT8 removes the old INT8
    graph from both copies, so both still verify."""
    torch = pytest.importorskip("torch")
    import strata
    from strata.client import Client
    from strata.tracking import fluent

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    client = Client("", settings=sqlite_settings)
    try:
        with strata.start_run(experiment="onnx", client=client):
            info = strata.log_model(net, "net", input_example=X[:5])
        tracking = client.tracking

        def copies() -> tuple[set[str], set[str]]:
            run = {f.path.removeprefix("net/") for f in tracking.list_artifacts(info.run_id, "net")}
            logged = {f.path for f in tracking.list_model_artifacts(info.model_id)}
            return run, logged

        def logged_yaml() -> bytes:
            return tracking.open_model_artifact(info.model_id, "strata-model.yaml")[2].read()

        def run_yaml() -> bytes:
            return tracking.open_artifact(info.run_id, "net/strata-model.yaml")[2].read()

        sm.export_onnx(info.model_uri, quantize=True, tracking=tracking)
        run, logged = copies()
        assert {"model.onnx", "model.int8.onnx"} <= run and run == logged
        assert logged_yaml() == run_yaml()
        spec = sm.export_onnx(info.model_uri, tracking=tracking)  # again, no INT8 this time
        run, logged = copies()
        assert "model.int8.onnx" not in run and run == logged == set(spec.files) | {
            "strata-model.yaml"
        }
        assert logged_yaml() == run_yaml()
        sm.clear_cache()
        model = sm.load(info.model_uri, tracking=tracking)  # no stale file: verifies
        assert np.allclose(model.predict(X, runtime="onnx"), model.predict(X), atol=1e-5)
    finally:
        while fluent.active_run() is not None:
            fluent.end_run()
        fluent._services.close_default()
        client.close()
