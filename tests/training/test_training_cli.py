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


def test_a_study_from_the_cli_improves_the_trained_config(
    home_client: Client, flights: str, tmp_path: Path
) -> None:
    """The issue's "done means": the CLI trains LightGBM on flights (arr_delay > 15) from a
    config, and `strata tune` on the same config finds a better model."""
    base = base_config(
        evaluate=False,
        metrics=["roc_auc"],
        model={
            "family": "lightgbm",
            "params": {"n_estimators": 20, "num_leaves": 3, "learning_rate": 0.01},
        },
        tune={
            "metric": "test_roc_auc",
            "sampler": "tpe",
            "pruner": "none",
            "space": {
                "model.params.learning_rate": {
                    "type": "float",
                    "low": 0.02,
                    "high": 0.3,
                    "log": True,
                },
                "model.params.num_leaves": {"type": "int", "low": 4, "high": 31},
            },
        },
    )
    cfg = write_config(tmp_path / "train.yaml", base)
    trained = runner.invoke(app, ["train", str(cfg), "--json"])
    assert trained.exit_code == 0, trained.output
    baseline = json.loads(trained.stdout)["metrics"]["test_roc_auc"]
    tuned = runner.invoke(app, ["tune", str(cfg), "--trials", "6", "--json"])
    assert tuned.exit_code == 0, tuned.output
    doc = json.loads(tuned.stdout)
    assert set(doc) >= {"parent_run_id", "best_run_id", "best_params", "best_value", "trials"}
    assert doc["trials"] == 6 and doc["best_value"] > baseline + 0.005
    best = home_client.tracking.get_run(doc["best_run_id"])
    assert best.metrics["test_roc_auc"] == doc["best_value"]
