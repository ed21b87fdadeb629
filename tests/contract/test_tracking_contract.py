"""The tracking contract: every TrackingService method behaves the same embedded and remote,
on SQLite and PostgreSQL, and raises the same error classes (``client`` fixture)."""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strata.client import Client
from strata.core.errors import AlreadyExists, Conflict, DigestMismatch, InvalidInput, NotFound
from strata.tracking.models import (
    DatasetInput,
    DatasetRef,
    LifecycleStage,
    LoggedModelStatus,
    Metric,
    ModelDirection,
    ModelMetric,
    ModelOrder,
    Param,
    RunStatus,
    RunTag,
    ViewType,
)
from strata.tracking.service import TrackingService


@pytest.fixture
def t(client: Client) -> TrackingService:
    return client.tracking


def _new_run(t: TrackingService, exp: str = "exp", **kwargs: object) -> str:
    try:
        exp_id = t.get_experiment_by_name(exp).experiment_id
    except NotFound:
        exp_id = t.create_experiment(exp).experiment_id
    return t.create_run(exp_id, **kwargs).info.run_id  # type: ignore[arg-type]


# -- experiments -------------------------------------------------------------------------------
def test_experiment_create_get_and_unique_names(t: TrackingService) -> None:
    exp = t.create_experiment("flights", tags={"team": "ml"}, description="delay model")
    assert exp.name == "flights"
    assert exp.tags == {"team": "ml"}
    assert exp.description == "delay model"
    assert exp.lifecycle_stage is LifecycleStage.ACTIVE
    assert exp.artifact_location
    assert exp.creation_time > 0
    assert t.get_experiment(exp.experiment_id) == exp
    assert t.get_experiment_by_name("flights") == exp
    assert t.get_experiment_by_name("Default").experiment_id == "0"

    with pytest.raises(AlreadyExists, match="flights"):
        t.create_experiment("flights")
    t.delete_experiment(exp.experiment_id)
    with pytest.raises(AlreadyExists, match="flights"):  # even when the holder is deleted
        t.create_experiment("flights")
    with pytest.raises(NotFound, match="no-such-id") as err:
        t.get_experiment("no-such-id")
    assert err.value.details["experiment_id"] == "no-such-id"
    with pytest.raises(NotFound, match="nope"):
        t.get_experiment_by_name("nope")
    with pytest.raises(InvalidInput, match="name"):
        t.create_experiment("   ")
    with pytest.raises(InvalidInput, match="500"):
        t.create_experiment("x" * 501)


def test_an_experiment_location_may_not_lie_in_stratas_own_folders(t: TrackingService) -> None:
    """Runs of an experiment write under its location: one at ``mlflow-artifacts:/predictions``
    or ``/serving/...`` would add files where the prediction log and the endpoint reports are
    read. Refused, however it is spelled; other folders and other schemes are the editor's."""
    for bad in (
        "mlflow-artifacts:/predictions",
        "mlflow-artifacts:/serving/endpoints",
        "mlflow-artifacts:///datasets/x",
        "mlflow-artifacts:/./monitoring/profiles",
        "mlflow-artifacts://host/audit/checkpoints",
        "mlflow-artifacts:/.strata-digests",
        "mlflow-artifacts:/Datasets/x",  # a case-insensitive disk stores it in datasets
        "mlflow-artifacts:/x/../serving",
    ):
        with pytest.raises(InvalidInput, match="artifact_location") as err:
            t.create_experiment(f"placed-{len(bad)}-{bad[-3:]}", artifact_location=bad)
        assert err.value.details["field"] == "artifact_location"
    for good in ("mlflow-artifacts:/teams/ml", "mlflow-artifacts:/predictions-archive"):
        assert t.create_experiment(good[-8:], artifact_location=good).artifact_location == good
    assert [e.name for e in t.search_experiments() if e.name.startswith("placed-")] == []


def test_search_experiments_filter_order_pages_and_views(t: TrackingService) -> None:
    a1 = t.create_experiment("alpha-1", tags={"team": "ml"})
    time.sleep(0.003)  # creation times are milliseconds: ties order by id (MLflow's rule)
    a2 = t.create_experiment("alpha-2", tags={"team": "data"})
    time.sleep(0.003)
    beta = t.create_experiment("beta")

    names = [e.name for e in t.search_experiments()]
    assert names == ["beta", "alpha-2", "alpha-1", "Default"]  # newest first
    assert [e.name for e in t.search_experiments(filter="name LIKE 'alpha%'")] == [
        "alpha-2",
        "alpha-1",
    ]
    assert [e.name for e in t.search_experiments(filter="tags.team = 'ml'")] == ["alpha-1"]
    ordered = t.search_experiments(order_by=["name ASC"])
    assert [e.name for e in ordered] == ["Default", "alpha-1", "alpha-2", "beta"]

    seen: list[str] = []
    token = None
    for _ in range(10):
        page = t.search_experiments(order_by=["name DESC"], max_results=3, page_token=token)
        seen += [e.name for e in page]
        token = page.next_page_token
        if token is None:
            break
    assert seen == ["beta", "alpha-2", "alpha-1", "Default"]

    t.delete_experiment(beta.experiment_id)
    assert beta.experiment_id not in {e.experiment_id for e in t.search_experiments()}
    deleted = t.search_experiments(view=ViewType.DELETED_ONLY)
    assert [e.experiment_id for e in deleted] == [beta.experiment_id]
    assert len(t.search_experiments(view=ViewType.ALL)) == 4
    assert {a1.experiment_id, a2.experiment_id} <= {e.experiment_id for e in t.search_experiments()}

    with pytest.raises(InvalidInput, match="position") as err:
        t.search_experiments(filter="name LIKE")
    assert err.value.details["position"] == 9
    with pytest.raises(InvalidInput):
        t.search_experiments(max_results=0)


def test_update_experiment_rename_description_and_tags(t: TrackingService) -> None:
    exp = t.create_experiment("old")
    t.create_experiment("taken")
    renamed = t.update_experiment(exp.experiment_id, name="new", description="about")
    assert (renamed.name, renamed.description) == ("new", "about")
    assert t.get_experiment_by_name("new").experiment_id == exp.experiment_id
    with pytest.raises(NotFound):
        t.get_experiment_by_name("old")
    with pytest.raises(AlreadyExists, match="taken"):
        t.update_experiment(exp.experiment_id, name="taken")
    with pytest.raises(NotFound, match="missing-exp"):
        t.update_experiment("missing-exp", name="x")

    t.set_experiment_tag(exp.experiment_id, "owner", "ana")
    t.set_experiment_tag(exp.experiment_id, "owner", "bo")  # tags are mutable
    t.set_experiment_tag(exp.experiment_id, "mlflow.note.content", "notes")
    got = t.get_experiment(exp.experiment_id)
    assert got.tags == {"owner": "bo", "mlflow.note.content": "notes"}
    with pytest.raises(InvalidInput, match="key"):
        t.set_experiment_tag(exp.experiment_id, "bad*key", "v")
    with pytest.raises(NotFound, match="missing-exp"):
        t.set_experiment_tag("missing-exp", "k", "v")
    t.delete_experiment_tag(exp.experiment_id, "owner")
    assert t.get_experiment(exp.experiment_id).tags == {"mlflow.note.content": "notes"}
    with pytest.raises(NotFound, match="owner"):
        t.delete_experiment_tag(exp.experiment_id, "owner")


