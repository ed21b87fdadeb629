"""Service health as series: from the prediction log (latency percentiles, throughput,
requests, rows per request, per window) and from a serving worker's Prometheus metrics
(error rate, batch size, queue time, CPU and memory of that worker)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from strata.monitoring import predlog
from strata.monitoring.models import SeriesPoint
from strata.monitoring.performance import interval
from strata.monitoring.refs import LogRef, sql_text

_WINDOW_S = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def from_log(
    con: Any, store: Any, model: str, since: dt.datetime | None, until: dt.datetime | None,
    window: str,
) -> list[SeriesPoint]:  # fmt: skip
    """Per window (points at the window's end): ``requests``, ``throughput_rps``,
    ``p50/p90/p99_latency_ms`` (per request) and ``batch_size_mean`` (rows per request)."""
    if not predlog.has_log(store, model):
        return []
    seconds = int(window[:-1]) * _WINDOW_S[window[-1]]
    origin = since or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    where = predlog.where(LogRef(model, None, since, until), None)
    rows = con.execute(
        f"""SELECT win, count(*), quantile_cont(lat, [0.5, 0.9, 0.99]), avg(n_rows) FROM (
              SELECT time_bucket({interval(window)}, min(ts),
                                 TIMESTAMPTZ {sql_text(origin.isoformat())}) AS win,
                     max(latency_ms) AS lat, count(*) AS n_rows
              FROM {predlog.scan(store, model)} WHERE {where} GROUP BY request_id)
            GROUP BY win ORDER BY win"""
    ).fetchall()
    points = []
    for win, requests, (p50, p90, p99), rows_per in rows:
        end = win + dt.timedelta(seconds=seconds)
        values = {
            "requests": float(requests),
            "throughput_rps": requests / seconds,
            "p50_latency_ms": p50,
            "p90_latency_ms": p90,
            "p99_latency_ms": p99,
            "batch_size_mean": float(rows_per),
        }
        points += [
            SeriesPoint(model=model, series=k, ts=end, value=float(v), labels={"source": "log"})
            for k, v in values.items()
        ]
    return points


def from_prometheus(text: str, model: str, worker: str, at: dt.datetime) -> list[SeriesPoint]:
    """Points from one server's ``/metrics`` text: ``error_rate`` (non-2xx share of its
    requests for the endpoint, since the worker started), ``batch_size_mean``,
    ``queue_time_ms`` (mean), and per worker ``cpu_percent`` / ``memory_mb`` — from the
    serving workers' ``strata_serving_worker_*`` gauges (one point per worker, labelled
    ``worker=host:pid``), else the standard ``process_*`` metrics of the process answering
    (``cpu_percent``: CPU seconds over the worker's lifetime)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = errors = 0.0
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    gauges: dict[str, float] = {}
    workers: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if s.name == "strata_serving_requests_total" and labels.get("endpoint") == model:
                total += s.value
                if not str(labels.get("code", "200")).startswith("2"):
                    errors += s.value
            elif s.name.endswith(("_sum", "_count")) and labels.get("model") in (model, None):
                base = s.name.rsplit("_", 1)[0]
                target = sums if s.name.endswith("_sum") else counts
                target[base] = target.get(base, 0.0) + s.value
            elif s.name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                            "process_start_time_seconds"):  # fmt: skip
                gauges[s.name] = s.value
            elif s.name in _WORKER and "worker" in labels:
                workers.setdefault(labels["worker"], {})[_WORKER[s.name]] = s.value
    values: dict[str, float] = {}
    if total:
        values["error_rate"] = errors / total
    if counts.get("strata_serving_batch_rows"):
        values["batch_size_mean"] = (
            sums["strata_serving_batch_rows"] / counts["strata_serving_batch_rows"]
        )
    if counts.get("strata_serving_queue_seconds"):
        values["queue_time_ms"] = (
            1000 * sums["strata_serving_queue_seconds"] / counts["strata_serving_queue_seconds"]
        )
    if not workers:  # a process without the serving gauges: its standard metrics
        workers[worker] = {_WORKER[k]: v for k, v in gauges.items() if k in _WORKER}
    labels = {"source": "prometheus", "worker": worker}
    points = [
        SeriesPoint(model=model, series=k, ts=at, value=v, labels=labels) for k, v in values.items()
    ]
    for name, proc in sorted(workers.items()):
        own = labels | {"worker": name, "url": worker}
        per = {}
        if "memory" in proc:
            per["memory_mb"] = proc["memory"] / 2**20
        alive = at.timestamp() - proc.get("start", at.timestamp())
        if "cpu" in proc and alive > 0:
            per["cpu_percent"] = 100 * proc["cpu"] / alive
        points += [
            SeriesPoint(model=model, series=k, ts=at, value=v, labels=own) for k, v in per.items()
        ]
    return points


_WORKER = {
    "strata_serving_worker_cpu_seconds": "cpu",
    "strata_serving_worker_resident_memory_bytes": "memory",
    "strata_serving_worker_start_time_seconds": "start",
    "process_cpu_seconds_total": "cpu",
    "process_resident_memory_bytes": "memory",
    "process_start_time_seconds": "start",
}
