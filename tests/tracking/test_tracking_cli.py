"""``strata experiments ...`` and ``strata runs ...``: embedded (STRATA_HOME) and remote."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from strata.cli.main import app
from strata.client import Client
from strata.core.console import console
from strata.core.errors import Conflict, InvalidInput, NotFound
from strata.tracking.models import DatasetInput, Metric, Param, RunTag
from strata.tracking.service import TrackingService

runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def cli_error(*args: str) -> BaseException:
    result = runner.invoke(app, list(args))
    assert result.exit_code != 0 and result.exception is not None, result.output
    return result.exception


def strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as a wide terminal shows them (the captured output is not a terminal)."""
    monkeypatch.setattr(console, "_width", 250)


@pytest.fixture
def tracking() -> Iterator[TrackingService]:
    """The embedded service on the STRATA_HOME the CLI uses (set per test by conftest)."""
    with Client() as client:
        yield client.tracking


@pytest.fixture
def flights(tracking: TrackingService) -> dict[str, str]:
    """Experiment 'flights' with three runs: lgbm (auc 0.9), xgb (auc NaN), linear (no auc)."""
    exp_id = tracking.create_experiment("flights", description="delays").experiment_id
    ids = {"exp": exp_id}
    for i, (name, model, auc) in enumerate(
        [("lgbm-run", "lgbm", 0.9), ("xgb-run", "xgb", math.nan), ("linear-run", "linear", None)],
        start=1,
    ):
        run_id = tracking.create_run(exp_id, run_name=name, start_time=i * 1000).info.run_id
        metrics = [Metric("auc", auc, 1, 0)] if auc is not None else []
        tracking.log_batch(
            run_id,
            metrics=[*metrics, Metric("loss", 1.0 / i, 1, 0)],
            params=[Param("model", model)],
            tags=[RunTag("team", "ml")],
        )
        ids[name] = run_id
    return ids


def test_experiments_create_list_delete_restore(tracking: TrackingService) -> None:
    out = cli("experiments", "create", "churn", "--description", "who leaves", "--tag", "team=ml")
    assert "churn" in out
    created = tracking.get_experiment_by_name("churn")
    assert created.tags == {"team": "ml"} and created.description == "who leaves"
    listed = strict_json(cli("experiments", "list", "--json"))
    assert [e["name"] for e in listed] == ["churn", "Default"]
    assert "churn" in cli("experiments", "list")
    filtered = strict_json(cli("experiments", "list", "--filter", "name LIKE 'ch%'", "--json"))
    assert [e["experiment_id"] for e in filtered] == [created.experiment_id]

    cli("experiments", "delete", "churn")
    assert [e["name"] for e in strict_json(cli("experiments", "list", "--json"))] == ["Default"]
    deleted = strict_json(cli("experiments", "list", "--view", "deleted", "--json"))
    assert [e["name"] for e in deleted] == ["churn"]
    cli("experiments", "restore", created.experiment_id)  # by id this time
    assert tracking.get_experiment(created.experiment_id).lifecycle_stage.value == "active"
    out = cli("experiments", "create", "second", "--json")
    assert strict_json(out)["name"] == "second"

    err = cli_error("experiments", "delete", "no-such-experiment")
    assert isinstance(err, NotFound) and "no-such-experiment" in err.message
    err = cli_error("experiments", "create", "bad", "--tag", "novalue")
    assert isinstance(err, InvalidInput) and "KEY=VALUE" in err.message
    err = cli_error("experiments", "list", "--view", "sideways")
    assert isinstance(err, InvalidInput) and "active, deleted, all" in err.message


def test_runs_list_json_contract(flights: dict[str, str]) -> None:
    out = cli(
        "runs", "list", "--experiment", "flights", "--filter", "params.model != 'linear'", "--json"
    )
    runs = strict_json(out)
    assert [r["run_name"] for r in runs] == ["xgb-run", "lgbm-run"]
    lgbm = runs[1]
    assert lgbm["run_id"] == flights["lgbm-run"]
    assert lgbm["params"] == {"model": "lgbm"}
    assert lgbm["metrics"] == {"auc": 0.9, "loss": 1.0}
    assert lgbm["tags"] == {"team": "ml"}
    assert lgbm["status"] == "RUNNING" and lgbm["experiment_id"] == flights["exp"]
    assert runs[0]["metrics"]["auc"] == "NaN"

    by_id = strict_json(
        cli("runs", "list", "--experiment", flights["exp"], "--json", "--order-by", "metrics.loss")
    )
    assert [r["run_name"] for r in by_id] == ["linear-run", "xgb-run", "lgbm-run"]
    everything = strict_json(cli("runs", "list", "--json", "--max-results", "2"))
    assert len(everything) == 2
    table = cli("runs", "list", "--experiment", "flights", "--metrics", "auc")
    assert "lgbm-run" in table and " auc" in table and "0.9" in table

    err = cli_error("runs", "list", "--experiment", "nope")
    assert isinstance(err, NotFound) and "nope" in err.message
    err = cli_error("runs", "list", "--experiment", "flights", "--filter", "metrics.auc >")
    assert isinstance(err, InvalidInput) and "position 13" in err.message