def test_delete_and_restore_experiment_hides_and_restores_its_runs(t: TrackingService) -> None:
    exp = t.create_experiment("lifecycle")
    run_id = t.create_run(exp.experiment_id).info.run_id
    t.delete_experiment(exp.experiment_id)
    assert t.get_experiment(exp.experiment_id).lifecycle_stage is LifecycleStage.DELETED
    assert t.search_runs(exp.experiment_id).items == []
    assert t.get_run(run_id).info.lifecycle_stage is LifecycleStage.DELETED
    with pytest.raises(Conflict, match="deleted"):
        t.create_run(exp.experiment_id)
    t.restore_experiment(exp.experiment_id)
    assert t.get_experiment(exp.experiment_id).lifecycle_stage is LifecycleStage.ACTIVE
    assert [r.run_id for r in t.search_runs(exp.experiment_id)] == [run_id]
    # As in MLflow, the Default experiment can be deleted and restored like any other.
    t.delete_experiment("0")
    assert t.get_experiment("0").lifecycle_stage is LifecycleStage.DELETED
    with pytest.raises(Conflict, match="deleted"):
        t.create_run("0")
    t.restore_experiment("0")
    assert t.get_experiment("0").lifecycle_stage is LifecycleStage.ACTIVE
    with pytest.raises(NotFound, match="ghost"):
        t.delete_experiment("ghost")
    with pytest.raises(NotFound, match="ghost"):
        t.restore_experiment("ghost")


# -- runs --------------------------------------------------------------------------------------
def test_create_run_names_tags_user_and_get(t: TrackingService) -> None:
    exp_id = t.create_experiment("runs").experiment_id
    run = t.create_run(exp_id, tags={"team": "ml"}, user="ana", start_time=1_700_000_000_000)
    info = run.info
    assert info.run_name  # generated
    assert info.status is RunStatus.RUNNING
    assert info.end_time is None
    assert info.experiment_id == exp_id
    assert info.user_id == "ana"
    assert info.start_time == 1_700_000_000_000
    assert info.lifecycle_stage is LifecycleStage.ACTIVE
    assert info.run_id in info.artifact_uri
    assert run.tags["team"] == "ml"
    named = t.create_run(exp_id, run_name="baseline")
    assert named.info.run_name == "baseline"
    other = t.create_run(exp_id)
    assert other.info.run_name and other.info.run_id != info.run_id

    got = t.get_run(info.run_id)
    assert got.info == info and got.tags == {"team": "ml"}
    assert got.params == {} and got.metrics == {} and got.inputs == []
    default_run = t.create_run("0")
    assert default_run.info.experiment_id == "0"

    with pytest.raises(NotFound, match="no-such-run") as err:
        t.get_run("no-such-run")
    assert err.value.details["run_id"] == "no-such-run"
    with pytest.raises(NotFound, match="no-such-exp"):
        t.create_run("no-such-exp")
    with pytest.raises(InvalidInput, match="250"):
        t.create_run(exp_id, run_name="n" * 251)


def test_nested_runs(t: TrackingService) -> None:
    exp_id = t.create_experiment("hpo").experiment_id
    parent = t.create_run(exp_id, run_name="study").info.run_id
    trials = [t.create_run(exp_id, parent_run_id=parent).info.run_id for _ in range(3)]
    assert all(t.get_run(r).info.parent_run_id == parent for r in trials)
    assert t.get_run(parent).info.parent_run_id is None
    with pytest.raises(NotFound, match="ghost-parent"):
        t.create_run(exp_id, parent_run_id="ghost-parent")


def test_status_transitions_end_run_and_rename(t: TrackingService) -> None:
    run_id = _new_run(t)
    info = t.update_run(run_id, status=RunStatus.SCHEDULED)
    assert info.status is RunStatus.SCHEDULED and info.end_time is None
    info = t.update_run(run_id, status="RUNNING")
    assert info.status is RunStatus.RUNNING
    info = t.end_run(run_id)
    assert info.status is RunStatus.FINISHED and info.end_time is not None
    assert info.end_time >= info.start_time
    assert t.get_run(run_id).info == info

    failed = _new_run(t)
    assert t.end_run(failed, "FAILED").status is RunStatus.FAILED
    killed = _new_run(t)
    end = info.start_time + 5
    info = t.update_run(killed, status="killed", end_time=end)
    assert (info.status, info.end_time) == (RunStatus.KILLED, end)
    assert t.update_run(killed, run_name="renamed").run_name == "renamed"
    assert t.get_run(killed).info.run_name == "renamed"

    with pytest.raises(InvalidInput, match="DONE"):
        t.update_run(run_id, status="DONE")
    with pytest.raises(NotFound, match="ghost-run"):
        t.update_run("ghost-run", status="FINISHED")


def test_delete_restore_run_and_views(t: TrackingService) -> None:
    exp_id = t.create_experiment("views").experiment_id
    keep = t.create_run(exp_id).info.run_id
    gone = t.create_run(exp_id).info.run_id
    t.delete_run(gone)
    assert t.get_run(gone).info.lifecycle_stage is LifecycleStage.DELETED
    assert [r.run_id for r in t.search_runs(exp_id)] == [keep]
    assert [r.run_id for r in t.search_runs(exp_id, view=ViewType.DELETED_ONLY)] == [gone]
    assert {r.run_id for r in t.search_runs(exp_id, view=ViewType.ALL)} == {keep, gone}
    with pytest.raises(Conflict, match=gone):
        t.log_metric(gone, "loss", 1.0)
    t.restore_run(gone)
    assert t.get_run(gone).info.lifecycle_stage is LifecycleStage.ACTIVE
    t.log_metric(gone, "loss", 1.0)
    with pytest.raises(NotFound, match="ghost-run"):
        t.delete_run("ghost-run")
    with pytest.raises(NotFound, match="ghost-run"):
        t.restore_run("ghost-run")


# -- logging -----------------------------------------------------------------------------------
def test_params_are_immutable_and_conflicts_name_both_values(t: TrackingService) -> None:
    run_id = _new_run(t)
    t.log_param(run_id, "lr", 0.1)
    t.log_param(run_id, "lr", "0.1")  # the same value again is fine
    t.log_batch(run_id, params=[Param("lr", "0.1"), Param("depth", "6")])
    with pytest.raises(Conflict) as err:
        t.log_param(run_id, "lr", 0.2)
    assert "'0.1'" in err.value.message and "'0.2'" in err.value.message
    assert "lr" in err.value.message
    assert t.get_run(run_id).params == {"lr": "0.1", "depth": "6"}
    with pytest.raises(Conflict, match=r"'a'.*'b'"):
        t.log_batch(run_id, params=[Param("dup", "a"), Param("dup", "b")])


def test_metrics_nan_and_infinities_are_stored_faithfully(t: TrackingService) -> None:
    run_id = _new_run(t)
    t.log_batch(
        run_id,
        metrics=[
            Metric("nan", math.nan, 1, 0),
            Metric("pinf", math.inf, 1, 0),
            Metric("ninf", -math.inf, 1, 0),
            Metric("tiny", 5e-324, 1, 0),
            Metric("big", -1.7976931348623157e308, 1, 0),
        ],
    )
    run = t.get_run(run_id)
    assert math.isnan(run.metrics["nan"])
    assert run.metrics["pinf"] == math.inf
    assert run.metrics["ninf"] == -math.inf
    assert run.metrics["tiny"] == 5e-324
    assert run.metrics["big"] == -1.7976931348623157e308
    assert math.isnan(t.get_metric_history(run_id, "nan")[0].value)
    assert t.get_metric_history(run_id, "ninf")[0].value == -math.inf


