"""The monitoring contract: the same tests on the embedded and the remote client (SQLite and
PostgreSQL metadata). Datasets are ingested DataFrames; prediction logs are written by
serving's writer into the artifact store the server reads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from monitoring_helpers import write_log

from strata.backends.context import Backends
from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import InvalidInput, NotFound, StrataError

UTC = dt.UTC


def _exactly(cls: type[StrataError], fn: object, *args: object, **kw: object) -> StrataError:
    assert callable(fn)
    with pytest.raises(StrataError) as info:
        fn(*args, **kw)
    assert type(info.value) is cls, f"expected {cls.__name__}, got {info.value!r}"
    return info.value


def _frames(n: int = 3000, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "delay": np.round(rng.normal(10 + shift, 5, n), 1),
            "carrier": rng.choice(["AA", "UA", "DL"] if not shift else ["AA", "B6", "B6"], n),
            "distance": rng.integers(100, 2000, n),
        }
    )


def test_drift_between_versions_in_the_issue_shape(client: Client) -> None:
    first = client.data.ingest(_frames(), "trips", tags=["jan"]).ref
    client.data.ingest(_frames(seed=1), "trips")
    same = client.monitoring.drift("trips@jan", "trips@latest")
    assert same.reference == first
    assert same.status == "ok" and not same.dataset_drift and same.drifted_count == 0
    assert {c.method.value for c in same.columns.values()} == {"wasserstein", "jensenshannon"}
    client.data.ingest(_frames(shift=4.0, seed=2), "shifted")
    report = client.monitoring.drift(first, "shifted@latest")
    summary = report.summary()
    assert set(summary["columns"]["delay"]) == {"drifted", "method", "score", "threshold"}
    assert summary["columns"]["delay"]["drifted"] and summary["columns"]["carrier"]["drifted"]
    assert not summary["columns"]["distance"]["drifted"]
    assert summary["drifted_share"] == pytest.approx(2 / 3) and summary["dataset_drift"]
    strict = client.monitoring.drift(first, "shifted@latest", drift_share=0.9)
    assert not strict.dataset_drift
    psi = client.monitoring.drift(first, "shifted@latest", method="psi", bins="quantile")
    assert {c.method.value for c in psi.columns.values()} == {"psi"}
    assert psi.columns["delay"].severity == "major"
    page = client.monitoring.drift_html(first, "shifted@latest")
    assert page.startswith("<!doctype html>") and "<svg" in page and "http" not in page


def test_missing_columns_are_reported_and_the_rest_tested(client: Client) -> None:
    client.data.ingest(_frames(), "a")
    client.data.ingest(_frames(seed=3).drop(columns=["carrier"]).assign(extra=1.0), "b")
    report = client.monitoring.drift("a@latest", "b@latest")
    assert report.missing == {"current": ["carrier"], "reference": ["extra"]}
    assert sorted(report.columns) == ["delay", "distance"]
    only = client.monitoring.drift("a@latest", "b@latest", columns=["delay", "nope"])
    assert list(only.columns) == ["delay"]
    assert only.missing == {"reference": ["nope"], "current": ["nope"]}


def test_log_windows_profiles_and_series(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    backends = Backends(settings)
    ref = _frames(2000)
    cur = _frames(2000, shift=4.0, seed=5)
    store = backends.artifacts
    for frame, day in ((ref, 1), (cur, 8)):
        at = dt.datetime(2013, 7, day, 12, tzinfo=UTC)
        inputs = {c: frame[c].to_numpy() for c in frame.columns}
        write_log(
            store,
            monkeypatch,
            model="trips",
            version="1",
            at=at,
            inputs=inputs,
            prediction=(frame["delay"].to_numpy() > 12).astype(np.int64),
        )
    week1 = "log:trips@1?since=2013-07-01T00:00:00+00:00&until=2013-07-08"  # '+' is no space
    week2 = "log:trips@1?since=2013-07-08&until=2013-07-15"
    report = client.monitoring.drift(week1, week2)
    assert report.reference_rows == 2000 and report.current_rows == 2000
    assert sorted(report.columns) == ["carrier", "delay", "distance", "prediction"]
    assert report.columns["delay"].drifted and report.columns["prediction"].drifted
    empty = client.monitoring.drift(week1, "log:trips@1?since=2014-01-01&until=2014-01-08")
    assert empty.status == "no data" and empty.current_rows == 0 and not empty.dataset_drift
    nolog = client.monitoring.drift(week1, "log:unknown-model?since=2013-07-01")
    assert nolog.status == "no data"
    other_version = client.monitoring.drift(week1, "log:trips@2")
    assert other_version.status == "no data"
    # a stored profile stands in for the window: same answer without its rows
    saved = client.monitoring.save_profile("trips-week1", week1)
    assert saved.rows == 2000 and "delay" in saved.columns
    assert [p.name for p in client.monitoring.list_profiles()] == ["trips-week1"]
    again = client.monitoring.drift(
        "profile:trips-week1",
        week2,
        store_as="trips",
        window_end=dt.datetime(2013, 7, 15, tzinfo=UTC),
    )
    assert again.summary()["columns"] == report.summary()["columns"]
    names = client.monitoring.list_series("trips")
    assert "drift.share" in names and "drift.score.delay" in names
    share = client.monitoring.get_series("trips", "drift.share")
    assert [p.value for p in share] == [again.drifted_share]
    assert share[0].ts == dt.datetime(2013, 7, 15, tzinfo=UTC)
    backends.close()


def test_bad_refs_are_clear_errors(client: Client) -> None:
    client.data.ingest(_frames(100), "small")
    err = _exactly(NotFound, client.monitoring.drift, "small@latest", "nosuch@1")
    assert "nosuch" in err.message
    err = _exactly(InvalidInput, client.monitoring.drift, "small@latest", "log:x?since=yesterday")
    assert "since" in err.message and "ISO 8601" in err.message
    err = _exactly(InvalidInput, client.monitoring.drift, "small@latest", "log:x?rows=1")
    assert "rows" in err.message
    _exactly(
        InvalidInput,
        client.monitoring.drift,
        "small@latest",
        "log:x?since=2013-02-01&until=2013-01-01",
    )
    _exactly(NotFound, client.monitoring.drift, "profile:none", "small@latest")
    _exactly(InvalidInput, client.monitoring.drift, "profile:../../etc", "small@latest")
    _exactly(InvalidInput, client.monitoring.drift, "small@latest", "small@latest", method="nope")
    _exactly(InvalidInput, client.monitoring.save_profile, "../x", "small@latest")
    _exactly(NotFound, client.monitoring.drift, "log:m@production", "small@latest")


def test_log_queries_stats_export_settings_and_retention(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    backends = Backends(settings)
    store = backends.artifacts
    now = dt.datetime.now(UTC).replace(microsecond=0)
    old = dt.datetime(2013, 7, 1, 12, tzinfo=UTC)
    x = np.arange(6, dtype=np.float64)
    rids = []
    for i, (at, version, key) in enumerate(
        [(old, "1", "N1"), (now - dt.timedelta(hours=2), "1", "N2"), (now, "2", "N1")]
    ):
        rids.append(
            write_log(
                store,
                monkeypatch,
                model="m",
                version=version,
                at=at,
                inputs={"x": x[2 * i : 2 * i + 2]},
                prediction=x[2 * i : 2 * i + 2] * 10,
                entity_key=key,
                latency_ms=float(i + 1),
                path="canary" if i == 2 else "primary",
            )
        )
    mon = client.monitoring
    everything = mon.query_log(model="m")
    assert len(everything.rows) == 6 and not everything.truncated
    assert [r["request_id"] for r in everything.rows[:2]] == [rids[2], rids[2]]  # newest first
    first = everything.rows[-2]  # requests newest first, rows in request order
    assert first["inputs"] == {"x": 0.0} and first["outputs"]["prediction"] == 0.0
    assert first["ts"] == old and first["version"] == "1"
    one = mon.query_log(model="m", request_id=rids[1])
    assert [r["row"] for r in one.rows] == [0, 1] and {r["entity_key"] for r in one.rows} == {"N2"}
    assert len(mon.query_log(model="m", entity_key="N1").rows) == 4
    assert len(mon.query_log(model="m", version="2").rows) == 2
    assert len(mon.query_log(model="m", since=now - dt.timedelta(days=1)).rows) == 4
    limited = mon.query_log(model="m", limit=3)
    assert len(limited.rows) == 3 and limited.truncated
    assert mon.query_log(model="never-logged").rows == []
    stats = mon.log_stats(model="m")
    assert (stats.rows, stats.requests) == (6, 3)
    assert stats.by_version == {"1": 4, "2": 2} and stats.by_path == {"primary": 4, "canary": 2}
    assert stats.latency_ms["max"] == 3.0 and stats.first == old
    out = tmp_path / "export.parquet"
    assert mon.export_log(out, model="m", version="1") == 4
    table = pq.read_table(out)
    assert table.num_rows == 4 and table.column("ts").to_pylist()[0] == old
    csv = tmp_path / "e.csv"
    assert mon.export_log(csv, model="m", format="csv", request_id=rids[0]) == 2
    assert csv.read_text().count("\n") == 3
    _exactly(InvalidInput, mon.export_log, tmp_path / "e.xml", model="m", format="xml")
    _exactly(InvalidInput, mon.query_log, model="../etc")
    _exactly(InvalidInput, mon.query_log, model="m", limit=0)
    assert mon.get_log_settings("m").sample_rate == 1.0
    changed = mon.set_log_settings("m", sample_rate=0.25, retention_days=7)
    assert (changed.sample_rate, changed.retention_days) == (0.25, 7)
    assert mon.get_log_settings("m").retention_days == 7
    _exactly(InvalidInput, mon.set_log_settings, "m", sample_rate=1.5)
    result = mon.apply_retention("m")
    assert result.deleted_partitions == ["predictions/model=m/date=2013-07-01"]
    assert result.kept_partitions >= 1
    assert mon.log_stats(model="m").rows == 4
    assert mon.apply_retention("m").deleted_partitions == []
    backends.close()


def test_feedback_and_performance_per_window_with_intervals(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn import metrics as skm

    backends = Backends(settings)
    store = backends.artifacts
    rng = np.random.default_rng(11)
    truth, preds, probas, rids = [], [], [], []
    for day, noise in ((1, 0.1), (2, 0.4)):  # the second day's model is worse
        n = 400
        y = rng.integers(0, 2, n)
        p1 = np.clip(np.where(y == 1, 0.75, 0.25) + rng.normal(0, noise, n), 0.01, 0.99)
        pred = (p1 > 0.5).astype(np.int64)
        carrier = rng.choice(np.array(["AA", "UA"], dtype=object), n)
        at = dt.datetime(2013, 7, day, 12, tzinfo=UTC)
        rid = write_log(
            store,
            monkeypatch,
            model="clf",
            version="1",
            at=at,
            inputs={"carrier": carrier, "x": p1},
            prediction=pred,
            proba=np.stack([1 - p1, p1], axis=1),
            entity_key=f"E{day}",
        )
        truth.append(y), preds.append(pred), probas.append(p1), rids.append(rid)
    mon = client.monitoring
    items = [{"request_id": rids[0], "row": i, "label": int(truth[0][i])} for i in range(400)]
    items += [{"request_id": rids[1], "row": i, "label": int(truth[1][i])} for i in range(200)]
    items += [{"request_id": "no-such-request", "row": 0, "label": 1}]
    result = mon.feedback("clf", items)
    assert (result.received, result.matched, result.unknown) == (601, 600, 1)
    assert result.unknown_request_ids == ["no-such-request"]
    err = _exactly(InvalidInput, mon.feedback, "clf", [{"label": 1}])
    assert "item 0" in err.message and "request_id" in err.message
    report = mon.performance(model="clf", window="1d", since=dt.datetime(2013, 7, 1, tzinfo=UTC))
    assert report.task == "classification" and [w.labelled for w in report.windows] == [400, 200]
    assert [w.coverage for w in report.windows] == [1.0, 0.5]
    first, second = report.windows
    assert first.start == dt.datetime(2013, 7, 1, tzinfo=UTC)
    y0, p0 = truth[0], preds[0]
    assert first.metrics["accuracy"].value == pytest.approx(skm.accuracy_score(y0, p0))
    assert first.metrics["f1"].value == pytest.approx(skm.f1_score(y0, p0))
    assert first.metrics["precision"].value == pytest.approx(skm.precision_score(y0, p0))
    assert first.metrics["recall"].value == pytest.approx(skm.recall_score(y0, p0))
    assert first.metrics["roc_auc"].value == pytest.approx(skm.roc_auc_score(y0, probas[0]))
    assert first.metrics["log_loss"].value == pytest.approx(skm.log_loss(y0, probas[0]))
    f1 = first.metrics["f1"]
    assert f1.low is not None and f1.high is not None and f1.low < f1.value < f1.high
    assert second.metrics["f1"].value < first.metrics["f1"].value  # the decay is visible
    y1, p1 = truth[1][:200], preds[1][:200]
    assert second.metrics["accuracy"].value == pytest.approx(skm.accuracy_score(y1, p1))
    # CBPE over every prediction of the window, labelled or not: expected accuracy
    expected = np.mean(np.where(preds[1] == 1, probas[1], 1 - probas[1]))
    assert second.estimated["accuracy"] == pytest.approx(expected)
    by_carrier = mon.performance(
        model="clf", window="7d", segment="carrier", since=dt.datetime(2013, 7, 1, tzinfo=UTC)
    )
    assert sorted(w.segment for w in by_carrier.windows) == ["AA", "UA"]
    assert sum(w.labelled for w in by_carrier.windows) == 600
    _exactly(InvalidInput, mon.performance, model="clf", segment="nope")
    _exactly(InvalidInput, mon.performance, model="clf", window="3y")
    # labels by entity key + time: the entity's latest prediction at or before the label
    later = dt.datetime(2013, 7, 2, 18, tzinfo=UTC)
    ent = mon.feedback(
        "clf",
        [
            {"entity_key": "E2", "ts": later, "label": 1},
            {"entity_key": "E9", "ts": later, "label": 0},
        ],
    )
    assert (ent.matched, ent.unknown, ent.unknown_entity_keys) == (1, 1, ["E9"])
    again = mon.performance(model="clf", since=dt.datetime(2013, 7, 1, tzinfo=UTC), store=True)
    assert again.windows[1].labelled == 201
    assert "f1" in mon.list_series("clf") and "estimated.accuracy" in mon.list_series("clf")
    assert len(mon.get_series("clf", "f1")) == 2
    assert mon.performance(model="never").status == "no data"
    backends.close()


def test_multiclass_log_loss_and_one_vs_rest_auc(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn import metrics as skm

    backends = Backends(settings)
    rng = np.random.default_rng(5)
    n, classes = 900, np.array(["bird", "cat", "dog"], dtype=object)
    y = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3)) + 1.5 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    proba[:, 2] = 1 - proba[:, 0] - proba[:, 1]  # rows sum to 1 exactly, as a model's do
    rid = write_log(backends.artifacts, monkeypatch, model="pets", version="1",
                    at=dt.datetime(2013, 7, 1, 12, tzinfo=UTC), inputs={"x": logits[:, 0]},
                    prediction=classes[proba.argmax(axis=1)], proba=proba)  # fmt: skip
    truth = classes[y]
    labelled = 700  # the rest has no label yet
    items = [{"request_id": rid, "row": i, "label": str(truth[i])} for i in range(labelled)]
    assert client.monitoring.feedback("pets", items).matched == labelled
    report = client.monitoring.performance(model="pets", since=dt.datetime(2013, 7, 1, tzinfo=UTC))
    (window,) = report.windows
    m = window.metrics
    yt, pt = truth[:labelled], proba[:labelled]
    assert m["log_loss"].value == pytest.approx(skm.log_loss(yt, pt, labels=list(classes)))
    auc = skm.roc_auc_score(yt, pt, multi_class="ovr", labels=list(classes))
    assert m["roc_auc"].value == pytest.approx(auc)
    assert m["roc_auc"].low < auc < m["roc_auc"].high  # type: ignore[operator]
    assert m["f1"].value == pytest.approx(skm.f1_score(yt, classes[pt.argmax(1)], average="macro"))
    backends.close()


def test_regression_performance(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn import metrics as skm

    backends = Backends(settings)
    rng = np.random.default_rng(5)
    y = rng.normal(20, 5, 300)
    pred = y + rng.normal(0, 2, 300)
    rid = write_log(
        backends.artifacts,
        monkeypatch,
        model="reg",
        version="3",
        at=dt.datetime(2013, 8, 1, tzinfo=UTC),
        inputs={"x": y},
        prediction=pred,
    )
    client.monitoring.feedback(
        "reg", [{"request_id": rid, "row": i, "label": float(y[i])} for i in range(300)]
    )
    report = client.monitoring.performance(model="reg", version="3")
    (w,) = report.windows
    assert report.task == "regression" and w.version == "3"
    assert w.metrics["mae"].value == pytest.approx(skm.mean_absolute_error(y, pred))
    assert w.metrics["rmse"].value == pytest.approx(skm.root_mean_squared_error(y, pred))
    assert w.metrics["mape"].value == pytest.approx(skm.mean_absolute_percentage_error(y, pred))
    assert w.metrics["mae"].low < w.metrics["mae"].value < w.metrics["mae"].high
    backends.close()


def test_alert_rules_round_trip(client: Client, settings: Settings) -> None:
    from strata.monitoring import series
    from strata.monitoring.models import SeriesPoint

    mon = client.monitoring
    backends = Backends(settings)
    t0 = dt.datetime(2013, 7, 1, tzinfo=UTC)
    series.append(backends.db, [SeriesPoint(model="m", series="f1", ts=t0, value=0.6)])
    saved = mon.save_rule(name="low-f1", model="m", expr="f1 < 0.7", description="decay")
    assert saved.rule.cooldown_s == 3600 and saved.rule.actions == []
    # a retraining whose config is incomplete: queued, then failed (the error recorded)
    mon.save_rule(name="retrain", model="m", expr="f1 < 0.65",
                  actions=[{"type": "retrain", "config": {"experiment": "e"}}])  # fmt: skip
    assert [r.rule.name for r in mon.list_rules()] == ["low-f1", "retrain"]
    assert mon.list_rules(model="other") == []
    err = _exactly(InvalidInput, mon.save_rule, name="bad", model="m", expr="f2 < 0.7")
    assert "unknown series 'f2'" in err.message
    _exactly(InvalidInput, mon.save_rule, name="bad", model="m", expr="f1 <")
    event, job = mon.evaluate_rules(wait=True)  # the answer carries the job's outcome
    assert event.rule == "low-f1" and event.value == 0.6
    (result,) = job.detail["actions"]
    assert result["status"] == "failed" and "Invalid training config" in result["error"]
    assert [e.id for e in mon.list_alert_events()] == [job.id, event.id]
    mon.delete_rule("retrain")
    assert mon.get_rule("low-f1").last_fired_at is not None
    mon.delete_rule("low-f1")
    _exactly(NotFound, mon.delete_rule, "low-f1")
    _exactly(NotFound, mon.get_rule, "low-f1")
    backends.close()


def test_label_drift_from_feedback(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    backends = Backends(settings)
    rng = np.random.default_rng(3)
    mon = client.monitoring
    for day, late_share in ((1, 0.2), (2, 0.6)):
        x = rng.normal(size=500)
        rid = write_log(backends.artifacts, monkeypatch, model="lbl", version="1",
                        at=dt.datetime(2013, 7, day, 8, tzinfo=UTC), inputs={"x": x},
                        prediction=np.zeros(500, dtype=np.int64))  # fmt: skip
        late = (rng.random(500) < late_share).astype(int)
        mon.feedback(
            "lbl", [{"request_id": rid, "row": i, "label": int(v)} for i, v in enumerate(late)]
        )
    a = "labels:lbl@1?since=2013-07-01&until=2013-07-02"
    b = "labels:lbl@1?since=2013-07-02&until=2013-07-03"
    report = mon.drift(a, b)
    assert report.reference.startswith("labels:lbl@1") and list(report.columns) == ["label"]
    col = report.columns["label"]
    assert col.method.value == "z" and col.drifted and report.reference_rows == 500
    assert not mon.drift(a, a).columns["label"].drifted
    assert mon.drift(a, "labels:lbl@1?since=2014-01-01").status == "no data"
    backends.close()
