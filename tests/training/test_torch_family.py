"""The pytorch family: the tabular MLP and a user module, early stopping, checkpoints in the
run's artifacts, and a job killed with SIGKILL that continues from its last checkpoint."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from strata.client import Client  # noqa: E402
from strata.core.errors import InvalidInput, PermissionDenied  # noqa: E402
from strata.training.job import train  # noqa: E402

from .conftest import base_config, write_config  # noqa: E402

MLP = {
    "family": "pytorch",
    "params": {
        "hidden_layers": [16, 8],
        "epochs": 6,
        "batch_size": 128,
        "learning_rate": 0.01,
        "checkpoint_every": 4,
        "patience": 50,
    },
}


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torch_config(**over: Any) -> dict[str, Any]:
    cfg = base_config(model=MLP, evaluate=False)
    cfg.update(over)
    return cfg


def history(client: Client, run_id: str, key: str) -> list[int]:
    return [p.step for p in client.tracking.get_metric_history(run_id, key)]


def test_mlp_trains_checkpoints_and_predicts_on_raw_columns(
    home_client: Client, flights: str, flights_sample: Any
) -> None:
    import strata.models as sm

    result = train(torch_config(evaluate=True, shap_sample=20), client=home_client)
    assert result.metrics["test_roc_auc"] > 0.75  # dep_delay predicts lateness well
    report = json.loads(
        home_client.tracking.open_artifact(result.run_id, "evaluation/report.json")[2].read()
    )
    assert report["shap_explainer"] == "permutation" and "dep_delay" in report["shap_importance"]
    run = home_client.tracking.get_run(result.run_id)
    assert run.params["model.family"] == "pytorch"
    files = [f.path for f in home_client.tracking.list_artifacts(result.run_id, "checkpoints")]
    assert files == ["checkpoints/final.pt"]
    assert sorted(set(history(home_client, result.run_id, "final_val_loss"))) == list(range(6))
    _, _, reader = home_client.tracking.open_artifact(result.run_id, "checkpoints/final.pt")
    ckpt = torch.load(io.BytesIO(reader.read()), weights_only=True)
    assert ckpt["done"] and ckpt["pos"]["epoch"] == 6
    # the saved Pipeline loads without trust (skops, Strata's own MLP class) and takes raw
    # columns, text included
    model = sm.load(result.model_uri, tracking=home_client.tracking)
    rows = flights_sample[["dep_delay", "distance", "hour", "month", "carrier", "origin"]][:5]
    proba = model.predict_proba(rows)
    assert proba.shape == (5, 2) and abs(float(proba.sum()) - 5.0) < 1e-6
    # predicting runs the module: torch is pinned
    assert f"torch=={importlib.metadata.version('torch')}" in model.spec.requirements


def test_early_stopping_stops_and_keeps_the_best_epoch(home_client: Client, flights: str) -> None:
    params = {**MLP["params"], "epochs": 40, "patience": 2, "learning_rate": 0.05}
    result = train(torch_config(model={**MLP, "params": params}), client=home_client)
    epochs = sorted(set(history(home_client, result.run_id, "final_val_loss")))
    assert len(epochs) < 40  # stopped before the budget
    losses = {
        p.step: p.value
        for p in home_client.tracking.get_metric_history(result.run_id, "final_val_loss")
    }
    best = min(losses, key=losses.__getitem__)
    assert best == max(epochs) - 2  # two epochs without improvement after the best one


def test_regression_and_cv_folds_checkpoint_separately(home_client: Client, flights: str) -> None:
    cfg = torch_config(
        target="arr_delay",
        task="regression",
        metrics=["rmse", "r2"],
        cv={"folds": 2},
        split={"method": "random", "test_size": 0.25},
    )
    result = train(cfg, client=home_client)
    assert result.metrics["test_r2"] > 0.5
    assert {"cv_rmse_mean", "cv_r2_std"} <= set(result.metrics)
    files = {f.path for f in home_client.tracking.list_artifacts(result.run_id, "checkpoints")}
    assert files == {"checkpoints/fold0.pt", "checkpoints/fold1.pt", "checkpoints/final.pt"}


def test_a_job_killed_mid_fit_resumes_from_its_last_checkpoint(
    home_client: Client, flights: str, tmp_path: Path
) -> None:
    params = {**MLP["params"], "epochs": 8, "batch_size": 64, "checkpoint_every": 10}
    uninterrupted = train(
        torch_config(model={**MLP, "params": params}, resume=False), client=home_client
    )
    path = write_config(tmp_path / "torch.yaml", torch_config(model={**MLP, "params": params}))
    # The 5th checkpoint (step 50 of ~8 x 18) is stored, then the process gets SIGKILL.
    env = {**os.environ, "STRATA_FAULT": "training.checkpoint@5", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "strata.cli.main", "train", str(path), "--json"],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    exp = home_client.tracking.get_experiment_by_name("flights")
    killed = [
        r
        for r in home_client.tracking.search_runs([exp.experiment_id]).items
        if r.info.status == "RUNNING"
    ]
    assert len(killed) == 1
    killed_id = killed[0].info.run_id
    logged_before = history(home_client, killed_id, "final_train_loss")

    resumed = train(path, client=home_client)
    assert resumed.run_id == killed_id  # the same run continues
    run = home_client.tracking.get_run(killed_id)
    assert run.info.status == "FINISHED"
    assert run.tags["strata.training.resumed"] == "true"
    assert run.tags["strata.training.resumed_from_step"] == "50"
    steps = history(home_client, killed_id, "final_train_loss")
    assert steps.count(0) == 1 and len(logged_before) <= 3  # epoch 0 was not trained again
    assert sorted(set(steps)) == list(range(8))
    assert resumed.metrics == uninterrupted.metrics  # bit for bit: same seed, one thread


def test_user_module_needs_trust_to_train_and_to_load(
    home_client: Client,
    flights: str,
    flights_sample: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import strata.models as sm

    (tmp_path / "mynets.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, n_inputs, n_outputs, width=8):\n"
        "        super().__init__()\n"
        "        self.body = torch.nn.Sequential(torch.nn.Linear(n_inputs, width),\n"
        "            torch.nn.Tanh(), torch.nn.Linear(width, n_outputs))\n"
        "    def forward(self, x):\n"
        "        return self.body(x)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    user = {
        "family": "pytorch",
        "module": "mynets.Net",
        "params": {"epochs": 3, "module_kwargs": {"width": 4}},
    }
    with pytest.raises(InvalidInput, match=r"model\.trusted: true"):
        train(torch_config(model=user), client=home_client)
    result = train(torch_config(model={**user, "trusted": True}), client=home_client)
    assert result.metrics["test_roc_auc"] > 0.6
    with pytest.raises(PermissionDenied, match="TorchModuleClassifier"):
        sm.load(result.model_uri, tracking=home_client.tracking)
    model = sm.load(result.model_uri, tracking=home_client.tracking, trusted=True)
    rows = flights_sample[["dep_delay", "distance", "hour", "month", "carrier", "origin"]][:4]
    assert set(model.predict(rows).tolist()) <= {0, 1}
    with pytest.raises(InvalidInput, match=r"not a torch\.nn\.Module"):
        train(
            torch_config(model={**user, "module": "json.JSONDecoder", "trusted": True}),
            client=home_client,
        )


def test_cli_json(home_client: Client, flights: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from strata.cli.main import app

    path = write_config(tmp_path / "t.yaml", torch_config())
    out = CliRunner().invoke(app, ["train", str(path), "--set", "model.params.epochs=2", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["metrics"]["test_roc_auc"] > 0.6