def test_numpy_numbers_and_non_string_values_are_accepted(t: TrackingService) -> None:
    run_id = _new_run(t)
    t.log_batch(
        run_id,
        metrics=[Metric("np", np.float64(0.25), np.int64(7), np.int64(3))],  # type: ignore[arg-type]
        params=[Param("depth", 6)],  # type: ignore[arg-type]
        tags=[RunTag("flag", True)],  # type: ignore[arg-type]
    )
    t.log_metric(run_id, "from_str", "1.5")  # type: ignore[arg-type]
    run = t.get_run(run_id)
    assert run.metrics == {"np": 0.25, "from_str": 1.5}
    assert (run.metric_steps["np"], run.metric_timestamps["np"]) == (3, 7)
    assert run.params == {"depth": "6"} and run.tags == {"flag": "True"}
    exp = t.create_experiment("typed", tags={"n": 1})  # type: ignore[dict-item]
    assert exp.tags == {"n": "1"}
    with pytest.raises(InvalidInput):
        t.log_metric(run_id, "bad", "high")  # type: ignore[arg-type]


def test_failed_batch_writes_nothing(t: TrackingService) -> None:
    run_id = _new_run(t)
    t.log_param(run_id, "p", "1")
    points = [Metric("loss", 0.5, 10, i) for i in range(5)]
    with pytest.raises(Conflict):
        t.log_batch(
            run_id,
            metrics=points,
            params=[Param("q", "new"), Param("p", "2")],
            tags=[RunTag("t", "v")],
        )
    with pytest.raises(InvalidInput):
        t.log_batch(
            run_id, metrics=[*points, Metric("bad*key", 1.0, 10, 0)], tags=[RunTag("t", "v")]
        )
    with pytest.raises(InvalidInput):
        t.log_batch(run_id, metrics=points, params=[Param("long", "x" * 6001)])
    run = t.get_run(run_id)
    assert run.params == {"p": "1"}
    assert run.metrics == {}
    assert "t" not in run.tags
    assert t.get_metric_history(run_id, "loss") == []


def test_key_and_value_limits_say_the_rule(t: TrackingService) -> None:
    run_id = _new_run(t)
    t.log_param(run_id, "k" * 250, "v")
    t.log_param(run_id, "long", "x" * 6000)
    t.set_tag(run_id, "note", "y" * 8000)
    t.log_metric(run_id, "dir/name:with spaces-and.dots_1", 1.0)
    run = t.get_run(run_id)
    assert run.params["long"] == "x" * 6000
    assert run.tags["note"] == "y" * 8000
    assert run.metrics["dir/name:with spaces-and.dots_1"] == 1.0

    with pytest.raises(InvalidInput, match="250"):
        t.log_param(run_id, "k" * 251, "v")
    with pytest.raises(InvalidInput, match="6000"):
        t.log_param(run_id, "too-long", "x" * 6001)
    with pytest.raises(InvalidInput, match="8000"):
        t.set_tag(run_id, "note2", "y" * 8001)
    for bad in ("bad*key", "../up", "/abs", ""):
        with pytest.raises(InvalidInput, match="key") as err:
            t.log_metric(run_id, bad, 1.0)
        assert err.value.details["field"] == "metric.key"
    with pytest.raises(NotFound, match="ghost-run"):
        t.log_metric("ghost-run", "loss", 1.0)


def test_tags_set_overwrite_and_delete(t: TrackingService) -> None:
    run_id = _new_run(t)
    t.set_tag(run_id, "stage", "dev")
    t.set_tag(run_id, "stage", "prod")
    t.set_tag(run_id, "other", 1)
    assert t.get_run(run_id).tags == {"stage": "prod", "other": "1"}
    t.delete_tag(run_id, "stage")
    assert t.get_run(run_id).tags == {"other": "1"}
    with pytest.raises(NotFound, match="stage"):
        t.delete_tag(run_id, "stage")
    with pytest.raises(NotFound, match="ghost-run"):
        t.delete_tag("ghost-run", "other")


def test_metric_history_order_and_latest_value(t: TrackingService) -> None:
    run_id = _new_run(t)
    t.log_batch(
        run_id,
        metrics=[
            Metric("m", 0.2, 20, 2),
            Metric("m", 0.0, 10, 0),
            Metric("m", 0.1, 15, 1),
            Metric("m", 0.25, 5, 2),
        ],
    )
    t.log_metric(run_id, "m", 9.0, step=1, timestamp=1000)  # an older step: not the latest
    history = t.get_metric_history(run_id, "m")
    assert [(p.step, p.timestamp, p.value) for p in history] == [
        (0, 10, 0.0),
        (1, 15, 0.1),
        (1, 1000, 9.0),
        (2, 5, 0.25),
        (2, 20, 0.2),
    ]
    assert all(p.key == "m" for p in history)
    run = t.get_run(run_id)
    assert (run.metrics["m"], run.metric_steps["m"], run.metric_timestamps["m"]) == (0.2, 2, 20)
    assert [p.step for p in t.get_metric_history(run_id, "m", max_results=2)] == [0, 1]
    assert t.get_metric_history(run_id, "never-logged") == []
    t.log_metric(run_id, "n", 1.5)  # default step 0, timestamp now
    point = t.get_metric_history(run_id, "n")[0]
    assert (point.step, point.value) == (0, 1.5) and point.timestamp > 1_600_000_000_000
    with pytest.raises(NotFound, match="ghost-run"):
        t.get_metric_history("ghost-run", "m")


def test_metric_history_bulk(t: TrackingService) -> None:
    exp_id = t.create_experiment("bulk").experiment_id
    a = t.create_run(exp_id).info.run_id
    b = t.create_run(exp_id).info.run_id
    for step in (2, 0, 1):
        t.log_metric(a, "loss", 1.0 / (step + 1), step=step, timestamp=100 + step)
        t.log_metric(b, "loss", 2.0 / (step + 1), step=step, timestamp=100 + step)
    t.log_metric(b, "acc", 0.5)
    points = t.get_metric_history_bulk([a, b], "loss")
    first, second = sorted([a, b])
    assert [(p.run_id, p.step) for p in points] == [
        (first, 0),
        (first, 1),
        (first, 2),
        (second, 0),
        (second, 1),
        (second, 2),
    ]
    assert all(p.key == "loss" for p in points)
    assert len(t.get_metric_history_bulk([a, b], "loss", max_results=4)) == 4
    assert t.get_metric_history_bulk([a, b], "missing") == []
    assert t.get_metric_history_bulk([], "loss") == []
    with pytest.raises(NotFound, match="ghost-run"):
        t.get_metric_history_bulk([a, "ghost-run"], "loss")


