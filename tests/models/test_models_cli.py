"""`strata models ...`: inspect, verify, predict, MLflow in and out, errors for a person."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner, Result

import strata.models as sm
from strata.cli.main import app

runner = CliRunner()
Iris = tuple[pd.DataFrame, Any]


def run(*args: str, code: int = 0) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result


@pytest.fixture
def saved(iris: Iris, tmp_path: Path) -> tuple[Path, Any]:
    X, y = iris
    clf = LogisticRegression(max_iter=300).fit(X, y)
    sm.save(clf, tmp_path / "m", input_example=X.head(2))
    return tmp_path / "m", clf


def test_inspect_and_verify(saved: tuple[Path, Any]) -> None:
    path, _ = saved
    out = run("models", "inspect", str(path)).output
    assert "sklearn" in out and "sepal_length" in out and "model.skops" in out
    doc = json.loads(run("models", "inspect", str(path), "--json").output)
    assert doc["flavors"]["sklearn"]["serialization"] == "skops"
    assert "2 files verified" in run("models", "verify", str(path)).output


def test_verify_names_a_tampered_file(saved: tuple[Path, Any]) -> None:
    path, _ = saved
    (path / "input_example.json").write_text("[]")
    result = runner.invoke(app, ["models", "verify", str(path)])
    assert result.exit_code != 0
    assert "input_example.json" in str(result.exception)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_predict_reads_and_writes_files(
    saved: tuple[Path, Any], iris: Iris, tmp_path: Path, suffix: str
) -> None:
    path, clf = saved
    X, _ = iris
    rows = X.head(10)
    src = tmp_path / f"rows{suffix}"
    {".csv": rows.to_csv, ".parquet": rows.to_parquet, ".json": rows.to_json}[suffix](
        src, **({"orient": "records"} if suffix == ".json" else {"index": False})
    )
    out = tmp_path / f"pred{suffix}"
    run("models", "predict", str(path), "-i", str(src), "-o", str(out))
    got = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".json": pd.read_json}[suffix](out)
    assert got["prediction"].tolist() == clf.predict(rows).tolist()
    assert np.allclose(
        got[["probability_0", "probability_1", "probability_2"]], clf.predict_proba(rows)
    )


def test_predict_bad_input_names_the_column(
    saved: tuple[Path, Any], iris: Iris, tmp_path: Path
) -> None:
    path, _ = saved
    X, _ = iris
    X.head(3).drop(columns="petal_width").to_csv(tmp_path / "bad.csv", index=False)
    result = runner.invoke(app, ["models", "predict", str(path), "-i", str(tmp_path / "bad.csv")])
    assert result.exit_code != 0 and "'petal_width'" in str(result.exception)
    (tmp_path / "x.txt").write_text("a")
    result = runner.invoke(app, ["models", "predict", str(path), "-i", str(tmp_path / "x.txt")])
    assert "reads .csv, .parquet, .json" in str(result.exception)


def test_export_then_import_mlflow(saved: tuple[Path, Any], iris: Iris, tmp_path: Path) -> None:
    path, clf = saved
    X, _ = iris
    run("models", "export-mlflow", str(path), str(tmp_path / "ml"))
    assert (tmp_path / "ml" / "MLmodel").is_file()
    run("models", "import-mlflow", str(tmp_path / "ml"), str(tmp_path / "back"))
    assert np.array_equal(sm.load(tmp_path / "back").predict(X), clf.predict(X))


def test_export_onnx_then_predict_on_onnx_runtime(
    saved: tuple[Path, Any], iris: Iris, tmp_path: Path
) -> None:
    path, clf = saved
    X, _ = iris
    doc = json.loads(run("models", "export-onnx", str(path), "--json").output)
    assert doc["flavor"]["serialization"] == "onnx"
    assert doc["onnx_parity"]["rows"] == 2 and doc["onnx_parity"]["label_agreement"] == 1.0
    out = run("models", "inspect", str(path)).output
    assert "ONNX parity" in out and "model.onnx" in out
    X.head(20).to_csv(tmp_path / "rows.csv", index=False)
    got = json.loads(
        run(
            "models", "predict", str(path), "-i", str(tmp_path / "rows.csv"), "--runtime", "onnx"
        ).output
    )
    assert [r["prediction"] for r in got] == clf.predict(X.head(20)).tolist()
    result = runner.invoke(
        app, ["models", "export-onnx", str(path), "--tolerance", "1e-15", "--json"]
    )
    assert result.exit_code != 0 and "ONNX export refused" in str(result.exception)
    result = runner.invoke(app, ["models", "predict", str(path), "-i", "x.csv", "--runtime", "tpu"])
    assert result.exit_code != 0 and "Unknown --runtime 'tpu'" in str(result.exception)


def test_predict_writes_a_vector_per_row(tmp_path: Path) -> None:
    """A model predicting several values per row (a network with 3 outputs): a list per row
    in Parquet and JSON, prediction_0.. columns in CSV — not a pandas error."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    X = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    frame = pd.DataFrame(X, columns=[f"c{i}" for i in range(4)])
    sm.save(net, tmp_path / "net", input_example=frame.head(2))
    expected = net(torch.from_numpy(X)).detach().numpy()
    matrix = tmp_path / "rows.parquet"
    frame.to_parquet(matrix)
    for suffix in ("parquet", "csv", "json"):
        out = tmp_path / f"out.{suffix}"
        result = runner.invoke(
            app, ["models", "predict", str(tmp_path / "net"), "-i", str(matrix), "-o", str(out)]
        )
        assert result.exit_code == 0, result.output + str(result.exception)
        if suffix == "parquet":
            got = np.stack(pd.read_parquet(out)["prediction"].to_list())
        elif suffix == "csv":
            got = pd.read_csv(out)[["prediction_0", "prediction_1", "prediction_2"]].to_numpy()
        else:
            got = np.asarray([r["prediction"] for r in json.loads(out.read_text())])
        assert got.shape == (6, 3) and np.allclose(got, expected, atol=1e-6)