def test_runs_list_fits_80_columns(
    tracking: TrackingService, flights: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "_width", 80)
    features = "dep_delay,distance,hour,month,origin_EWR,origin_JFK,origin_LGA"
    run_id = flights["lgbm-run"]
    tracking.log_batch(run_id, params=[Param("features", features), Param("lr", "0.05")])
    table = cli("runs", "list", "--experiment", "flights")
    assert max(len(line) for line in table.splitlines()) <= 80, table
    assert run_id in table  # ids are never cut: other commands take them
    assert "metrics: auc, loss (--metrics KEY,...)" in " ".join(table.split())
    assert "0.9" not in table  # no metric columns unless asked

    table = cli(
        "runs", "list", "-e", "flights", "--columns", "run_id,name",
        "--params", "features,model", "--metrics", "auc",
    )  # fmt: skip
    assert max(len(line) for line in table.splitlines()) <= 80, table
    assert run_id in table and features not in table
    (row,) = [line for line in table.splitlines() if run_id in line]
    assert "dep_delay,di" in row and "…" in row  # shortened, on one line
    assert "lgbm" in table and "0.9" in table and "started" not in table
    assert "linear-run" in table
    whole = strict_json(cli("runs", "list", "-e", "flights", "--json"))
    assert {r["params"].get("features") for r in whole} == {features, None}

    err = cli_error("runs", "list", "--columns", "run_id,auc")
    assert isinstance(err, InvalidInput) and "'auc'" in err.message and "--metrics" in err.message


def test_runs_history_draws_a_text_chart(
    tracking: TrackingService, flights: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "_width", 80)
    run_id = flights["lgbm-run"]
    curve = [Metric("val_loss", 1.0 / (s + 1), 1000 + s, s) for s in range(100)]
    tracking.log_batch(run_id, metrics=[*curve, Metric("val_loss", math.nan, 2000, 100)])
    out = cli("runs", "history", run_id, "val_loss", "--width", "50", "--height", "8")
    lines = out.splitlines()
    chart = [line for line in lines if "┤" in line]
    assert len(chart) == 8
    assert chart[0].lstrip().startswith("1 ┤│")  # steps 0-1 share a column: span 1..0.5
    assert chart[-1].lstrip().startswith("0.01 ┤") and chart[-1].endswith("•")
    assert all(len(line.split("┤", 1)[1]) == 50 for line in chart)
    flat = " ".join(out.split())
    assert "101 points, steps 0..100" in flat and "min 0.01 (step 99)" in flat
    assert "max 1 (step 0)" in flat and "1 NaN/inf not drawn" in flat
    points = strict_json(cli("runs", "history", run_id, "val_loss", "--json"))
    assert len(points) == 101 and points[0] == {"step": 0, "value": 1.0, "timestamp": 1000}
    assert points[-1]["value"] == "NaN"

    err = cli_error("runs", "history", run_id, "nope")
    assert isinstance(err, NotFound) and "its metrics: auc, loss, val_loss" in err.message
    err = cli_error("runs", "history", "0" * 32, "loss")
    assert isinstance(err, NotFound)


def test_runs_show(tracking: TrackingService, flights: dict[str, str]) -> None:
    run_id = flights["lgbm-run"]
    tracking.log_inputs(run_id, [DatasetInput(name="flights-2013", digest="d1", context="train")])
    shown = strict_json(cli("runs", "show", run_id, "--json"))
    assert shown["run_id"] == run_id and shown["params"] == {"model": "lgbm"}
    assert shown["inputs"][0]["name"] == "flights-2013"
    assert shown["inputs"][0]["context"] == "train"
    out = cli("runs", "show", run_id)
    for text in ("lgbm-run", run_id, "Params", "model", "Metrics", "auc", "flights-2013"):
        assert text in out, text
    err = cli_error("runs", "show", "ghost-run")
    assert isinstance(err, NotFound) and "ghost-run" in err.message