# -- search ------------------------------------------------------------------------------------
@pytest.fixture
def searchable(t: TrackingService) -> tuple[str, dict[str, str]]:
    """Six runs with start times 1000..6000 and a mix of metrics, params, tags and statuses."""
    exp_id = t.create_experiment("search").experiment_id
    spec = [
        ("r1", 0.91, "lgbm", "ml-core", "FINISHED"),
        ("r2", 0.75, "lgbm", "ML-ops", "FINISHED"),
        ("r3", None, "xgb", "data", "FAILED"),
        ("r4", 0.95, "xgb", "ml-core", "RUNNING"),
        ("r5", 0.60, "linear", None, "FINISHED"),
        ("r6", 0.85, "lgbm", "ml-core", "KILLED"),
    ]
    ids: dict[str, str] = {}
    for i, (name, auc, model, team, status) in enumerate(spec, start=1):
        run_id = t.create_run(exp_id, run_name=name, start_time=i * 1000).info.run_id
        ids[name] = run_id
        metrics = [Metric("auc", auc, 1, 0)] if auc is not None else []
        metrics.append(Metric("my metric", float(i), 1, 0))
        tags = [RunTag("team", team)] if team else []
        t.log_batch(run_id, metrics=metrics, params=[Param("model", model)], tags=tags)
        if status != "RUNNING":
            t.update_run(run_id, status=status)
    return exp_id, ids


def _names(t: TrackingService, exp_id: str, flt: str | None, **kw: object) -> list[str]:
    page = t.search_runs(exp_id, flt, max_results=100, **kw)  # type: ignore[arg-type]
    return [r.info.run_name for r in page]


def test_search_runs_grammar(t: TrackingService, searchable: tuple[str, dict[str, str]]) -> None:
    exp_id, ids = searchable
    n = lambda flt: _names(t, exp_id, flt)  # noqa: E731
    assert n(None) == ["r6", "r5", "r4", "r3", "r2", "r1"]  # newest first
    assert n("metrics.auc > 0.8") == ["r6", "r4", "r1"]
    assert n("metrics.auc >= 0.85 and metrics.auc < 0.95") == ["r6", "r1"]
    assert n("metrics.auc <= 0.6") == ["r5"]
    assert n("metrics.auc != 0.75") == ["r6", "r5", "r4", "r1"]
    assert n("metrics.`my metric` = 3") == ["r3"]
    assert n("params.model = 'lgbm'") == ["r6", "r2", "r1"]
    assert n("params.model != 'lgbm'") == ["r5", "r4", "r3"]
    assert n("params.model IN ('xgb', 'linear')") == ["r5", "r4", "r3"]
    assert n("params.model NOT IN ('xgb', 'linear')") == ["r6", "r2", "r1"]
    assert n("tags.team LIKE 'ml%'") == ["r6", "r4", "r1"]  # LIKE is case-sensitive
    assert n("tags.team ILIKE 'ml%'") == ["r6", "r4", "r2", "r1"]
    assert n("tags.`team` = 'data'") == ["r3"]
    assert n("attributes.status = 'FINISHED'") == ["r5", "r2", "r1"]
    assert n("status != 'FINISHED'") == ["r6", "r4", "r3"]
    assert n("attributes.run_name = 'r2'") == ["r2"]
    assert n("attributes.run_name LIKE 'r%' and attributes.start_time > 4500") == ["r6", "r5"]
    assert n("attributes.start_time <= 2000") == ["r2", "r1"]
    # MLflow's aliases: `run name` (any of its spellings) and Created
    assert n("`run name` = 'r2'") == n("attributes.`Run Name` LIKE 'r2'") == ["r2"]
    assert n("Created <= 2000") == n("attributes.Created <= 2000") == ["r2", "r1"]
    assert _names(t, exp_id, None, order_by=["`Run name` DESC"])[:2] == ["r6", "r5"]
    assert n(f"attributes.run_id = '{ids['r3']}'") == ["r3"]
    assert n("tags.mlflow.runName = 'r4'") == ["r4"]
    assert n(
        "metrics.auc > 0.8 and params.model = 'lgbm' and tags.team LIKE 'ml%' "
        "and attributes.status = 'FINISHED'"
    ) == ["r1"]
    assert n("params.model = 'nothing'") == []
    other = t.create_experiment("other").experiment_id
    moved = t.create_run(other, run_name="o1").info.run_id
    t.log_metric(moved, "auc", 0.99)
    assert _names(t, exp_id, "metrics.auc > 0.98") == []
    both = t.search_runs([exp_id, other], "metrics.auc > 0.9")
    assert [r.info.run_name for r in both] == ["o1", "r4", "r1"]


def test_search_runs_order_by_and_pagination(
    t: TrackingService, searchable: tuple[str, dict[str, str]]
) -> None:
    exp_id, _ = searchable
    assert _names(t, exp_id, None, order_by=["metrics.auc DESC"]) == [
        "r4",
        "r1",
        "r6",
        "r2",
        "r5",
        "r3",
    ]
    assert _names(t, exp_id, None, order_by=["metrics.auc ASC"]) == [
        "r5",
        "r2",
        "r6",
        "r1",
        "r4",
        "r3",  # missing values last either way
    ]
    assert _names(t, exp_id, None, order_by=["attributes.start_time"]) == [
        "r1",
        "r2",
        "r3",
        "r4",
        "r5",
        "r6",
    ]
    assert _names(t, exp_id, None, order_by=["params.model", "metrics.auc DESC"]) == [
        "r1",
        "r6",
        "r2",
        "r5",
        "r4",
        "r3",
    ]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = t.search_runs(exp_id, order_by=["metrics.auc DESC"], max_results=4, page_token=token)
        seen += [r.info.run_name for r in page]
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    assert pages == 2 and seen == ["r4", "r1", "r6", "r2", "r5", "r3"]
    run = t.search_runs(exp_id, "attributes.run_name = 'r1'").items[0]
    assert run.params == {"model": "lgbm"} and run.metrics["auc"] == 0.91
    assert run.tags["team"] == "ml-core"
    with pytest.raises(InvalidInput, match="order_by"):
        t.search_runs(exp_id, order_by=["metrics.auc SIDEWAYS"])
    with pytest.raises(InvalidInput, match="order_by"):
        t.search_runs(exp_id, order_by=["attributes.nonsense"])
    # each metric key is a join of its own: a caller may not ask for thousands
    twenty = [f"metrics.m{i} DESC" for i in range(20)]
    assert len(t.search_runs(exp_id, order_by=twenty).items) == 6
    with pytest.raises(InvalidInput, match="at most 20") as many:
        t.search_runs(exp_id, order_by=[*twenty, "metrics.auc"])
    assert many.value.details == {"field": "order_by", "limit": 20}
    with pytest.raises(InvalidInput, match="max_results"):
        t.search_runs(exp_id, max_results=0)


MALFORMED_FILTERS = [
    ("metrics.auc >", 13),
    ("metrics.auc > 0.8 or params.x = 'a'", 18),
    ("foo.bar = 'x'", 0),
    ("metrics.auc = 'high'", 0),
    ("params.model = lgbm", 15),
    ("attributes.nonexistent = 'x'", 0),
    ("params.model = 'lgbm' and", 25),
    ("params.model = 'unterminated", 15),
    ("metrics.auc LIKE '0.%'", 0),
]


def test_malformed_filters_point_at_the_offending_token(t: TrackingService) -> None:
    exp_id = t.create_experiment("bad-filters").experiment_id
    for flt, position in MALFORMED_FILTERS:
        with pytest.raises(InvalidInput, match=f"position {position}") as err:
            t.search_runs(exp_id, flt)
        assert err.value.details["position"] == position, flt
        assert err.value.details["field"] == "filter"


