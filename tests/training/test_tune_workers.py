"""strata.tune's workers: no trial beyond the budget, stale trials of dead processes only,
the spawned worker's fast exit, the Optuna SQLite file in WAL mode."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from strata.client import Client
from strata.models.flavors.sklearn import share_package_index
from strata.training import tune as T

from .test_tune import children, tune_config


def _study(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=T.default_storage())


def _dead_owner() -> str:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.dumps({"host": socket.gethostname(), "pid": int(proc.stdout), "started": 1})


def test_a_worker_trains_no_trial_beyond_the_budget(home_client: Client, flights: str) -> None:
    first = T.tune(tune_config(), trials=2, client=home_client, study="budget")
    st = _study("budget")
    st.ask()  # another worker's trial, running: it will finish, so it counts
    raw = T.load_config(tune_config()).model_dump(mode="json", exclude_unset=True)
    ran = T.run_worker(raw, T.default_storage(), "budget", 4, 1, home_client)
    # 2 finished + 1 running + 1 = 4 (Optuna's MaxTrialsCallback would have trained 2)
    assert ran == 1
    states = [t.state for t in _study("budget").trials]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.RUNNING) == 1
    assert len(children(home_client, first.parent_run_id)) == 3


def test_a_trial_asked_after_the_last_was_claimed_is_not_trained(
    home_client: Client, flights: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = T.tune(tune_config(), trials=2, client=home_client, study="race")
    real = T._claimed
    calls: list[int | None] = []

    def racing(study: optuna.Study, before: int | None = None) -> int:
        calls.append(before)
        seen = real(study, before)
        if len(calls) == 1:  # the worker's check saw one trial left, which another worker
            _study("race").ask()  # asks for right after it
        return seen

    monkeypatch.setattr(T, "_claimed", racing)
    raw = T.load_config(tune_config()).model_dump(mode="json", exclude_unset=True)
    assert T.run_worker(raw, T.default_storage(), "race", 3, 1, home_client) == 0
    trials = _study("race").trials
    assert [t.state for t in trials[2:]] == [TrialState.RUNNING, TrialState.FAIL]
    assert len(children(home_client, first.parent_run_id)) == 2  # nothing trained for it


def test_trials_of_dead_processes_or_of_silent_machines_are_run_again(
    home_client: Client, flights: str
) -> None:
    T.tune(tune_config(), trials=1, client=home_client, study="stale")
    st = _study("stale")
    dead, foreign, unowned, silent = st.ask(), st.ask(), st.ask(), st.ask()
    dead.set_user_attr(T.ATTR_OWNER, _dead_owner())
    elsewhere = json.dumps({"host": "another-machine", "pid": 1, "started": 1})
    foreign.set_user_attr(T.ATTR_OWNER, elsewhere)
    silent.set_user_attr(T.ATTR_OWNER, elsewhere)
    beating = T._storage(T.default_storage(), set_up=False)
    beating.record_heartbeat(foreign._trial_id)  # its machine is alive
    beating.record_heartbeat(silent._trial_id)  # ...and this one's stopped an hour ago
    with sqlite3.connect(T.default_storage().removeprefix("sqlite:///")) as raw:
        raw.execute(
            "UPDATE trial_heartbeats SET heartbeat = datetime('now', '-1 hour') WHERE trial_id = ?",
            (silent._trial_id,),
        )
        raw.execute(  # asked for an hour ago and still no owner: its process died then
            "UPDATE trials SET datetime_start = datetime('now', 'localtime', '-1 hour') "
            "WHERE trial_id = ?",
            (unowned._trial_id,),
        )
    result = T.tune(tune_config(), trials=3, client=home_client, study="stale")
    states = {t.number: t.state for t in _study("stale").trials}
    assert states[dead.number] == states[unowned.number] == TrialState.FAIL
    assert states[silent.number] == TrialState.FAIL  # silent past the grace period
    assert states[foreign.number] == TrialState.RUNNING  # that machine is still on it
    # 1 + 1 new finished, and the other machine's running one makes 3
    assert result.trials == 2 and list(states.values()).count(TrialState.COMPLETE) == 2


def test_a_trial_asked_for_just_now_without_an_owner_yet_is_left_running(
    home_client: Client, flights: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another launcher's trial between its ask and its owner being recorded (a loaded
    machine: CI once failed it here, and its launcher then died on "Cannot tell a FAIL
    trial") is not taken for a dead one; past OWNERLESS_GRACE_S it is."""
    T.tune(tune_config(), trials=1, client=home_client, study="starting")
    starting = _study("starting").ask()
    T.tune(tune_config(), trials=1, client=home_client, study="starting")  # a resume
    states = {t.number: t.state for t in _study("starting").trials}
    assert states[starting.number] == TrialState.RUNNING
    monkeypatch.setattr(T, "OWNERLESS_GRACE_S", 0.0)
    T.tune(tune_config(), trials=1, client=home_client, study="starting")
    states = {t.number: t.state for t in _study("starting").trials}
    assert states[starting.number] == TrialState.FAIL


