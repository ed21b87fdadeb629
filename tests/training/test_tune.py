"""strata.tune: trials as child runs, best on the parent, space errors, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from strata.client import Client
from strata.core.errors import InvalidInput
from strata.training.tune import default_storage, tune

from .conftest import base_config, write_config

SPACE = {
    "model.params.learning_rate": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
    "model.params.num_leaves": {"type": "int", "low": 4, "high": 31},
}


def tune_config(**over: Any) -> dict[str, Any]:
    cfg = base_config(
        cv={"folds": 2},
        metrics=["roc_auc", "log_loss"],
        model={"family": "lightgbm", "params": {"n_estimators": 10}},
        tune={"metric": "cv_roc_auc_mean", "sampler": "random", "pruner": "none", "space": SPACE},
    )
    cfg.update(over)
    return cfg


def children(client: Client, parent: str) -> list[Any]:
    exp = client.tracking.get_experiment_by_name("flights")
    runs = client.tracking.search_runs([exp.experiment_id]).items
    return [r for r in runs if r.info.parent_run_id == parent]


def test_trials_are_child_runs_and_the_parent_carries_the_best(
    home_client: Client, flights: str
) -> None:
    result = tune(tune_config(), trials=3, client=home_client)
    assert result.trials == 3
    kids = children(home_client, result.parent_run_id)
    assert len(kids) == 3 and all(k.info.status == "FINISHED" for k in kids)
    values = {k.info.run_id: k.metrics["cv_roc_auc_mean"] for k in kids}
    assert result.best_run_id == max(values, key=values.__getitem__)
    assert result.best_value == pytest.approx(max(values.values()))
    parent = home_client.tracking.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.metrics["cv_roc_auc_mean"] == pytest.approx(result.best_value)
    best = home_client.tracking.get_run(result.best_run_id)
    for key, value in result.best_params.items():
        assert parent.params[f"best.{key}"] == str(value)
        assert best.params[key] == str(value)  # the trial's config carries the value
    assert parent.tags["strata.tune.best_run_id"] == result.best_run_id
    assert set(result.best_params) == set(SPACE)


def test_median_pruner_stops_trials_between_folds(home_client: Client, flights: str) -> None:
    cfg = tune_config(cv={"folds": 3})
    cfg["tune"] = {**cfg["tune"], "pruner": "median", "sampler": "tpe"}
    result = tune(cfg, trials=6, client=home_client, study="pruned")
    st = optuna.load_study(study_name="pruned", storage=default_storage())
    states = [t.state.name for t in st.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 6 == result.trials
    assert all(len(t.intermediate_values) >= 1 for t in st.trials)


@pytest.mark.parametrize("sampler", ["cmaes", "grid"])
def test_cmaes_and_grid_samplers(home_client: Client, flights: str, sampler: str) -> None:
    cfg = tune_config()
    space = dict(SPACE)
    if sampler == "grid":
        space = {
            "model.params.num_leaves": {"type": "int", "low": 4, "high": 8, "step": 4},
            "model.params.learning_rate": {"type": "categorical", "choices": [0.05, 0.2]},
        }
    cfg["tune"] = {**cfg["tune"], "sampler": sampler, "space": space}
    result = tune(cfg, trials=3, client=home_client, study=f"s-{sampler}")
    assert result.trials == 3 and result.best_value is not None
    st = optuna.load_study(study_name=f"s-{sampler}", storage=default_storage())
    if sampler == "cmaes":  # CMA-ES keeps its generation on the trials it sampled
        assert any(k.startswith("cma") for t in st.trials for k in t.system_attrs)
    if sampler == "grid":
        seen = {
            (t.params["model.params.num_leaves"], t.params["model.params.learning_rate"])
            for t in st.trials
        }
        assert len(seen) == 3 and seen <= {(4, 0.05), (4, 0.2), (8, 0.05), (8, 0.2)}


def test_space_errors_name_the_parameter(home_client: Client, flights: str) -> None:
    bad = tune_config()
    bad["tune"] = {**bad["tune"], "space": {"model.parms.x": {"type": "int", "low": 1, "high": 3}}}
    with pytest.raises(InvalidInput) as err:
        tune(bad, trials=1, client=home_client)
    assert err.value.details["field"] == "tune.space.model.parms.x"
    assert "did you mean params" in err.value.message
    bad["tune"]["space"] = {"model.params.num_leavs": {"type": "int", "low": 2, "high": 9}}
    with pytest.raises(InvalidInput, match=r"tune.space.model.params.num_leavs.*num_leaves"):
        tune(bad, trials=1, client=home_client)
    bad["tune"] = {**bad["tune"], "space": SPACE, "metric": "cv_f1_mean"}
    with pytest.raises(InvalidInput, match=r"tune.metric 'cv_f1_mean'.*cv_roc_auc_mean"):
        tune(bad, trials=1, client=home_client)
    grid = tune_config()
    grid["tune"] = {**grid["tune"], "sampler": "grid"}
    with pytest.raises(InvalidInput, match=r"tune.space.model.params.learning_rate.*grid.*step"):
        tune(grid, trials=1, client=home_client)
    with pytest.raises(InvalidInput, match=r"Unknown executor 'slurm'"):
        tune(tune_config(), trials=1, executor="slurm", client=home_client)


@pytest.mark.slow
def test_a_killed_study_resumes_without_repeating_finished_trials(
    home_client: Client, flights: str, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "tune.yaml", tune_config())
    strata_bin = Path(sys.executable).parent / "strata"
    proc = subprocess.Popen(
        [str(strata_bin), "tune", str(path), "--trials", "4", "--study", "killme", "--json"],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    storage = default_storage()
    deadline = time.monotonic() + 180
    done: list[optuna.trial.FrozenTrial] = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            try:
                st = optuna.load_study(study_name="killme", storage=storage)
            except KeyError:
                continue
            done = st.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
            if len(done) >= 1:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert done, proc.stderr.read().decode() if proc.stderr else "no trial finished"
    st = optuna.load_study(study_name="killme", storage=storage)
    before = {
        t.number: t.user_attrs["run_id"]
        for t in st.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    }
    assert 1 <= len(before) < 4
    result = tune(tune_config(), trials=4, study="killme", client=home_client)
    assert result.trials == 4
    st = optuna.load_study(study_name="killme", storage=storage)
    after = {
        t.number: t.user_attrs["run_id"]
        for t in st.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    }
    assert len(after) == 4
    assert all(after[n] == run for n, run in before.items())  # finished trials kept, not re-run
    finished = [
        k for k in children(home_client, result.parent_run_id) if k.info.status == "FINISHED"
    ]
    assert len(finished) == 4


@pytest.mark.slow
def test_two_local_worker_processes_share_the_study(home_client: Client, flights: str) -> None:
    result = tune(tune_config(), trials=4, workers=2, client=home_client, study="pair")
    assert result.trials >= 4
    kids = children(home_client, result.parent_run_id)
    assert len([k for k in kids if k.info.status == "FINISHED"]) == result.trials
    st = optuna.load_study(study_name="pair", storage=default_storage())
    assert len({t.params["model.params.num_leaves"] for t in st.trials} | {0}) > 1


def test_tune_cli_json(home_client: Client, flights: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from strata.cli.main import app

    path = write_config(tmp_path / "tune.yaml", tune_config())
    result = CliRunner().invoke(app, ["tune", str(path), "--trials", "2", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"parent_run_id", "best_run_id", "best_params", "best_value", "trials"}
    assert doc["trials"] == 2 and doc["best_value"] > 0.5


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_executor_on_a_local_cluster(home_client: Client, flights: str) -> None:
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        result = tune(tune_config(), trials=2, workers=2, executor="ray", client=home_client)
    finally:
        ray.shutdown()
    assert result.trials >= 2
    kids = children(home_client, result.parent_run_id)
    assert len([k for k in kids if k.info.status == "FINISHED"]) == result.trials