# -- inputs and comparison ---------------------------------------------------------------------
def test_search_datasets_summarises_inputs_per_experiment(t: TrackingService) -> None:
    flights = DatasetInput(name="flights", digest="d1", context="train")
    weather = DatasetInput(name="weather", digest="d2")
    a = _new_run(t, "ds-a")
    t.log_inputs(a, [flights, weather])
    t.log_inputs(_new_run(t, "ds-a"), [flights])  # a second run: still one summary
    b = _new_run(t, "ds-b")
    t.log_inputs(b, [flights.model_copy(update={"context": "test"})])
    exp_a = t.get_experiment_by_name("ds-a").experiment_id
    exp_b = t.get_experiment_by_name("ds-b").experiment_id
    found = t.search_datasets([exp_a, exp_b, "no-such-experiment"])
    assert sorted((d.experiment_id == exp_a, d.name, d.digest, d.context) for d in found) == [
        (False, "flights", "d1", "test"),
        (True, "flights", "d1", "train"),
        (True, "weather", "d2", ""),
    ]
    assert t.search_datasets(["no-such-experiment"]) == []
    with pytest.raises(InvalidInput, match="at least one"):
        t.search_datasets([])
    with pytest.raises(InvalidInput, match="at most 20"):
        t.search_datasets([str(i) for i in range(21)])


def test_log_inputs_idempotent_with_context(t: TrackingService) -> None:
    run_id = _new_run(t)
    train = DatasetInput(
        name="flights",
        digest="abc123",
        source_type="local",
        source="/data/flights.parquet",
        schema='{"cols": ["dep_delay"]}',
        context="train",
        tags={"rows": "1000"},
    )
    t.log_inputs(run_id, [train])
    t.log_inputs(run_id, [train])  # idempotent
    t.log_inputs(run_id, [train.model_copy(update={"context": "validation"})])
    inputs = t.get_run(run_id).inputs
    assert [(d.name, d.digest, d.context) for d in inputs] == [
        ("flights", "abc123", "train"),
        ("flights", "abc123", "validation"),
    ]
    assert inputs[0].schema_ == '{"cols": ["dep_delay"]}'
    assert inputs[0].source == "/data/flights.parquet" and inputs[0].tags == {"rows": "1000"}
    assert [
        r.run_id
        for r in t.search_runs(
            t.get_run(run_id).info.experiment_id, "datasets.context = 'validation'"
        )
    ] == [run_id]
    with pytest.raises(InvalidInput, match="digest"):
        t.log_inputs(run_id, [DatasetInput(name="x", digest="")])
    with pytest.raises(NotFound, match="ghost-run"):
        t.log_inputs("ghost-run", [train])


def test_compare_runs_dataframe(t: TrackingService, searchable: tuple[str, dict[str, str]]) -> None:
    exp_id, ids = searchable
    frame = t.compare_runs(exp_id, "params.model = 'lgbm'", order_by=["metrics.auc DESC"])
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["run_name"]) == ["r1", "r6", "r2"]
    assert list(frame["run_id"]) == [ids["r1"], ids["r6"], ids["r2"]]
    assert list(frame.columns[:5]) == [
        "run_id",
        "run_name",
        "experiment_id",
        "status",
        "start_time",
    ]
    assert {"params.model", "metrics.auc", "metrics.my metric"} <= set(frame.columns)
    assert list(frame["metrics.auc"]) == [0.91, 0.85, 0.75]
    assert list(frame["status"]) == ["FINISHED", "KILLED", "FINISHED"]
    assert frame["start_time"].iloc[0] == pd.Timestamp(1000, unit="ms", tz="UTC")
    assert t.compare_runs(exp_id, "params.model = 'none'").empty


def test_search_and_compare_take_names_and_fail_loudly(
    t: TrackingService, searchable: tuple[str, dict[str, str]]
) -> None:
    exp_id, ids = searchable
    name = t.get_experiment(exp_id).name
    by_id = [r.info.run_id for r in t.search_runs(exp_id)]
    assert [r.info.run_id for r in t.search_runs(name)] == by_id
    assert [r.info.run_id for r in t.search_runs([name, exp_id])] == by_id  # once each
    for missing in ("no-such-experiment", "999999"):
        with pytest.raises(NotFound, match=missing):
            t.search_runs([exp_id, missing])
        with pytest.raises(NotFound, match=missing):
            t.compare_runs(missing)
    frame = t.compare_runs(name, "params.model = 'lgbm'", order_by=["metrics.auc DESC"])
    assert list(frame["run_name"]) == ["r1", "r6", "r2"]

    # run ids, like the CLI: their order is kept unless order_by says otherwise
    picked = t.compare_runs(run_ids=[ids["r2"], ids["r1"], ids["r6"]])
    assert list(picked["run_name"]) == ["r2", "r1", "r6"]
    assert list(picked["metrics.auc"]) == [0.75, 0.91, 0.85]
    ordered = t.compare_runs(run_ids=[ids["r2"], ids["r1"]], order_by=["metrics.auc DESC"])
    assert list(ordered["run_name"]) == ["r1", "r2"]
    narrowed = t.compare_runs(run_ids=[ids["r4"], ids["r2"], ids["r1"]], filter="metrics.auc > 0.9")
    assert list(narrowed["run_name"]) == ["r4", "r1"]
    with pytest.raises(NotFound, match="0" * 32):
        t.compare_runs(run_ids=[ids["r1"], "0" * 32])
    with pytest.raises(InvalidInput, match="experiment_ids"):
        t.compare_runs()


# -- artifacts ---------------------------------------------------------------------------------
def test_artifacts_upload_list_download(t: TrackingService, tmp_path: Path) -> None:
    run_id = _new_run(t)
    assert t.list_artifacts(run_id) == []
    empty = t.download_artifacts(run_id, "", tmp_path / "empty")
    assert empty == tmp_path / "empty" and empty.is_dir() and list(empty.iterdir()) == []
    single = tmp_path / "report.txt"
    single.write_text("hello")
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "MLmodel").write_text("flavor: sklearn")
    big = os.urandom(3 * 1024 * 1024 + 7)  # several upload chunks
    (src / "sub" / "weights.bin").write_bytes(big)

    info = t.log_artifact(run_id, single)
    assert (info.path, info.is_dir, info.file_size) == ("report.txt", False, 5)
    assert t.log_artifact(run_id, single, "docs").path == "docs/report.txt"
    logged = t.log_artifacts(run_id, src, "model")
    assert [f.path for f in logged] == ["model/MLmodel", "model/sub/weights.bin"]
    streamed = t.log_artifact_stream(run_id, "raw/data.csv", io.BytesIO(b"a,b\n1,2\n"))
    assert streamed.file_size == 8

    root = t.list_artifacts(run_id)
    assert [(f.path, f.is_dir) for f in root] == [
        ("docs", True),
        ("model", True),
        ("raw", True),
        ("report.txt", False),
    ]
    assert [(f.path, f.file_size) for f in t.list_artifacts(run_id, "model/sub")] == [
        ("model/sub/weights.bin", len(big))
    ]
    assert [f.path for f in t.list_artifacts(run_id, "model")] == ["model/MLmodel", "model/sub"]

    dst = tmp_path / "dl"
    got = t.download_artifacts(run_id, "model", dst)
    assert got == dst / "model"
    assert (got / "sub" / "weights.bin").read_bytes() == big
    assert (got / "MLmodel").read_text() == "flavor: sklearn"
    one = t.download_artifacts(run_id, "docs/report.txt", dst)
    assert one == dst / "docs" / "report.txt" and one.read_text() == "hello"
    everything = t.download_artifacts(run_id, "", tmp_path / "all")
    assert sorted(
        p.relative_to(everything).as_posix() for p in everything.rglob("*") if p.is_file()
    ) == ["docs/report.txt", "model/MLmodel", "model/sub/weights.bin", "raw/data.csv", "report.txt"]
    for absent in ("absent.txt", "model/absent.txt", "no-dir/absent.txt"):
        with pytest.raises(NotFound, match=run_id) as err:
            t.download_artifacts(run_id, absent, dst)
        assert absent in err.value.message
        assert str(tmp_path) not in err.value.message  # no store paths in messages
    with pytest.raises(NotFound, match="absent-dir"):
        t.list_artifacts(run_id, "absent-dir")
    with pytest.raises(NotFound, match="ghost-run"):
        t.list_artifacts("ghost-run")
    with pytest.raises(NotFound, match="ghost-run"):
        t.log_artifact(run_id="ghost-run", local_path=single)