KILLED_AFTER_ASK = """
import os, signal, optuna
from strata.training import tune as T
study = optuna.load_study(study_name="asked", storage=T._storage(T.default_storage(), set_up=False))
study.ask()
os.kill(os.getpid(), signal.SIGKILL)  # before an objective could record anything
"""


def test_a_launcher_killed_right_after_its_ask_leaves_a_trial_a_resume_runs_again(
    home_client: Client, flights: str
) -> None:
    """Killed between Optuna's ask and the objective's first line (CI once: the resumed
    study finished one trial short, the dead launcher's trial counted as running): Strata's
    storage creates an asked-for trial with its owner, so a resume knows its process gone."""
    T.tune(tune_config(), trials=1, client=home_client, study="asked")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_AFTER_ASK], stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    (orphan,) = [t for t in _study("asked").trials if t.state == TrialState.RUNNING]
    assert json.loads(orphan.user_attrs[T.ATTR_OWNER])["pid"] == proc.pid
    result = T.tune(tune_config(), trials=3, client=home_client, study="asked")
    assert result.trials == 3  # its budget ran again
    states = {t.number: t.state for t in _study("asked").trials}
    assert states[orphan.number] == TrialState.FAIL
    assert list(states.values()).count(TrialState.COMPLETE) == 3


def test_the_spawned_worker_exits_fast_with_everything_written(
    home_client: Client, flights: str
) -> None:
    first = T.tune(tune_config(), trials=1, client=home_client, study="spawned")
    raw = T.load_config(tune_config()).model_dump(mode="json", exclude_unset=True)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    ready.set()
    proc = ctx.Process(
        target=T._spawned_worker,
        args=(raw, T.default_storage(), "spawned", 3, 1),
        kwargs={"ready": ready, "package_index": share_package_index()},
    )
    proc.start()
    proc.join(300)
    assert proc.exitcode == 0
    kids = [
        k
        for k in children(home_client, first.parent_run_id)
        if k.tags.get("strata.tune.worker") == "1"
    ]
    assert len(kids) == 2 and all(k.info.status == "FINISHED" for k in kids)
    for kid in kids:
        assert "cv_roc_auc_mean" in kid.metrics and "cv_roc_auc" in kid.metrics
        files = {f.path for f in home_client.tracking.list_artifacts(kid.info.run_id, "model")}
        assert {"model/model.skops", "model/strata-model.yaml"} <= files
    owners = {json.loads(t.user_attrs[T.ATTR_OWNER])["pid"] for t in _study("spawned").trials}
    assert proc.pid in owners


def test_the_optuna_sqlite_file_is_in_wal_mode(home_client: Client, flights: str) -> None:
    T.tune(tune_config(), trials=1, client=home_client, study="wal")
    path = T.default_storage().removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        mode: Any = conn.execute("PRAGMA journal_mode").fetchone()
    assert mode[0] == "wal"


