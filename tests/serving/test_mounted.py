"""`strata server --serve FILE`: the same endpoints mounted in the Strata server, beside its
REST API, UI and /metrics; the serving service lists what the mounted worker published."""

from __future__ import annotations

import time

import httpx
import pytest

from strata.server.app import create_app
from strata.server.serving import CONFIG_ENV
from strata.serving.models import ServeConfig

from .conftest import FEATURES, Flights, rows


def test_endpoints_mount_in_strata_server(
    flights: Flights, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import serve_in_thread

    config = ServeConfig.model_validate(
        {"endpoints": [{"model": "flights@champion"}], "prediction_log": {"enabled": False}}
    )
    monkeypatch.setenv(CONFIG_ENV, config.model_dump_json())
    app = create_app(flights.settings, client=None, auth=False)
    for url in serve_in_thread(app):
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        body = {"records": rows(flights.frame, 2)[FEATURES].to_dict(orient="records")}
        r = httpx.post(f"{url}/v1/models/flights/predict", json=body)
        assert r.status_code == 200 and r.json()["version"] == "1"
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}  # the server's own
        metrics = httpx.get(f"{url}/metrics").text
        assert "strata_http_requests_total" in metrics  # the server's metrics...
        assert 'strata_serving_requests_total{code="200",endpoint="flights"' in metrics  # ...and
        listed = httpx.get(f"{url}/api/v1/serving/endpoints").json()
        assert [(e["name"], e["version"], e["ready"]) for e in listed] == [("flights", "1", True)]