def test_artifact_digest_is_checked_on_download(
    client: Client, t: TrackingService, tmp_path: Path
) -> None:
    run = t.get_run(_new_run(t))
    t.log_artifact_stream(run.run_id, "d/model.pkl", io.BytesIO(b"0123456789" * 1000))
    stored_root = Path(client.settings.artifact_uri)
    rel = run.info.artifact_uri.split(":/", 1)[1].strip("/")
    stored = stored_root / rel / "d" / "model.pkl"
    assert stored.read_bytes() == b"0123456789" * 1000
    stored.write_bytes(b"X123456789" + b"0123456789" * 999)  # same size, flipped byte

    dst = tmp_path / "dl"
    with pytest.raises(DigestMismatch, match=r"model\.pkl"):
        t.download_artifacts(run.run_id, "d/model.pkl", dst)
    assert not (dst / "d" / "model.pkl").exists()
    with pytest.raises(DigestMismatch):
        t.download_artifacts(run.run_id, "d", dst)
    assert not (dst / "d" / "model.pkl").exists()


def test_artifact_path_traversal_is_rejected(t: TrackingService, tmp_path: Path) -> None:
    run_id = _new_run(t)
    dst = tmp_path / "dst"
    for bad in ("../evil.txt", "a/../../evil.txt", "/etc/passwd", "a\\b"):
        with pytest.raises(InvalidInput, match="artifact path"):
            t.log_artifact_stream(run_id, bad, io.BytesIO(b"x"))
        with pytest.raises(InvalidInput, match="artifact path"):
            t.list_artifacts(run_id, bad)
        with pytest.raises(InvalidInput, match="artifact path"):
            t.download_artifacts(run_id, bad, dst)
    assert t.list_artifacts(run_id) == []
    assert not (tmp_path / "evil.txt").exists()


def test_logging_to_a_deleted_run_is_refused_for_artifacts_and_inputs(
    t: TrackingService,
) -> None:
    run_id = _new_run(t)
    t.delete_run(run_id)
    with pytest.raises(Conflict, match="deleted"):
        t.log_artifact_stream(run_id, "x.txt", io.BytesIO(b"x"))
    with pytest.raises(Conflict, match="deleted"):
        t.log_inputs(run_id, [DatasetInput(name="d", digest="1")])
    with pytest.raises(Conflict, match="deleted"):
        t.set_tag(run_id, "k", "v")


def test_open_artifact_gives_info_digest_and_bytes(t: TrackingService) -> None:
    run_id = _new_run(t)
    payload = b"weights" * 1000
    t.log_artifact_stream(run_id, "m/model.bin", io.BytesIO(payload))
    info, sha256, reader = t.open_artifact(run_id, "m/model.bin")
    with reader:
        assert reader.read() == payload
    assert (info.path, info.is_dir, info.file_size) == ("m/model.bin", False, len(payload))
    assert sha256 == hashlib.sha256(payload).hexdigest()
    with pytest.raises(NotFound, match=r"m/other\.bin"):
        t.open_artifact(run_id, "m/other.bin")
    with pytest.raises(InvalidInput, match="directory"):
        t.open_artifact(run_id, "m")


def test_list_input_uses_joins_runs_and_inputs(t: TrackingService) -> None:
    first = _new_run(t, "uses-a", run_name="first", start_time=1_000)
    second = _new_run(t, "uses-b", run_name="second", start_time=2_000)
    other = _new_run(t, "uses-a", run_name="other", start_time=3_000)
    t.log_inputs(first, [DatasetInput(name="trips", digest="d1", context="train")])
    t.log_inputs(first, [DatasetInput(name="trips", digest="d1", context="eval")])
    t.log_inputs(second, [DatasetInput(name="trips", digest="d1", context="test")])
    t.log_inputs(other, [DatasetInput(name="fares", digest="d1", context="train")])
    t.delete_run(second)  # deleted runs still used the data
    uses = t.list_input_uses([("trips", "d1"), ("trips", "missing")])
    assert [(u.run.run_name, u.name, u.context) for u in uses] == [
        ("first", "trips", "eval"),
        ("first", "trips", "train"),
        ("second", "trips", "test"),
    ]
    assert uses[2].run.experiment_id == t.get_run(second).info.experiment_id
    assert t.list_input_uses([]) == []
    err = _exactly_invalid(t.list_input_uses, [("n", str(i)) for i in range(1001)])
    assert "at most 1000" in err.message


def _exactly_invalid(fn: object, *args: object) -> InvalidInput:
    assert callable(fn)
    with pytest.raises(InvalidInput) as info:
        fn(*args)
    assert type(info.value) is InvalidInput
    return info.value


# -- logged models (MLflow 3) ------------------------------------------------------------------
def _exactly(cls: type[Exception], fn: object, *args: object, **kw: object) -> Exception:
    assert callable(fn)
    with pytest.raises(Exception) as info:
        fn(*args, **kw)
    assert type(info.value) is cls, f"{type(info.value).__name__}: {info.value}"
    return info.value


