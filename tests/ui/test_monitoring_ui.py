"""Monitoring pages over HTTP as a viewer: rules with their firing history, a model's drift
over time per feature with the overlay of a chosen window, performance with coverage, health."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from strata.core.principal import Role
from strata.monitoring import series
from strata.monitoring.models import SeriesPoint
from ui.conftest import UiEnv

T0 = dt.datetime(2013, 7, 1, tzinfo=dt.UTC)


def _frame(shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"dep_delay": rng.normal(shift, 5, 3000), "carrier": rng.choice(["AA", "UA"], 3000)}
    )


def test_monitoring_pages(ui_env: UiEnv) -> None:
    mon = ui_env.client.monitoring
    ref = ui_env.client.data.ingest(_frame(0, 1), "mon-ui").ref
    for week in range(3):
        cur = ui_env.client.data.ingest(_frame(3.0 * week, 10 + week), "mon-ui").ref
        assert ref and cur
        mon.drift(ref, cur, store_as="mon-ui-model", window_end=T0 + dt.timedelta(days=7 * week))
    values = {"f1": [0.82, 0.74, 0.61], "coverage": [1.0, 0.8, 0.4],
              "p99_latency_ms": [12.0, 14.0, 55.0]}  # fmt: skip
    points = [
        SeriesPoint(model="mon-ui-model", series=name, ts=T0 + dt.timedelta(days=7 * i), value=v)
        for name, vs in values.items()
        for i, v in enumerate(vs)
    ]
    for i, worker in enumerate(("host:11", "host:12")):  # per serving worker: a line each
        points += [SeriesPoint(model="mon-ui-model", series="memory_mb", value=300.0 + i + w,
                               ts=T0 + dt.timedelta(days=7 * w), labels={"worker": worker})
                   for w in range(3)]  # fmt: skip
    series.append(ui_env.client.backends.db, points)
    mon.save_rule(name="mon-ui-f1", model="mon-ui-model", expr="f1 < 0.7", cooldown_s=0)
    (event,) = mon.evaluate_rules()
    with ui_env.http(Role.VIEWER) as http:
        index = http.get("/monitoring")
        assert index.status_code == 200
        assert "mon-ui-f1" in index.text and "FIRING" in index.text and "f1 &lt; 0.7" in index.text
        page = http.get("/monitoring/mon-ui-model")
        assert page.status_code == 200
        text = page.text
        for needle in ("Drift over time", "dep_delay", "carrier", "Performance over time",
                       "coverage", "p99_latency_ms", "<svg", "<polyline"):  # fmt: skip
            assert needle in text, needle
        assert f'<td class="num">{event.id}</td>' in text
        assert "memory_mb host:11" in text and "memory_mb host:12" in text
        first = http.get("/monitoring/mon-ui-model", params={"feature": "dep_delay", "at": 0})
        assert "window 1 of 3" in first.text and "<rect" in first.text and "next →" in first.text
        last = http.get("/monitoring/mon-ui-model", params={"feature": "dep_delay", "at": 99})
        assert "window 3 of 3" in last.text and "← previous" in last.text
        empty = http.get("/monitoring/nothing-here")
        assert empty.status_code == 200 and "No drift recorded" in empty.text
        assert http.get("/monitoring/bad name!").status_code == 400
    with ui_env.http() as anonymous:
        assert anonymous.get("/monitoring").status_code in (302, 303, 401)
