"""The same job against a server: it runs here and tracks there (STRATA_URI mode), on SQLite
and PostgreSQL metadata."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import LiveServer

import strata
import strata.models as sm
from strata.client import Client
from strata.tracking import fluent
from strata.training.job import TAG_DATA

from .conftest import base_config, write_config


@pytest.fixture
def remote(live_server: LiveServer) -> Iterator[Client]:
    client = live_server.client()
    yield client
    while fluent.active_run() is not None:
        fluent.end_run()
    client.close()


def test_train_and_evaluate_through_a_server(
    remote: Client, live_server: LiveServer, flights_sample: pd.DataFrame
) -> None:
    ref = remote.data.ingest(flights_sample, "flights").ref
    assert ref is not None
    result = strata.train(base_config(cv={"folds": 2}, sensitive=["carrier"]), client=remote)
    # the server's own store holds everything: run, metrics, input, model, report
    server = live_server.embedded
    run = server.tracking.get_run(result.run_id)
    assert run.tags[TAG_DATA] == ref and run.metrics["test_roc_auc"] > 0.6
    assert [i.name for i in run.inputs] == ["flights"]
    paths = {f.path for f in server.tracking.list_artifacts(result.run_id, "evaluation")}
    assert "evaluation/report.html" in paths
    model = sm.load(result.model_uri, tracking=server.tracking)
    assert model.labels == [0, 1]
    report = strata.evaluate(
        result.model_uri,
        data=ref,
        target={"name": "late", "sql": "arr_delay > 15"},
        sensitive=["origin"],
        client=remote,
        shap_sample=20,
    )
    assert report.metrics["roc_auc"] > 0.6 and report.fairness[0].column == "origin"


def test_pytorch_checkpoints_and_resume_through_a_server(
    remote: Client, live_server: LiveServer, flights_sample: pd.DataFrame, tmp_path: Path
) -> None:
    """The checkpoints are artifacts of the server's run; a job killed with SIGKILL while
    tracking to the server continues the same run there from its last checkpoint."""
    pytest.importorskip("torch")
    remote.data.ingest(flights_sample, "flights")
    params = {
        "hidden_layers": [8],
        "learning_rate": 0.01,
        "epochs": 5,
        "batch_size": 128,
        "checkpoint_every": 5,
        "patience": 50,
    }
    cfg = base_config(model={"family": "pytorch", "params": params}, evaluate=False)
    path = write_config(tmp_path / "torch.yaml", cfg)
    env = {
        **os.environ,
        "STRATA_URI": live_server.url,
        "STRATA_TOKEN": live_server.admin_token,
        "STRATA_FAULT": "training.checkpoint@3",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "strata.cli.main", "train", str(path), "--json"],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    server = live_server.embedded
    exp = server.tracking.get_experiment_by_name("flights")
    (killed,) = [
        r
        for r in server.tracking.search_runs([exp.experiment_id]).items
        if r.info.status == "RUNNING"
    ]
    files = [f.path for f in server.tracking.list_artifacts(killed.info.run_id, "checkpoints")]
    assert files == ["checkpoints/final.pt"]  # stored on the server, through the interface
    result = strata.train(path, client=remote)
    assert result.run_id == killed.info.run_id
    run = server.tracking.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.tags["strata.training.resumed_from_step"] == "15"
    assert run.metrics["test_roc_auc"] > 0.6


def test_tune_with_two_workers_and_reproduce_through_a_server(
    live_server: LiveServer,
    flights_sample: pd.DataFrame,
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With STRATA_URI set, the launcher and its spawned worker both track to the server (the
    study's trials are child runs there), and a trial reproduces there with zero deltas."""
    from strata.training.reproduce import reproduce
    from strata.training.tune import tune

    monkeypatch.setenv("STRATA_URI", live_server.url)
    monkeypatch.setenv("STRATA_TOKEN", live_server.admin_token)
    space = {"model.params.num_leaves": {"type": "int", "low": 4, "high": 31}}
    cfg = base_config(
        cv={"folds": 2},
        evaluate=False,
        model={"family": "lightgbm", "params": {"n_estimators": 10}},
        tune={"metric": "cv_roc_auc_mean", "sampler": "random", "pruner": "none", "space": space},
    )
    with Client() as remote:
        assert remote.is_remote
        remote.data.ingest(flights_sample, "flights")
        result = tune(cfg, trials=6, workers=2)
        server = live_server.embedded
        exp = server.tracking.get_experiment_by_name("flights")
        kids = [
            r
            for r in server.tracking.search_runs([exp.experiment_id]).items
            if r.info.parent_run_id == result.parent_run_id
        ]
        assert result.trials == 6 and len(kids) == 6
        assert all(k.info.status == "FINISHED" for k in kids)
        assert (
            server.tracking.get_run(result.parent_run_id).tags["strata.tune.best_run_id"]
            == result.best_run_id
        )
        assert result.best_run_id is not None
        again = reproduce(result.best_run_id, client=remote)
        assert again.identical and again.deltas["cv_roc_auc_mean"] == 0.0
        assert server.tracking.get_run(again.run_id).info.status == "FINISHED"
