"""strata runs reproduce: the same config, input version, seed and commit give the same
metrics; dirty code or a missing input version is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import strata
from strata.cli.main import app
from strata.client import Client
from strata.core.errors import Conflict, InvalidInput, NotFound
from strata.training.job import TAG_DATA
from strata.training.reproduce import TAG_REPRODUCES, reproduce

from .conftest import base_config, git


@pytest.mark.parametrize(
    "model",
    [
        {"family": "lightgbm", "params": {"n_estimators": 15}},
        {
            "family": "sklearn",
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": 5, "max_depth": 4},
        },
    ],
)
def test_reproduce_gives_identical_metrics(
    home_client: Client, flights: str, repo: Path, model: dict
) -> None:
    cfg = base_config(cv={"folds": 2}, model=model, evaluate=False)
    first = strata.train(cfg, client=home_client)
    result = reproduce(first.run_id, client=home_client)
    assert result.source_run_id == first.run_id and result.run_id != first.run_id
    assert result.identical, result.deltas
    assert set(first.metrics) < set(result.deltas)  # and the per-fold cv_<m> keys
    assert all(v == 0.0 for v in result.deltas.values())
    again = home_client.tracking.get_run(result.run_id)
    assert again.tags[TAG_REPRODUCES] == first.run_id
    assert again.params["data.version"] == flights


def test_reproduce_refuses_dirty_or_other_code(
    home_client: Client, flights: str, repo: Path
) -> None:
    first = strata.train(base_config(evaluate=False), client=home_client)
    (repo / "train.py").write_text("# changed\n")
    with pytest.raises(Conflict, match=r"uncommitted changes"):
        reproduce(first.run_id, client=home_client)
    git(repo, "commit", "-qam", "second")
    with pytest.raises(Conflict, match=r"git checkout [0-9a-f]{40}"):
        reproduce(first.run_id, client=home_client)
    (repo / "train.py").write_text("# dirty while training\n")
    dirty = strata.train(base_config(evaluate=False), client=home_client)
    git(repo, "checkout", "-q", "train.py")
    with pytest.raises(Conflict, match=r"ran on uncommitted changes"):
        reproduce(dirty.run_id, client=home_client)


def test_reproduce_refuses_a_missing_input_version(
    home_client: Client, flights: str, repo: Path
) -> None:
    first = strata.train(base_config(evaluate=False), client=home_client)
    home_client.tracking.set_tag(first.run_id, TAG_DATA, "flights@00000000deadbeef")
    with pytest.raises(NotFound, match=r"flights@00000000deadbeef, which no longer exists"):
        reproduce(first.run_id, client=home_client)
    with strata.start_run(experiment="other", client=home_client) as plain:
        pass
    with pytest.raises(InvalidInput, match=r"not a training job"):
        reproduce(plain.run_id, client=home_client)


def test_runs_reproduce_cli(home_client: Client, flights: str, repo: Path) -> None:
    first = strata.train(base_config(evaluate=False), client=home_client)
    result = CliRunner().invoke(app, ["runs", "reproduce", first.run_id, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"run_id", "source_run_id", "deltas", "identical"}
    assert doc["identical"] is True and doc["source_run_id"] == first.run_id