def test_logged_model_create_get_update_tags_params_delete(t: TrackingService) -> None:
    run_id = _new_run(t, "models")
    exp = t.get_experiment_by_name("models")
    model = t.create_logged_model(
        exp.experiment_id,
        name="ranker",
        source_run_id=run_id,
        model_type="agent",
        params={"depth": "6"},
        tags={"stage": "dev"},
    )
    assert model.status is LoggedModelStatus.PENDING
    assert model.artifact_location == (
        f"{exp.artifact_location.rstrip('/')}/models/{model.model_id}/artifacts"
    )
    assert (model.name, model.source_run_id, model.model_type) == ("ranker", run_id, "agent")
    assert model.params == {"depth": "6"} and model.tags == {"stage": "dev"}
    assert model.lifecycle_stage is LifecycleStage.ACTIVE and model.creator
    assert t.get_logged_model(model.model_id) == model
    unnamed = t.create_logged_model(exp.experiment_id)
    assert unnamed.name == f"model-{unnamed.model_id[-8:]}"

    ready = t.update_logged_model(model.model_id, status="READY", status_message="uploaded")
    assert ready.status is LoggedModelStatus.READY and ready.status_message == "uploaded"
    assert ready.last_update_time >= model.last_update_time
    assert t.finalize_logged_model(model.model_id, "UPLOAD_FAILED").status.value == (
        "UPLOAD_FAILED"
    )
    err = _exactly(InvalidInput, t.update_logged_model, model.model_id, status="DONE")
    assert "DONE" in str(err) and "READY" in str(err)

    t.set_logged_model_tags(model.model_id, {"owner": "me", "stage": "prod"})
    t.delete_logged_model_tag(model.model_id, "owner")
    assert t.get_logged_model(model.model_id).tags == {"stage": "prod"}
    _exactly(NotFound, t.delete_logged_model_tag, model.model_id, "owner")

    t.log_model_params(model.model_id, {"lr": "0.1", "depth": "6"})  # same value again: fine
    assert t.get_logged_model(model.model_id).params == {"depth": "6", "lr": "0.1"}
    err = _exactly(Conflict, t.log_model_params, model.model_id, {"lr": "0.2", "new": "x"})
    assert "0.1" in str(err) and "0.2" in str(err)
    assert "new" not in t.get_logged_model(model.model_id).params  # nothing written

    t.delete_logged_model(model.model_id)
    err = _exactly(NotFound, t.get_logged_model, model.model_id)
    assert model.model_id in str(err)
    gone = t.get_logged_model(model.model_id, allow_deleted=True)
    assert gone.lifecycle_stage is LifecycleStage.DELETED
    _exactly(NotFound, t.set_logged_model_tags, model.model_id, {"k": "v"})


def test_logged_model_bad_input_and_unknown_ids(t: TrackingService) -> None:
    exp_id = t.create_experiment("models-bad").experiment_id
    err = _exactly(NotFound, t.create_logged_model, "no-such-exp")
    assert "no-such-exp" in str(err)
    _exactly(NotFound, t.create_logged_model, exp_id, source_run_id="no-such-run")
    for bad in ("", "a/b", "x" * 501):
        err = _exactly(InvalidInput, t.create_logged_model, exp_id, name=bad)
        assert err.details["field"] == "name"  # type: ignore[attr-defined]
    err = _exactly(InvalidInput, t.create_logged_model, exp_id, params={"k" * 251: "v"})
    assert err.details["field"] == "param.key"  # type: ignore[attr-defined]
    _exactly(NotFound, t.get_logged_model, "m-missing")
    t.delete_experiment(exp_id)
    err = _exactly(InvalidInput, t.create_logged_model, exp_id, name="late")
    assert "deleted" in str(err)
    assert t.search_logged_models([exp_id]).items == []  # the refused model was not written


def test_logged_model_metrics_and_run_links(t: TrackingService) -> None:
    run_id = _new_run(t, "models-links")
    exp_id = t.get_run(run_id).info.experiment_id
    a = t.create_logged_model(exp_id, name="a").model_id
    b = t.create_logged_model(exp_id, name="b").model_id
    t.log_model_metrics(
        [
            ModelMetric(model_id=a, key="acc", value=0.9, timestamp=1, step=1, run_id=run_id),
            ModelMetric(model_id=a, key="loss", value=math.nan, timestamp=2, dataset_name="d"),
            ModelMetric(model_id=b, key="acc", value=-math.inf, timestamp=3, dataset_digest="x"),
        ]
    )
    got = t.get_logged_model(a).metrics
    assert [(m.key, m.step, m.run_id, m.dataset_name) for m in got] == [
        ("acc", 1, run_id, None),
        ("loss", 0, None, "d"),
    ]
    assert got[0].value == 0.9 and math.isnan(got[1].value)
    assert t.get_logged_model(b).metrics[0].value == -math.inf
    bad = [
        ModelMetric(model_id=a, key="acc", value=1.0, timestamp=4),
        ModelMetric(model_id="m-ghost", key="acc", value=1.0, timestamp=4),
    ]
    _exactly(NotFound, t.log_model_metrics, bad)
    assert len(t.get_logged_model(a).metrics) == 2  # nothing written

    t.log_run_models(run_id, "output", [(a, 3)])
    t.log_run_models(run_id, ModelDirection.OUTPUT, [(a, 5), (b, 1)])  # again: step updated
    t.log_run_models(run_id, "input", [(b, 0)])
    links = t.list_run_models([run_id, "unknown-run"])
    assert list(links) == [run_id]
    assert links[run_id].inputs == [b]
    assert links[run_id].outputs == [(a, 5), (b, 1)]
    assert t.list_run_models([]) == {}
    _exactly(NotFound, t.log_run_models, run_id, "input", [("m-ghost", 0)])
    _exactly(NotFound, t.log_run_models, "ghost-run", "input", [(a, 0)])
    err = _exactly(InvalidInput, t.log_run_models, run_id, "sideways", [(a, 0)])
    assert "sideways" in str(err)
    assert t.list_run_models([run_id])[run_id].inputs == [b]


def test_search_logged_models_filter_order_and_pages(t: TrackingService) -> None:
    exp_id = t.create_experiment("models-search").experiment_id
    other = t.create_experiment("models-other").experiment_id
    ids = {}
    for i, name in enumerate(["c", "a", "b"]):
        model = t.create_logged_model(
            exp_id, name=name, params={"lr": f"0.{i}"}, tags={"team": "ml" if i else "data"}
        )
        ids[name] = model.model_id
        t.log_model_metrics(
            [ModelMetric(model_id=model.model_id, key="acc", value=0.5 + i / 10, timestamp=1)]
        )
    t.update_logged_model(ids["a"], status="READY")
    t.create_logged_model(other, name="elsewhere")
    deleted = t.create_logged_model(exp_id, name="gone").model_id
    t.delete_logged_model(deleted)

    def names(**kw: object) -> list[str]:
        return [m.name for m in t.search_logged_models([exp_id], **kw).items]  # type: ignore[arg-type]

    assert names() == ["b", "a", "c"]  # newest first, deleted ones left out
    assert names(order_by=[("name", True)]) == ["a", "b", "c"]
    assert names(order_by=[("attributes.name", False)]) == ["c", "b", "a"]
    assert names(filter="metrics.acc > 0.55") == ["b", "a"]
    assert names(filter="params.lr = '0.2' and tags.team = 'ml'") == ["b"]
    assert names(filter="tags.team LIKE 'd%'") == ["c"]
    assert names(filter="status = 'LOGGED_MODEL_READY'") == ["a"]
    assert names(filter="attributes.status = 'READY'") == ["a"]
    assert names(filter="name IN ('a', 'c')", order_by=[("name", True)]) == ["a", "c"]
    with pytest.raises(InvalidInput, match="at most 20"):
        names(order_by=[(f"metrics.m{i}", True) for i in range(21)])
    t.set_logged_model_tags(ids["a"], {"owner": "me"})
    assert names(filter="tags.owner IS NULL") == ["b", "c"]
    assert names(filter="tags.owner IS NOT NULL") == ["a"]
    assert names(filter=f"creation_timestamp > 0 and model_id != '{ids['c']}'") == ["b", "a"]
    both = t.search_logged_models([exp_id, other], order_by=[("name", True)]).items
    assert [m.name for m in both] == ["a", "b", "c", "elsewhere"]

    page1 = t.search_logged_models([exp_id], max_results=2)
    assert [m.name for m in page1.items] == ["b", "a"] and page1.next_page_token
    page2 = t.search_logged_models([exp_id], max_results=2, page_token=page1.next_page_token)
    assert [m.name for m in page2.items] == ["c"] and page2.next_page_token is None
    # the page token is the one runs use
    runs_token = t.search_runs("models-search", max_results=1, page_token=None).next_page_token
    assert runs_token is None or runs_token.isascii()

    err = _exactly(InvalidInput, t.search_logged_models, [exp_id], filter="name ==== 'x'")
    assert "position" in str(err)
    err = _exactly(InvalidInput, t.search_logged_models, [exp_id], filter="attributes.bogus = 'x'")
    assert "logged model attribute" in str(err)
    _exactly(InvalidInput, t.search_logged_models, [exp_id], filter="metrics.acc LIKE 'x'")
    _exactly(InvalidInput, t.search_logged_models, [exp_id], order_by=[("color", True)])
    _exactly(InvalidInput, t.search_logged_models, [exp_id], max_results=0)
    _exactly(InvalidInput, t.search_logged_models, [exp_id], max_results=1001)
    _exactly(InvalidInput, t.search_logged_models, [exp_id], page_token="not-a-token")


