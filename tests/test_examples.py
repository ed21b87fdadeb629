"""Every script in examples/ runs as a user runs it (a fresh process) and does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from strata.client import Client

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (name, done.stdout, done.stderr[-3000:])
    return done.stdout


def test_every_example_has_a_test() -> None:
    tested = {"tracking.py", "mlflow_client.py", "data_ingest.py", "lineage.py", "models.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_tracking_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_HOME", str(tmp_path / "home"))
    out = run_example("tracking.py", {})
    assert out.startswith("best run lr-0.1: loss 0.0001")
    runs = Client().tracking
    found = runs.search_runs("examples-tracking").items
    assert sorted(r.info.run_name for r in found) == ["lr-0.01", "lr-0.1"]
    assert all(len(runs.get_metric_history(r.info.run_id, "loss")) == 20 for r in found)


def test_data_ingest_example(tmp_path: Path) -> None:
    out = run_example("data_ingest.py", {"STRATA_HOME": str(tmp_path / "home")})
    assert ": 3 rows, 2 quarantined" in out
    assert "row 2: expect_column_values_to_not_be_null(fare): null" in out
    assert "row 3: expect_column_values_to_be_between(fare): -4.0 not in [0, 500]" in out


def test_lineage_example(tmp_path: Path) -> None:
    out = run_example("lineage.py", {"STRATA_HOME": str(tmp_path / "home")})
    assert "(input)" in out and "(output)" in out
    assert "reaches run trained-on-weather" in out


@pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)
def test_mlflow_client_example(live_server: Any, tmp_path: Path) -> None:
    env = {
        "MLFLOW_TRACKING_URI": live_server.url,
        "MLFLOW_TRACKING_TOKEN": live_server.admin_token,
        "STRATA_HOME": str(tmp_path / "elsewhere"),
    }
    out = run_example("mlflow_client.py", env)
    assert "1 run(s) with auc > 0.8" in out
    served = live_server.embedded.tracking
    (run,) = served.search_runs("examples-mlflow").items
    assert run.params == {"model": "logistic", "C": "1.0"}
    assert len(served.get_metric_history(run.info.run_id, "auc")) == 10
    assert not (tmp_path / "elsewhere").exists()  # it went to the server only


def test_models_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_HOME", str(tmp_path / "home"))
    out = run_example("models.py", {})
    lines = out.splitlines()
    assert lines[0].startswith("logged runs:/") and "(lightgbm, 2 files verified)" in lines[0]
    accuracy = float(lines[1].rsplit(" ", 1)[1])
    assert 0.8 < accuracy <= 1.0
    run_id = lines[0].split("/")[1]
    with Client() as client:
        names = sorted(f.path for f in client.tracking.list_artifacts(run_id, "model"))
        assert names == ["model/input_example.json", "model/model.txt", "model/strata-model.yaml"]
        exp = client.tracking.get_experiment_by_name("examples-models")
        models = client.tracking.search_logged_models([exp.experiment_id]).items
        assert [(m.source_run_id, m.model_type) for m in models] == [(run_id, "lightgbm")]
