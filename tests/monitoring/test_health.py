"""Service health: series from the prediction log (checked against numpy), from a serving
worker's real Prometheus exposition (served over HTTP on 127.0.0.1), and the Grafana
dashboard `strata monitor grafana` prints."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from monitoring_helpers import write_log
from prometheus_client import ProcessCollector, generate_latest
from typer.testing import CliRunner

from strata.cli.main import app
from strata.client import Client
from strata.core.errors import InvalidInput
from strata.monitoring import health, webhook
from strata.serving.metrics import ServingMetrics

UTC = dt.UTC


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = Client()
    yield c
    c.close()


def test_health_series_from_the_log(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = dt.datetime(2013, 7, 1, 12, 0, tzinfo=UTC)
    latencies = {0: [5.0, 7.0, 30.0], 1: [4.0, 90.0]}  # minute -> request latencies
    for minute, values in latencies.items():
        for k, lat in enumerate(values):
            at = t0 + dt.timedelta(minutes=minute, seconds=10 * k)
            write_log(client.backends.artifacts, monkeypatch, model="m", version="1", at=at,
                      inputs={"x": np.arange(k + 1.0)}, prediction=np.zeros(k + 1),
                      latency_ms=lat)  # fmt: skip
    points = client.monitoring.record_health("m", since=t0, window="1m")
    by = {(p.series, p.ts): p.value for p in points}
    end0, end1 = t0 + dt.timedelta(minutes=1), t0 + dt.timedelta(minutes=2)
    assert by[("requests", end0)] == 3 and by[("throughput_rps", end1)] == pytest.approx(2 / 60)
    assert by[("p99_latency_ms", end0)] == pytest.approx(np.percentile([5.0, 7.0, 30.0], 99))
    assert by[("p50_latency_ms", end1)] == pytest.approx(np.percentile([4.0, 90.0], 50))
    assert by[("batch_size_mean", end0)] == pytest.approx(2.0)  # 1, 2 and 3 rows
    stored = client.monitoring.get_series("m", "p99_latency_ms")
    assert [p.ts for p in stored] == [end0, end1]
    # a rule over it is accepted and fires
    client.monitoring.save_rule(name="slow", model="m", expr="p99_latency_ms > 50")
    assert [e.rule for e in client.monitoring.evaluate_rules()] == ["slow"]
    assert client.monitoring.record_health("never-logged") == []
    with pytest.raises(InvalidInput):
        client.monitoring.record_health("m", window="5y")


def _exposition() -> str:
    metrics = ServingMetrics()
    ProcessCollector(registry=metrics.registry)
    for code, n in (("200", 97), ("500", 3)):
        metrics.requests.labels("m", "m", "1", "oip", "primary", code).inc(n)
    metrics.requests.labels("other", "other", "1", "oip", "primary", "500").inc(50)
    for rows in (1, 3, 8):
        metrics.batch_size.labels("m", "1").observe(rows)
    metrics.queue_time.labels("m", "1").observe(0.004)
    return generate_latest(metrics.registry).decode()


def test_health_from_a_workers_metrics_over_http(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _exposition()
    at = dt.datetime.now(UTC)
    pts = {p.series: p.value for p in health.from_prometheus(text, "m", "w1", at)}
    assert pts["error_rate"] == pytest.approx(0.03)  # the other endpoint's errors excluded
    assert pts["batch_size_mean"] == pytest.approx(4.0)
    assert pts["queue_time_ms"] == pytest.approx(4.0)
    assert pts["memory_mb"] > 1 and pts["cpu_percent"] >= 0

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        monkeypatch.delenv(webhook.ALLOW_ENV, raising=False)
        with pytest.raises(InvalidInput) as info:  # loopback is refused by default (SSRF)
            client.monitoring.record_health("m", metrics_url=url)
        assert "127.0.0.1" in info.value.message
        monkeypatch.setenv(webhook.ALLOW_ENV, "127.0.0.1")
        points = client.monitoring.record_health("m", metrics_url=url)
        assert {p.series for p in points} >= {"error_rate", "memory_mb", "queue_time_ms"}
        assert client.monitoring.get_series("m", "error_rate")[-1].labels["worker"] == url
    finally:
        server.shutdown()


def test_grafana_dashboard_from_the_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["monitor", "grafana", "flights"])
    assert result.exit_code == 0, result.output
    board = json.loads(result.output)
    assert board["schemaVersion"] >= 36 and board["uid"] == "strata-flights"
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 6
    for p in panels:
        assert p["type"] == "timeseries" and set(p["gridPos"]) == {"h", "w", "x", "y"}
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"]
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")")
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    assert 'endpoint="flights"' in exprs and "histogram_quantile(0.99" in exprs
    assert board["templating"]["list"][0]["type"] == "datasource"
    bad = CliRunner().invoke(app, ["monitor", "grafana", 'x"}) or vector(1']).exception
    assert isinstance(bad, InvalidInput)