def test_workers_refuse_a_client_they_could_not_track_to(
    home_client: Client, flights: str, tmp_path: Any
) -> None:
    from strata.core.config import load_settings
    from strata.core.errors import InvalidInput

    elsewhere = Client(settings=load_settings(home=tmp_path / "other-home"))
    try:
        with pytest.raises(InvalidInput, match="workers=2: the other workers are processes"):
            T.tune(tune_config(), trials=2, workers=2, client=elsewhere, study="where")
        with pytest.raises(KeyError):
            _study("where")  # refused before anything ran
        # this environment's own client is fine
        assert T.tune(tune_config(), trials=2, workers=2, client=home_client).trials == 2
    finally:
        elsewhere.close()


@pytest.mark.slow
def test_two_launchers_share_one_study_as_on_two_machines(
    db_uri: str, monkeypatch: pytest.MonkeyPatch, flights_sample: Any, tmp_path: Any
) -> None:
    """``strata tune`` twice on one study and one metadata database (SQLite, then
    PostgreSQL with Optuna's schema beside Strata's): the second launcher finds the first's
    running trial alive and leaves it; together they finish the budget once."""
    import os
    import time

    from .conftest import write_config

    monkeypatch.setenv("STRATA_DB_URI", db_uri)
    with Client() as client:
        client.data.ingest(flights_sample, "flights")
    path = write_config(tmp_path / "tune.yaml", tune_config())
    name = f"shared-{os.getpid()}"
    cmd = [
        str(Path(sys.executable).parent / "strata"),
        "tune",
        str(path),
        "--trials",
        "6",
        "--study",
        name,
        "--json",
    ]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Wait for the first launcher's running trial by reading Optuna's tables: opening them
    # through Optuna here would create them, racing the launcher's own creation of them.
    import sqlalchemy as sa

    running = sa.text(
        "SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "WHERE s.study_name = :name AND t.state = 'RUNNING'"
    )
    engine = sa.create_engine(T.default_storage())
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and first.poll() is None:
            with contextlib.suppress(sa.exc.DBAPIError), engine.connect() as conn:
                if conn.execute(running, {"name": name}).scalar():
                    break  # (no tables or no study yet: look again)
            time.sleep(0.1)
    finally:
        engine.dispose()
    second = subprocess.run(cmd, capture_output=True, timeout=300)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err.decode()[-2000:]
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    states = [t.state for t in _study(name).trials]
    assert states.count(TrialState.COMPLETE) == 6 and TrialState.RUNNING not in states
    parent = json.loads(out)["parent_run_id"]
    assert json.loads(second.stdout)["parent_run_id"] == parent  # one study, one parent run
    with Client() as client:
        kids = children(client, parent)
    assert len([k for k in kids if k.info.status == "FINISHED"]) == 6


def test_optunas_schema_on_postgresql_is_alone_on_its_search_path() -> None:
    """Optuna finds its Alembic table by the search path: with Strata's schema on it, it
    found Strata's and refused to start; a pinned schema X gets X_optuna beside it."""
    from strata.training.study import optuna_pg_url

    base = "postgresql+psycopg://u:p%40ss@h/db"
    assert optuna_pg_url(base) == (f"{base}?options=-csearch_path%3Dstrata_optuna", "strata_optuna")
    pinned = f"{base}?options=-c%20statement_timeout%3D5000%20-csearch_path%3Dmine,public&x=1"
    url, schema = optuna_pg_url(pinned)
    assert schema == "mine_optuna" and "search_path%3Dmine_optuna&" in url
    assert "statement_timeout%3D5000" in url and "public" not in url and "p%40ss@" in url
    evil = f"{base}?options=-csearch_path%3D%22x%22%3BDROP"  # never quoted into SQL as given
    assert optuna_pg_url(evil)[1] == "x_optuna"