def test_runs_compare(flights: dict[str, str]) -> None:
    rows = strict_json(
        cli(
            "runs",
            "compare",
            "--experiment",
            "flights",
            "--order-by",
            "metrics.loss DESC",
            "--json",
        )
    )
    assert [r["run_name"] for r in rows] == ["lgbm-run", "xgb-run", "linear-run"]
    assert rows[0]["params.model"] == "lgbm" and rows[0]["metrics.auc"] == 0.9
    assert rows[2]["metrics.auc"] is None  # linear-run has no auc
    assert rows[0]["start_time"] == 1000
    picked = strict_json(
        cli("runs", "compare", flights["lgbm-run"], flights["linear-run"], "--json")
    )
    assert {r["run_name"] for r in picked} == {"lgbm-run", "linear-run"}
    table = cli("runs", "compare", "--experiment", "flights")
    assert "params.model" in table and "lgbm" in table


def test_runs_delete_restore(tracking: TrackingService, flights: dict[str, str]) -> None:
    run_id = flights["xgb-run"]
    cli("runs", "delete", run_id)
    assert tracking.get_run(run_id).info.lifecycle_stage.value == "deleted"
    listed = strict_json(cli("runs", "list", "-e", "flights", "--view", "deleted", "--json"))
    assert [r["run_id"] for r in listed] == [run_id]
    cli("runs", "restore", run_id)
    assert tracking.get_run(run_id).info.lifecycle_stage.value == "active"


def test_runs_download_artifacts(
    tracking: TrackingService, flights: dict[str, str], tmp_path: Path
) -> None:
    run_id = flights["lgbm-run"]
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "MLmodel").write_text("flavor")
    (src / "sub" / "w.bin").write_bytes(b"\x00\x01" * 100)
    tracking.log_artifacts(run_id, src, "model")
    dst = tmp_path / "out"
    out = cli("runs", "download-artifacts", run_id, "--dst", str(dst))
    assert out.strip().endswith(str(dst))
    assert (dst / "model" / "sub" / "w.bin").read_bytes() == b"\x00\x01" * 100
    out = cli(
        "runs",
        "download-artifacts",
        run_id,
        "--path",
        "model/MLmodel",
        "--dst",
        str(tmp_path / "one"),
    )
    assert Path(out.strip().splitlines()[-1]).read_text() == "flavor"


def test_runs_download_artifacts_into_a_new_folder_named_after_the_run(
    tracking: TrackingService,
    flights: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id = flights["lgbm-run"]
    src = tmp_path / "src"
    src.mkdir()
    (src / "coef.json").write_text("{}")
    tracking.log_artifacts(run_id, src, "model")
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    out = cli("runs", "download-artifacts", run_id)
    folder = here / f"lgbm-run-{run_id[-8:]}"
    assert out.strip().splitlines()[-1] == str(folder)
    assert (folder / "model" / "coef.json").read_text() == "{}"
    assert sorted(p.name for p in here.iterdir()) == [folder.name]  # no staging left behind

    err = cli_error("runs", "download-artifacts", run_id)  # never merges into an old folder
    assert isinstance(err, Conflict) and str(folder) in err.message and "--dst" in err.message
    assert sorted(p.name for p in here.iterdir()) == [folder.name]
    shutil.rmtree(folder)
    err = cli_error("runs", "download-artifacts", run_id, "--path", "nope.txt")
    assert isinstance(err, NotFound)
    assert list(here.iterdir()) == []  # a failed download leaves nothing


@pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)
def test_cli_against_a_server(live_server: Any, tmp_path: Path) -> None:
    env = {
        "STRATA_URI": live_server.url,
        "STRATA_TOKEN": live_server.admin_token,
        "STRATA_HOME": str(tmp_path / "elsewhere"),
    }
    cli("experiments", "create", "remote-exp", env=env)
    served = live_server.embedded.tracking
    exp_id = served.get_experiment_by_name("remote-exp").experiment_id
    run_id = served.create_run(exp_id, run_name="r").info.run_id
    served.log_batch(run_id, metrics=[Metric("auc", math.inf, 1, 0)], params=[Param("p", "1")])
    runs = strict_json(cli("runs", "list", "--experiment", "remote-exp", "--json", env=env))
    assert runs[0]["run_id"] == run_id
    assert runs[0]["metrics"] == {"auc": "Infinity"} and runs[0]["params"] == {"p": "1"}
    assert not (tmp_path / "elsewhere").exists()  # nothing embedded was touched
