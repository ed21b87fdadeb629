"""strata automl: families x HPO within a time budget, a leaderboard, all recorded as runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata.client import Client
from strata.core.errors import InvalidInput
from strata.training.automl import automl, parse_budget

from .conftest import base_config, write_config


def test_two_families_within_the_budget_make_a_leaderboard(
    home_client: Client, flights: str
) -> None:
    cfg = base_config(evaluate=False, metrics=["roc_auc", "log_loss"])
    result = automl(cfg, time_budget=24, families=["lightgbm", "linear"], client=home_client)
    assert result.metric == "test_roc_auc" and result.direction == "maximize"
    assert sorted(e.family for e in result.leaderboard) == ["lightgbm", "linear"]
    values = [e.value for e in result.leaderboard]
    assert values == sorted(values, reverse=True)
    assert result.best_run_id == result.leaderboard[0].run_id
    assert result.seconds < 24 + 20  # the budget, plus at most about a trial per family
    parent = home_client.tracking.get_run(result.parent_run_id)
    assert parent.tags["strata.automl.best_family"] == result.best_family
    for entry in result.leaderboard:
        assert parent.metrics[f"{entry.family}.test_roc_auc"] == pytest.approx(entry.value)
        child = home_client.tracking.get_run(entry.run_id)
        assert child.info.parent_run_id == result.parent_run_id
        assert child.tags["strata.automl.family"] == entry.family
        assert child.metrics["test_roc_auc"] == pytest.approx(entry.value)
    linear = next(e for e in result.leaderboard if e.family == "linear")
    assert set(linear.params) == {"C"}
    kids = home_client.tracking.search_runs(
        [parent.info.experiment_id], f"attributes.parent_run_id = '{result.parent_run_id}'"
    ).items
    assert len(kids) == result.trials >= 2
    _, _, reader = home_client.tracking.open_artifact(
        result.parent_run_id, "automl/leaderboard.json"
    )
    board = json.loads(reader.read())
    assert [e["run_id"] for e in board] == [e.run_id for e in result.leaderboard]


def test_bad_budget_and_family_are_named() -> None:
    assert parse_budget("10m") == 600 and parse_budget("90s") == 90 and parse_budget(5) == 5
    with pytest.raises(InvalidInput, match="time-budget"):
        parse_budget("ten minutes")
    with pytest.raises(InvalidInput, match="Unknown automl family 'catboost'"):
        automl(base_config(), time_budget=5, families=["catboost"])


def test_cli_json(home_client: Client, flights: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from strata.cli.main import app

    path = write_config(tmp_path / "a.yaml", base_config(evaluate=False, task="classification"))
    out = CliRunner().invoke(
        app, ["automl", str(path), "--time-budget", "6s", "--family", "linear", "--json"]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["best_family"] == "linear" and doc["leaderboard"][0]["trials"] >= 1
