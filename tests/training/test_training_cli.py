"""`strata train` and `strata evaluate` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from strata.cli.main import app
from strata.client import Client

from .conftest import base_config, write_config

runner = CliRunner()


def test_train_then_evaluate_json(home_client: Client, flights: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "train.yaml", base_config(evaluate=False))
    result = runner.invoke(
        app,
        ["train", str(cfg), "--set", "model.params.n_estimators=10", "--set", "seed=3", "--json"],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"run_id", "experiment", "model_uri", "metrics"}
    assert doc["experiment"] == "flights" and doc["model_uri"] == f"runs:/{doc['run_id']}/model"
    run = home_client.tracking.get_run(doc["run_id"])
    assert run.params["model.params.n_estimators"] == "10" and run.params["seed"] == "3"
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "evaluate",
            doc["model_uri"],
            "--data",
            flights,
            "--target",
            "late",
            "--target-sql",
            "arr_delay > 15",
            "--sensitive",
            "carrier",
            "-o",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metrics"]["roc_auc"] > 0.6 and report["fairness"][0]["column"] == "carrier"
    assert (out / "report.html").is_file()


def test_train_errors_are_messages_not_tracebacks(
    home_client: Client, flights: str, tmp_path: Path
) -> None:
    raw = base_config()
    raw["featurs"] = raw.pop("features")
    cfg = write_config(tmp_path / "train.yaml", raw)
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit) or "featurs" in str(result.exception)
    text = result.output + str(result.exception)
    assert "featurs" in text and "features" in text
