"""``POST /feedback`` at the server's root (the issue's path): labels by request id reach the
same store as ``/api/v1/monitoring/feedback``, behind the same permission and validation, and
a cross-site form cannot post to it."""

from __future__ import annotations

import datetime as dt

import httpx
import numpy as np
import pytest
from conftest import LiveServer
from monitoring_helpers import write_log

UTC = dt.UTC


def test_root_feedback_route(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    store = live_server.embedded.backends.artifacts
    rid = write_log(
        store,
        monkeypatch,
        model="clf",
        version="1",
        at=dt.datetime(2013, 7, 1, 12, tzinfo=UTC),
        inputs={"x": np.array([0.1, 0.9])},
        prediction=np.array([0, 1]),
    )
    url = f"{live_server.url}/feedback"
    body = {
        "model": "clf",
        "items": [
            {"request_id": rid, "row": 0, "label": 0},
            {"request_id": rid, "row": 1, "label": 0},
            {"request_id": "never-logged", "label": 1},
        ],
    }
    editor = {"Authorization": f"Bearer {live_server.token_for('editor')}"}
    viewer = {"Authorization": f"Bearer {live_server.token_for('viewer')}"}

    assert httpx.post(url, json=body).status_code == 401  # no token
    assert httpx.post(url, json=body, headers=viewer).status_code == 403  # read only
    r = httpx.post(url, json=body, headers=editor)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["received"], doc["matched"], doc["unknown"]) == (3, 2, 1)
    assert doc["unknown_request_ids"] == ["never-logged"]

    # stored where performance reads it: the second row's label disagrees with its prediction
    report = live_server.client().monitoring.performance(
        model="clf", since=dt.datetime(2013, 7, 1, tzinfo=UTC)
    )
    (window,) = report.windows
    assert window.labelled == 2 and window.metrics["accuracy"].value == 0.5

    # bad input: a clear 400 naming the field, nothing stored
    bad = httpx.post(url, json={"model": "clf", "items": [{"label": 1}]}, headers=editor)
    assert bad.status_code == 400 and "request_id" in bad.json()["message"]
    bad = httpx.post(url, json={"model": "clf", "items": [], "extra": 1}, headers=editor)
    assert bad.status_code == 400 and "extra" in bad.json()["message"]
    bad = httpx.post(url, json={"model": "../x", "items": []}, headers=editor)
    assert bad.status_code == 400 and "model" in bad.json()["message"]
    # a cross-site form (text/plain needs no CORS preflight) is refused before parsing
    form = httpx.post(
        url,
        content=b'{"model": "clf", "items": []}',
        headers=editor | {"Content-Type": "text/plain"},
    )
    assert form.status_code == 415
    again = live_server.client().monitoring.performance(
        model="clf", since=dt.datetime(2013, 7, 1, tzinfo=UTC)
    )
    assert again.windows[0].labelled == 2

    spec = httpx.get(f"{live_server.url}/openapi.json", headers=editor).json()
    assert "post" in spec["paths"]["/feedback"]
