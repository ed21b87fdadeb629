"""Service health: series from the prediction log (checked against numpy), from a serving
worker's real Prometheus exposition (served over HTTP on 127.0.0.1), and the Grafana
dashboard `strata monitor grafana` prints."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from monitoring_helpers import write_log
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
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
    metrics.sample_process()
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
    found = health.from_prometheus(text, "m", "w1", at)
    pts = {p.series: p.value for p in found}
    assert pts["error_rate"] == pytest.approx(0.03)  # the other endpoint's errors excluded
    assert pts["batch_size_mean"] == pytest.approx(4.0)
    assert pts["queue_time_ms"] == pytest.approx(4.0)
    rss = psutil.Process().memory_info().rss / 2**20
    assert pts["memory_mb"] == pytest.approx(rss, rel=0.2) and 0 <= pts["cpu_percent"] < 800
    worker = f"{socket.gethostname()}:{os.getpid()}"
    assert {p.labels["worker"] for p in found if p.series == "memory_mb"} == {worker}
    # a process without the serving gauges: its standard process metrics
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    plain = health.from_prometheus(generate_latest(registry).decode(), "m", "w2", at)
    (mem,) = [p for p in plain if p.series == "memory_mb"]
    assert mem.labels["worker"] == "w2" and mem.value == pytest.approx(rss, rel=0.2)

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


def test_cpu_and_memory_of_a_live_serving_worker(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import serve_in_thread

    from strata.server.serving import build_serving_app
    from strata.serving.models import ServeConfig

    config = ServeConfig.model_validate(
        {"endpoints": [{"model": "m/1"}], "prediction_log": {"enabled": False}}
    )
    worker = build_serving_app(config, client.settings, auth=False)  # m/1 never loads: fine
    monkeypatch.setenv(webhook.ALLOW_ENV, "127.0.0.1")
    for url in serve_in_thread(worker):
        points = client.monitoring.record_health("m", metrics_url=f"{url}/metrics")
        own = {p.series: p for p in points if p.series in ("cpu_percent", "memory_mb")}
        assert set(own) == {"cpu_percent", "memory_mb"}  # exported by the worker itself
        assert own["memory_mb"].labels["worker"] == f"{socket.gethostname()}:{os.getpid()}"
        rss = psutil.Process().memory_info().rss / 2**20  # the worker runs in this process
        assert own["memory_mb"].value == pytest.approx(rss, rel=0.2)
        stored = client.monitoring.get_series("m", "memory_mb")
        assert stored[-1].labels["worker"] == own["memory_mb"].labels["worker"]