def test_search_logged_models_by_metric_and_dataset(t: TrackingService) -> None:
    """Ordered by each model's latest point of a metric (on one dataset when named; models
    without one last, either way), and limited to models with points on given datasets."""
    exp_id = t.create_experiment("models-by-metric").experiment_id
    ids = {n: t.create_logged_model(exp_id, name=n).model_id for n in ("p", "q", "r", "s")}

    def point(name: str, value: float, ts: int, dataset: str, digest: str = "d1") -> ModelMetric:
        return ModelMetric(
            model_id=ids[name],
            key="acc",
            value=value,
            timestamp=ts,
            dataset_name=dataset,
            dataset_digest=digest,
        )

    t.log_model_metrics(
        [
            point("p", 0.9, 1, "A"),
            point("p", 0.1, 5, "B"),  # p's latest point overall
            point("q", 0.5, 1, "A"),
            point("r", 0.7, 1, "B", "d2"),
        ]
    )

    def names(**kw: object) -> list[str]:
        return [m.name for m in t.search_logged_models([exp_id], **kw).items]  # type: ignore[arg-type]

    assert names(order_by=[ModelOrder("metrics.acc", False)]) == ["r", "q", "p", "s"]
    assert names(order_by=[ModelOrder("metrics.acc", True)]) == ["p", "q", "r", "s"]
    on_a = ModelOrder("metrics.acc", False, dataset_name="A")
    assert names(order_by=[on_a]) == ["p", "q", "s", "r"]  # no point on A: last, newest first
    assert names(datasets=[DatasetRef("B")]) == ["r", "p"]
    assert names(datasets=[DatasetRef("B", "d2")]) == ["r"]
    assert names(filter="metrics.acc > 0.6", datasets=[DatasetRef("A")]) == ["p"]
    assert names(filter="metrics.acc > 0.6") == ["r", "p"]


def test_logged_model_artifacts_are_uploaded_below_its_root(
    client: Client, t: TrackingService
) -> None:
    exp_id = t.create_experiment("models-artifacts").experiment_id
    model = t.create_logged_model(exp_id, name="m")
    payload = os.urandom(2 * 1024 * 1024 + 3)
    info = t.log_model_artifact_stream(model.model_id, "sub/weights.bin", io.BytesIO(payload))
    assert (info.path, info.is_dir, info.file_size) == ("sub/weights.bin", False, len(payload))
    rel = model.artifact_location.split(":/", 1)[1].strip("/")
    stored = Path(client.settings.artifact_uri) / rel / "sub" / "weights.bin"
    assert stored.read_bytes() == payload
    for bad in ("../evil.bin", "/etc/passwd"):
        _exactly(InvalidInput, t.log_model_artifact_stream, model.model_id, bad, io.BytesIO(b"x"))
    _exactly(NotFound, t.log_model_artifact_stream, "m-ghost", "x.bin", io.BytesIO(b"x"))
    elsewhere = t.create_experiment("models-s3", artifact_location="s3://bucket/x").experiment_id
    outside = t.create_logged_model(elsewhere).model_id
    err = _exactly(InvalidInput, t.log_model_artifact_stream, outside, "x.bin", io.BytesIO(b"x"))
    assert "s3://bucket/x" in str(err)


def test_model_artifacts_list_open_delete(t: TrackingService) -> None:
    exp_id = t.create_experiment("models-files").experiment_id
    model_id = t.create_logged_model(exp_id, name="m").model_id
    assert t.list_model_artifacts(model_id) == []
    payload = b"weights" * 5000
    t.log_model_artifact_stream(model_id, "MLmodel", io.BytesIO(b"flavors: {}"))
    t.log_model_artifact_stream(model_id, "data/model.bin", io.BytesIO(payload))
    assert [(f.path, f.is_dir) for f in t.list_model_artifacts(model_id)] == [
        ("MLmodel", False),
        ("data", True),
    ]
    assert [(f.path, f.file_size) for f in t.list_model_artifacts(model_id, "data")] == [
        ("data/model.bin", len(payload))
    ]
    info, sha256, reader = t.open_model_artifact(model_id, "data/model.bin")
    with reader:
        assert reader.read() == payload
    assert (info.path, info.file_size) == ("data/model.bin", len(payload))
    assert sha256 == hashlib.sha256(payload).hexdigest()
    err = _exactly(NotFound, t.open_model_artifact, model_id, "data/other.bin")
    assert "data/other.bin" in str(err) and model_id in str(err)
    _exactly(InvalidInput, t.open_model_artifact, model_id, "data")
    _exactly(NotFound, t.list_model_artifacts, model_id, "absent-dir")
    _exactly(NotFound, t.list_model_artifacts, "m-ghost")
    _exactly(InvalidInput, t.list_model_artifacts, model_id, "../escape")

    t.delete_model_artifact(model_id, "data")  # a directory goes with what is below it
    assert [f.path for f in t.list_model_artifacts(model_id)] == ["MLmodel"]
    err = _exactly(NotFound, t.delete_model_artifact, model_id, "data/model.bin")
    assert "data/model.bin" in str(err)
    _exactly(InvalidInput, t.delete_model_artifact, model_id, "../MLmodel")


def test_delete_run_artifact(t: TrackingService) -> None:
    run_id = _new_run(t)
    t.log_artifact_stream(run_id, "a/one.txt", io.BytesIO(b"1"))
    t.log_artifact_stream(run_id, "a/two.txt", io.BytesIO(b"2"))
    t.log_artifact_stream(run_id, "keep.txt", io.BytesIO(b"k"))
    t.delete_artifact(run_id, "a/one.txt")
    assert [f.path for f in t.list_artifacts(run_id, "a")] == ["a/two.txt"]
    t.delete_artifact(run_id, "a")
    assert [f.path for f in t.list_artifacts(run_id)] == ["keep.txt"]
    err = _exactly(NotFound, t.delete_artifact, run_id, "a/two.txt")
    assert run_id in str(err) and "a/two.txt" in str(err)
    _exactly(NotFound, t.delete_artifact, "ghost-run", "keep.txt")
    for bad in ("../keep.txt", "/etc/passwd"):
        _exactly(InvalidInput, t.delete_artifact, run_id, bad)
    assert [f.path for f in t.list_artifacts(run_id)] == ["keep.txt"]
