"""A Grafana dashboard for a serving endpoint, over the metrics Prometheus scrapes from
``strata serve`` workers (pure: the remote client builds the same JSON)."""

from __future__ import annotations

import json
from typing import Any


def _panel(
    pid: int, title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(65 + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


RATE = "[$__rate_interval]"


def _panels(endpoint: str) -> list[tuple[str, list[tuple[str, str]], str]]:
    sel = f'endpoint="{endpoint}"'
    req = f"strata_serving_requests_total{{{sel}}}"
    bad = f'strata_serving_requests_total{{{sel},code!~"2.."}}'
    lat = f"strata_serving_request_duration_seconds_bucket{{{sel}}}"
    quantiles = [
        (f"histogram_quantile({q}, sum by (le) (rate({lat}{RATE})))", f"p{round(q * 100)}")
        for q in (0.5, 0.9, 0.99)
    ]
    rows = "strata_serving_batch_rows"
    queue = "strata_serving_queue_seconds_bucket"
    return [
        ("Requests/s by status", [(f"sum by (code) (rate({req}{RATE}))", "{{code}}")], "reqps"),
        ("Latency", quantiles, "s"),
        (
            "Error rate",
            [(f"sum(rate({bad}{RATE})) / sum(rate({req}{RATE}))", "errors")],
            "percentunit",
        ),
        (
            "Rows per model call",
            [(f"sum(rate({rows}_sum{RATE})) / sum(rate({rows}_count{RATE}))", "rows")],
            "short",
        ),
        (
            "Batching queue time",
            [(f"histogram_quantile(0.99, sum by (le) (rate({queue}{RATE})))", "p99")],
            "s",
        ),
        ("In flight", [(f"sum(strata_serving_in_flight{{{sel}}})", "in flight")], "short"),
        (
            "Rows/s by path",
            [(f"sum by (path) (rate(strata_serving_rows_total{{{sel}}}{RATE}))", "{{path}}")],
            "short",
        ),
        (
            "Worker CPU and memory",
            [
                (f"rate(strata_serving_worker_cpu_seconds{RATE})", "cpu {{worker}}"),
                ("strata_serving_worker_resident_memory_bytes / 2^20", "MiB {{worker}}"),
            ],
            "short",
        ),
    ]


def grafana_dashboard(endpoint: str) -> dict[str, Any]:
    """A Grafana dashboard (schema 39) for ``endpoint`` over the serving metrics: request
    rate by status, latency p50/p90/p99, error rate, rows per call, batching queue time,
    requests in flight; a ``datasource`` variable picks the Prometheus data source."""
    panels = _panels(endpoint)
    return {
        "uid": f"strata-{endpoint}"[:40],
        "title": f"Strata serving: {endpoint}",
        "tags": ["strata", "serving"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                    "current": {},
                },
            ]
        },
        "annotations": {"list": []},
        "panels": [
            _panel(i + 1, title, exprs, unit, 12 * (i % 2), 8 * (i // 2))
            for i, (title, exprs, unit) in enumerate(panels)
        ],
    }


def dashboard_json(endpoint: str) -> str:
    return json.dumps(grafana_dashboard(endpoint), indent=2)
