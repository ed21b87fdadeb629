"""The fluent API: buffered logging, run lifecycle, nested runs, errors, signals, remote mode."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import LiveServer, start_server

import strata
from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import Conflict, InvalidInput
from strata.tracking import fluent
from strata.tracking.models import DEFAULT_EXPERIMENT_ID, RunStatus
from strata.tracking.remote import RemoteTracking


def _reset() -> None:
    while fluent.active_run() is not None:
        try:
            fluent.end_run()
        except Exception:
            continue
    fluent._take_errors()
    fluent._experiment_name = None
    fluent._services.close_default()


@pytest.fixture
def emb(sqlite_settings: Settings) -> Iterator[Client]:
    """An embedded client; any run left active is ended before the client closes."""
    client = Client("", settings=sqlite_settings)
    yield client
    _reset()
    client.close()


@pytest.fixture
def remote(live_server: LiveServer) -> Iterator[Client]:
    client = live_server.client()
    yield client
    _reset()
    client.close()


@pytest.fixture(params=["embedded", "remote"])
def both(request: pytest.FixtureRequest, sqlite_settings: Settings) -> Iterator[Client]:
    """An embedded client, then a remote one (a live server on SQLite)."""
    if request.param == "embedded":
        client = Client("", settings=sqlite_settings)
        yield client
        _reset()
        client.close()
        return
    for live in start_server(sqlite_settings):
        client = live.client()
        yield client
        _reset()
        client.close()


def _history(client: Client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(p.step, p.value) for p in client.tracking.get_metric_history(run_id, key)]


def _log_everything(client: Client) -> str:
    with strata.start_run(
        experiment="flights", run_name="lgbm-1", tags={"team": "ml"}, client=client
    ) as run:
        assert strata.active_run() is run
        strata.log_param("model", "lgbm")
        strata.log_params({"lr": 0.1, "depth": 6})
        strata.log_param("model", "lgbm")  # same value again: fine
        for step in range(300):
            strata.log_metric("loss", 1.0 / (step + 1), step=step)
        strata.log_metrics({"auc": 0.91, "nan": math.nan, "inf": math.inf}, step=7)
        strata.set_tag("stage", "dev")
        strata.set_tags({"stage": "prod", "owner": "ana"})  # last value wins
    assert strata.active_run() is None
    return run.run_id


def _check_everything(client: Client, run_id: str) -> None:
    got = client.tracking.get_run(run_id)
    assert got.info.status is RunStatus.FINISHED
    assert got.info.end_time is not None
    assert got.info.run_name == "lgbm-1"
    assert client.tracking.get_experiment(got.info.experiment_id).name == "flights"
    assert got.params == {"model": "lgbm", "lr": "0.1", "depth": "6"}
    assert got.tags["team"] == "ml"
    assert got.tags["stage"] == "prod"
    assert got.tags["owner"] == "ana"
    assert got.metrics["auc"] == 0.91
    assert math.isnan(got.metrics["nan"])
    assert got.metrics["inf"] == math.inf
    history = _history(client, run_id, "loss")
    assert len(history) == 300
    assert history[0] == (0, 1.0)
    assert history[-1] == (299, 1.0 / 300)


def test_params_metrics_tags_arrive_embedded(emb: Client) -> None:
    run_id = _log_everything(emb)
    _check_everything(emb, run_id)
    assert fluent.dropped_points() == 0


def test_params_metrics_tags_arrive_remote(remote: Client) -> None:
    run_id = _log_everything(remote)
    _check_everything(remote, run_id)


def test_remote_mode_from_strata_uri_env(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATA_URI", live_server.url)
    monkeypatch.setenv("STRATA_TOKEN", live_server.admin_token)
    try:
        with strata.start_run(experiment="via-env") as run:
            assert isinstance(run.tracking, RemoteTracking)
            strata.log_metric("m", 1.5)
            strata.log_param("p", "x")
        got = live_server.embedded.tracking.get_run(run.run_id)
        assert got.metrics == {"m": 1.5}
        assert got.params == {"p": "x"}
    finally:
        _reset()


def test_default_experiment_and_set_experiment(emb: Client) -> None:
    with strata.start_run(client=emb) as run:
        pass
    assert run.experiment_id == DEFAULT_EXPERIMENT_ID
    exp_id = strata.set_experiment("churn", client=emb)
    assert emb.tracking.get_experiment(exp_id).name == "churn"
    with strata.start_run(client=emb) as run:
        pass
    assert run.experiment_id == exp_id
    assert strata.set_experiment("churn", client=emb) == exp_id  # existing: same id


def test_nested_runs_and_the_error_without_nested(both: Client) -> None:
    with strata.start_run(experiment="hpo", client=both) as parent:
        with pytest.raises(InvalidInput, match=r"already active.*nested=True"):
            strata.start_run(client=both)
        for trial in range(2):
            with strata.start_run(run_name=f"trial-{trial}", nested=True) as child:
                assert strata.active_run() is child
                strata.log_metric("score", trial)
            assert strata.active_run() is parent
        strata.log_metric("best", 1.0)
    runs = both.tracking.search_runs(parent.experiment_id).items
    infos = [r.info for r in runs if r.info.run_id != parent.run_id]
    assert sorted(i.run_name for i in infos) == ["trial-0", "trial-1"]
    assert {i.parent_run_id for i in infos} == {parent.run_id}
    assert {i.experiment_id for i in infos} == {parent.experiment_id}
    assert both.tracking.get_run(parent.run_id).metrics == {"best": 1.0}


def test_failed_when_the_block_raises(both: Client) -> None:
    with pytest.raises(ZeroDivisionError), strata.start_run(client=both) as run:
        strata.log_metric("before", 1.0)
        _ = 1 / 0
    got = both.tracking.get_run(run.run_id)
    assert got.info.status is RunStatus.FAILED
    assert got.metrics == {"before": 1.0}
    assert strata.active_run() is None


def test_killed_on_keyboard_interrupt(emb: Client) -> None:
    with pytest.raises(KeyboardInterrupt), strata.start_run(client=emb) as run:
        strata.log_metric("x", 2.0)
        raise KeyboardInterrupt
    assert emb.tracking.get_run(run.run_id).info.status is RunStatus.KILLED


def test_end_run_without_with_block_and_explicit_status(emb: Client) -> None:
    run = strata.start_run(client=emb)
    strata.log_metric("x", 1.0)
    strata.end_run(status="KILLED")
    assert strata.active_run() is None
    got = emb.tracking.get_run(run.run_id)
    assert got.info.status is RunStatus.KILLED
    assert got.metrics == {"x": 1.0}
    strata.end_run()  # no active run: a no-op


def test_sigterm_handler_is_restored_after_the_outermost_run(emb: Client) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with strata.start_run(client=emb):
        assert signal.getsignal(signal.SIGTERM) is fluent._on_sigterm
        with strata.start_run(nested=True):
            pass
        assert signal.getsignal(signal.SIGTERM) is fluent._on_sigterm
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_chains_to_a_previous_python_handler(emb: Client) -> None:
    calls: list[int] = []

    def lives_on(signum: int, frame: object) -> None:
        calls.append(signum)

    def exits(signum: int, frame: object) -> None:
        calls.append(signum)
        raise SystemExit(3)

    original = signal.signal(signal.SIGTERM, lives_on)
    try:
        with strata.start_run(client=emb) as run:
            os.kill(os.getpid(), signal.SIGTERM)  # handled before the next bytecode
            strata.log_metric("after", 1.0)  # the previous handler chose to carry on
        assert calls == [signal.SIGTERM]
        assert emb.tracking.get_run(run.run_id).info.status is RunStatus.FINISHED
        assert signal.getsignal(signal.SIGTERM) is lives_on

        signal.signal(signal.SIGTERM, exits)
        with pytest.raises(SystemExit) as exc_info, strata.start_run(client=emb) as run:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert exc_info.value.code == 3
        assert emb.tracking.get_run(run.run_id).info.status is RunStatus.KILLED
        with pytest.raises(ValueError), strata.start_run(client=emb) as run:
            raise ValueError  # the SIGTERM is over: a plain failure again
        assert emb.tracking.get_run(run.run_id).info.status is RunStatus.FAILED
    finally:
        signal.signal(signal.SIGTERM, original)


def test_resumed_run_knows_its_params(emb: Client) -> None:
    with strata.start_run(client=emb) as first:
        strata.log_param("lr", 0.1)
    with strata.start_run(run_id=first.run_id, client=emb) as again:
        assert again.run_id == first.run_id
        assert emb.tracking.get_run(first.run_id).info.status is RunStatus.RUNNING
        strata.log_param("lr", 0.1)
        with pytest.raises(Conflict, match="params are immutable"):
            strata.log_param("lr", 0.2)
        strata.log_metric("more", 1.0)
    got = emb.tracking.get_run(first.run_id)
    assert got.info.status is RunStatus.FINISHED
    assert got.metrics == {"more": 1.0}


def test_bad_keys_and_values_fail_at_the_call(emb: Client) -> None:
    with strata.start_run(client=emb):
        with pytest.raises(InvalidInput, match="metric key"):
            strata.log_metric("a/../b", 1.0)
        with pytest.raises(InvalidInput, match="must be a number"):
            strata.log_metric("ok", "high")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="Param 'long' value is 6001 characters") as got:
            strata.log_param("long", "x" * 6001)
        assert got.value.details == {"field": "param.value"}
        with pytest.raises(InvalidInput, match="Tag 'note' value is 8001 characters") as got:
            strata.set_tags({"fine": "a", "note": "x" * 8001})
        assert got.value.details == {"field": "tag.value"}
        with pytest.raises(InvalidInput, match="tag key"):
            strata.set_tag("a/../b", "v")
        strata.log_param("lr", 0.1)
        with pytest.raises(Conflict, match=r"'0\.1'.*'0\.2'"):
            strata.log_param("lr", 0.2)
        run_id = fluent.current_run().run_id
    got_run = emb.tracking.get_run(run_id)
    assert got_run.params == {"lr": "0.1"}  # nothing of a refused call was buffered
    assert "fine" not in got_run.tags and "note" not in got_run.tags


def test_background_conflict_surfaces_as_conflict(both: Client) -> None:
    with pytest.raises(Conflict, match=r"'lgbm'.*'xgb'"), strata.start_run(client=both) as run:
        both.tracking.log_param(run.run_id, "model", "lgbm")  # another writer got there first
        strata.log_param("model", "xgb")
        strata.log_param("seed", 7)
        strata.log_metric("loss", 0.5)
        strata.flush()
    assert fluent.dropped_points() >= 1
    assert isinstance(fluent.flush_errors()[-1], Conflict)
    got = both.tracking.get_run(run.run_id)
    assert got.params == {"model": "lgbm", "seed": "7"}  # the good param still landed
    assert got.metrics == {"loss": 0.5}
    assert got.info.status is RunStatus.FAILED  # the Conflict left the with-block


def test_background_error_is_raised_by_the_next_call_and_at_end(both: Client) -> None:
    run = strata.start_run(client=both)
    both.tracking.log_param(run.run_id, "k", "a")
    before = fluent.dropped_points()
    strata.log_param("k", "b")
    deadline = time.monotonic() + fluent.FLUSH_INTERVAL_S + 5
    while fluent.dropped_points() == before:  # the flusher thread meets the conflict
        assert time.monotonic() < deadline, "the background flush did not run"
        time.sleep(0.05)
    dropped = fluent.dropped_points()
    assert dropped == before + 1
    with pytest.raises(Conflict, match="buffered write failed"):
        strata.log_metric("m", 1.0)
    strata.log_metric("m", 2.0)  # reported once, then logging goes on
    both.tracking.log_param(run.run_id, "j", "a")
    strata.log_param("j", "b")
    with pytest.raises(Conflict):
        strata.end_run()
    assert fluent.dropped_points() == dropped + 1
    assert strata.active_run() is None
    assert both.tracking.get_run(run.run_id).info.status is RunStatus.FINISHED
    assert _history(both, run.run_id, "m") == [(0, 2.0)]


def test_time_threshold_flushes_without_ending_the_run(emb: Client) -> None:
    with strata.start_run(client=emb) as run:
        strata.log_metric("live", 3.0)
        deadline = time.monotonic() + fluent.FLUSH_INTERVAL_S + 5
        while not emb.tracking.get_metric_history(run.run_id, "live"):
            assert time.monotonic() < deadline, "the background flusher did not write"
            time.sleep(0.05)


def test_size_threshold_wakes_the_flusher(emb: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fluent, "FLUSH_THRESHOLD", 100)
    monkeypatch.setattr(fluent, "FLUSH_INTERVAL_S", 60.0)
    with strata.start_run(client=emb) as run:
        fluent._wake.set()  # let the flusher pick up the 60 s interval
        time.sleep(0.2)
        for i in range(150):
            strata.log_metric("burst", float(i), step=i)
        deadline = time.monotonic() + 5
        while len(emb.tracking.get_metric_history(run.run_id, "burst")) < 100:
            assert time.monotonic() < deadline, "the size threshold did not trigger a flush"
            time.sleep(0.05)


def test_a_full_buffer_makes_the_caller_wait_for_the_write(
    emb: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fluent, "FLUSH_THRESHOLD", 10)
    monkeypatch.setattr(fluent, "MAX_BUFFERED", 50)
    with strata.start_run(client=emb, capture_environment=False) as run:
        for i in range(50):
            strata.log_metric("bp", float(i), step=i)
        # the 50th call wrote everything itself: no waiting for the flusher thread
        assert len(emb.tracking.get_metric_history(run.run_id, "bp")) == 50


def test_logging_without_a_run_starts_one(sqlite_settings: Settings) -> None:
    try:
        strata.log_metric("auto", 1.0)
        run = strata.active_run()
        assert run is not None
        strata.end_run()
        with Client("", settings=sqlite_settings) as client:
            assert client.tracking.get_run(run.run_id).metrics == {"auto": 1.0}
    finally:
        _reset()


def test_artifacts_dict_text_table_figure_input(emb: Client, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("A")
    (tmp_path / "d" / "sub").mkdir()
    (tmp_path / "d" / "sub" / "b.txt").write_text("B")
    with strata.start_run(client=emb, capture_environment=False) as run:
        strata.log_artifact(tmp_path / "d" / "a.txt", "files")
        strata.log_artifacts(tmp_path / "d", "tree")
        strata.log_dict({"a": 1, "b": [1, 2]}, "cfg/config.json")
        strata.log_dict({"a": 1}, "cfg/config.yaml")
        strata.log_text("hello", "notes.txt")
        strata.log_table({"x": [1, 2], "y": ["a", "b"]}, "tables/t.json")
        strata.log_table(pd.DataFrame({"x": [1.5, 2.5]}), "tables/t.parquet")
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        fig = Figure()
        fig.add_subplot().plot([1, 2, 3])
        strata.log_figure(fig, "plots/loss.png")
        strata.log_input(
            "flights-2013", "sha256:abc", "s3://b/flights.parquet", context="validation"
        )
        with pytest.raises(InvalidInput, match=r"\.json or \.parquet"):
            strata.log_table({"x": [1]}, "t.csv")
        with pytest.raises(InvalidInput, match="cannot serialise"):
            strata.log_dict({"x": object()}, "bad.json")
    out = emb.tracking.download_artifacts(run.run_id, "", tmp_path / "out")
    assert (out / "files" / "a.txt").read_text() == "A"
    assert (out / "tree" / "sub" / "b.txt").read_text() == "B"
    assert json.loads((out / "cfg" / "config.json").read_text()) == {"a": 1, "b": [1, 2]}
    assert (out / "cfg" / "config.yaml").read_text() == "a: 1\n"
    assert (out / "notes.txt").read_text() == "hello"
    assert json.loads((out / "tables" / "t.json").read_text()) == {
        "columns": ["x", "y"],
        "data": [[1, "a"], [2, "b"]],
    }
    assert pd.read_parquet(out / "tables" / "t.parquet")["x"].tolist() == [1.5, 2.5]
    assert (out / "plots" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    inputs = emb.tracking.get_run(run.run_id).inputs
    assert [(i.name, i.digest, i.source, i.context) for i in inputs] == [
        ("flights-2013", "sha256:abc", "s3://b/flights.parquet", "validation")
    ]


def test_log_figure_without_matplotlib_says_what_to_install(
    emb: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with (
        strata.start_run(client=emb, capture_environment=False),
        pytest.raises(InvalidInput, match="pip install matplotlib"),
    ):
        strata.log_figure(object(), "plot.png")


def test_system_metrics_are_sampled(emb: Client) -> None:
    with strata.start_run(client=emb, log_system_metrics=True, system_metrics_interval=0.05) as run:
        time.sleep(0.2)
    metrics = emb.tracking.get_run(run.run_id).metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert metrics["system/system_memory_usage_megabytes"] > 0
    history = emb.tracking.get_metric_history(run.run_id, "system/cpu_utilization_percentage")
    assert len(history) >= 1


# -- whole processes -----------------------------------------------------------------------
def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(body))
    return path


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env["STRATA_HOME"] = str(home)
    env["PYTHONPATH"] = str(Path(strata.__file__).resolve().parents[1])
    return env


def _only_run(home: Path) -> tuple[Client, str]:
    client = Client("", settings=Settings(home=home))
    runs = client.tracking.search_runs(DEFAULT_EXPERIMENT_ID).items
    assert len(runs) == 1
    return client, runs[0].run_id


def test_sigterm_ends_the_run_killed_with_its_points(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = _script(
        tmp_path,
        """
        import sys, time
        import strata
        with strata.start_run(run_name="long"):
            strata.log_param("epochs", 1000)
            for i in range(2000):
                strata.log_metric("loss", 1.0 / (i + 1), step=i)
            print("ready", flush=True)
            i = 2000
            while True:
                strata.log_metric("loss", 0.0, step=i)
                i += 1
                time.sleep(0.001)
    """,
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    client, run_id = _only_run(home)
    with client:
        got = client.tracking.get_run(run_id)
        assert got.info.status is RunStatus.KILLED
        assert got.params == {"epochs": "1000"}
        history = client.tracking.get_metric_history(run_id, "loss")
        assert len(history) > 2000
        assert [p.step for p in history] == list(range(len(history)))


def test_clean_exit_without_end_run_flushes_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = _script(
        tmp_path,
        """
        import strata
        strata.start_run(run_name="no-end")
        strata.log_params({"a": 1, "b": 2})
        strata.set_tag("t", "v")
        for i in range(25_000):
            strata.log_metric("m", float(i), step=i)
    """,
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=_env(home), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    client, run_id = _only_run(home)
    with client:
        got = client.tracking.get_run(run_id)
        assert got.info.status is RunStatus.FINISHED
        assert got.params == {"a": "1", "b": "2"}
        assert got.tags["t"] == "v"
        assert len(client.tracking.get_metric_history(run_id, "m")) == 25_000


def test_uncaught_exception_outside_a_with_block_marks_failed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = _script(
        tmp_path,
        """
        import strata
        strata.start_run()
        strata.log_metric("m", 1.0)
        raise RuntimeError("boom")
    """,
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=_env(home), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    client, run_id = _only_run(home)
    with client:
        got = client.tracking.get_run(run_id)
        assert got.info.status is RunStatus.FAILED
        assert got.metrics == {"m": 1.0}


def test_log_input_resolves_a_data_layer_version(both: Client) -> None:
    """A run records the exact dataset version it trained on: lineage from run to data."""
    ingested = both.data.ingest(
        pd.DataFrame({"dep_delay": [1.0, 2.0], "origin": ["EWR", "JFK"]}), "flights_small"
    )
    with strata.start_run(experiment="lineage", client=both) as run:
        item = strata.log_input("flights_small@latest", context="train")
    assert (
        item.name == "flights_small" and item.source == f"strata:flights_small@{ingested.version}"
    )
    assert item.digest == both.data.get_version(f"flights_small@{ingested.version}").digest
    stored = both.tracking.get_run(run.run_id).inputs
    assert [(i.name, i.digest, i.context) for i in stored] == [
        ("flights_small", item.digest, "train")
    ]
    assert "dep_delay" in (stored[0].schema_ or "")
    found = both.tracking.search_runs(
        run.info.experiment_id, "datasets.name = 'flights_small' and datasets.context = 'train'"
    ).items
    assert [r.info.run_id for r in found] == [run.run_id]
    with strata.start_run(experiment="lineage", client=both):
        with pytest.raises(strata.NotFound):
            strata.log_input("no_such_dataset@latest")
