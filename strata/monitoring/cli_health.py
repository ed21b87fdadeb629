"""CLI: ``strata monitor health`` (record and show service health) and ``strata monitor
grafana MODEL > dashboard.json``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from strata.core.console import console, print_json, print_table

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
HEALTH = ("requests", "throughput_rps", "p50_latency_ms", "p90_latency_ms", "p99_latency_ms",
          "batch_size_mean", "error_rate", "queue_time_ms", "cpu_percent", "memory_mb")  # fmt: skip


def _client() -> Any:  # a strata.Client: only cli.py may import strata.client
    from strata.monitoring.cli import _client as client

    return client()


def health(
    model: Annotated[str, typer.Argument(help="The model (endpoint).")],
    since: Annotated[str | None, typer.Option(help="From this ISO 8601 time.")] = None,
    until: Annotated[str | None, typer.Option(help="Until this ISO 8601 time (exclusive).")] = None,
    window: Annotated[str, typer.Option(help="Window length: 1m, 5m, 1h, 1d...")] = "1m",
    metrics_url: Annotated[
        str | None, typer.Option(help="Also scrape a serving worker's /metrics (admin).")
    ] = None,
    show_only: Annotated[
        bool, typer.Option("--show", help="Only show the stored series; compute nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compute service health from the prediction log (and a worker's metrics), store it as
    series, and show the latest points."""
    from strata.monitoring.refs import parse_time

    start = parse_time(since, "since") if since else None
    end = parse_time(until, "until") if until else None
    with console.status("Computing health..."), _client() as client:
        if not show_only:
            client.monitoring.record_health(
                model, since=start, until=end, window=window, metrics_url=metrics_url
            )
        latest = {
            name: client.monitoring.get_series(model, name, since=start, until=end, limit=1)
            for name in HEALTH
        }
    rows = [
        {"series": name, "time": pts[-1].ts, "value": pts[-1].value}
        for name, pts in latest.items()
        if pts
    ]
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["series", "time", "value"], f"{model} health (latest window)")


def grafana(
    model: Annotated[str, typer.Argument(help="The endpoint (model) the dashboard is for.")],
) -> None:
    """Print a Grafana dashboard for the endpoint (import it in Grafana; pick the Prometheus
    data source that scrapes `strata serve`)."""
    import json

    with _client() as client:
        board = client.monitoring.grafana_dashboard(model)
    sys.stdout.write(json.dumps(board, indent=2) + "\n")
