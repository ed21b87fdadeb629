"""What the request path defers to stay cheap, and that nothing is lost by it: metrics are
tallied and written per flush (the same exposition as one write per observation), access
lines are written in batches with each request's own time and id, and a response carries
its Content-Length (one body write, no chunked framing)."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from strata.serving import access as access_mod
from strata.serving import metrics as metrics_mod
from strata.serving.access import AccessLog
from strata.serving.metrics import ServingMetrics, _observe_many

from .conftest import FEATURES, Flights, rows


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[Any, ...], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in registry.collect()
        for s in m.samples
        if s.name.startswith(name) and not s.name.endswith("_created")
    }


def test_a_flushed_histogram_equals_one_observe_per_value() -> None:
    values = [0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.02, 0.02, 0.3, 7.0, 99.0, -1.0]
    buckets = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0)
    one, many = CollectorRegistry(), CollectorRegistry()
    h_one = Histogram("lat", "x", ["m"], buckets=buckets, registry=one)
    h_many = Histogram("lat", "x", ["m"], buckets=buckets, registry=many)
    for v in values:
        h_one.labels("a").observe(v)
    _observe_many(h_many.labels("a"), values)
    assert _samples(many, "lat") == _samples(one, "lat")
    assert _samples(one, "lat")[("lat_count", (("m", "a"),))] == len(values)


def test_tallies_reach_prometheus_at_the_flush_and_on_the_timer() -> None:
    metrics = ServingMetrics()
    requests = metrics.child(metrics.requests, "ep", "m", "1", "oip", "primary", "200")
    gauge = metrics.child(metrics.in_flight, "ep")
    latency = metrics.child(metrics.latency, "ep", "m", "1")
    for _ in range(5):
        metrics.add(requests)
        metrics.add(gauge)
        metrics.observe(latency, 0.002)
    metrics.add(gauge, -3)
    assert requests._value.get() == 0 and gauge._value.get() == 0  # tallied, not written
    assert "strata_serving_request_duration_seconds_count" not in generate_latest(
        metrics.registry
    ).decode().replace('_count{endpoint="ep",model="m",version="1"} 0.0', "")
    metrics.flush()
    got = _samples(metrics.registry, "strata_serving_")
    assert (
        got[
            (
                "strata_serving_requests_total",
                (
                    ("code", "200"),
                    ("endpoint", "ep"),
                    ("model", "m"),
                    ("path", "primary"),
                    ("protocol", "oip"),
                    ("version", "1"),
                ),
            )
        ]
        == 5
    )
    assert got[("strata_serving_in_flight", (("endpoint", "ep"),))] == 2
    assert (
        got[
            (
                "strata_serving_request_duration_seconds_count",
                (
                    ("endpoint", "ep"),
                    ("model", "m"),
                    ("version", "1"),
                ),
            )
        ]
        == 5
    )
    metrics.flush()  # nothing tallied since: nothing changes
    assert _samples(metrics.registry, "strata_serving_") == got

    async def later() -> float:
        metrics.start(asyncio.get_running_loop())
        metrics.start(asyncio.get_running_loop())  # idempotent: one timer
        metrics.add(requests, 2)
        await asyncio.sleep(metrics_mod.FLUSH_SECONDS * 2.5)
        return float(requests._value.get())

    assert asyncio.run(later()) == 7


class _Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def test_access_lines_are_written_in_batches_with_their_own_time_and_id() -> None:
    logger = logging.getLogger("strata.test_access_batches")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    stream = _Writes()
    plain = logging.StreamHandler(stream)
    plain.setFormatter(logging.Formatter("%(created).3f [%(request_id)s] %(message)s"))
    seen: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger.addHandler(plain)
    logger.addHandler(Capture())
    try:
        log = AccessLog(logger)

        async def traffic() -> float:
            t0 = time.perf_counter()
            for i in range(10):
                log.add("POST", "/v2/models/m/infer", 200 if i else 422, t0, f"id-{i}")
            stamp = time.time()
            assert stream.writes == 0 and not seen  # nothing yet: queued
            await asyncio.sleep(access_mod.FLUSH_SECONDS * 3)
            return stamp

        stamp = asyncio.run(traffic())
        lines = stream.getvalue().splitlines()
        assert stream.writes == 1, stream.writes  # ten lines, one write
        assert [line.split()[1] for line in lines] == [f"[id-{i}]" for i in range(10)]
        assert lines[0].endswith("POST /v2/models/m/infer 422 " + lines[0].rsplit(" ", 1)[1])
        assert [r.request_id for r in seen] == [f"id-{i}" for i in range(10)]  # type: ignore[attr-defined]
        assert all(abs(r.created - stamp) < 0.02 for r in seen)  # the request's time
        assert {r.status for r in seen} == {200, 422}  # type: ignore[attr-defined]

        for i in range(access_mod.MAX_PENDING):  # a full queue goes at once, even off a loop
            log.add("GET", "/ping", 200, time.perf_counter(), f"b-{i}")
        assert stream.writes >= 2 and len(seen) == 10 + access_mod.MAX_PENDING
        log.add("GET", "/ping", 200, time.perf_counter(), "last")
        log.flush()
        assert seen[-1].request_id == "last"  # type: ignore[attr-defined]
    finally:
        logger.handlers.clear()


def test_an_access_record_is_the_record_logging_would_make() -> None:
    """Lines' records start from a copy of one made by ``LogRecord``: every field but the
    time and the line's own values is what ``LogRecord(...)`` gives, so every formatter and
    filter sees the same record as before."""
    log = AccessLog()
    made = log._record((time.time(), "POST", "/v2/models/m/infer", 200, 1.25, "rid"))
    again = log._record((time.time(), "GET", "/ping", 404, 0.5, "rid-2"))  # from the template
    fresh = log._fresh(("GET", "/ping", 404, 0.5))
    timing = {"created", "msecs", "relativeCreated"}
    ours = {"request_id", "status", "route"}
    want = {k: v for k, v in fresh.__dict__.items() if k not in timing}
    got = {k: v for k, v in again.__dict__.items() if k not in timing | ours}
    assert got == want
    assert again.getMessage() == "GET /ping 404 0.50ms" and made.getMessage().endswith("1.25ms")
    assert abs(again.relativeCreated - fresh.relativeCreated) < 50  # ms, the same origin
    assert (again.request_id, again.status, again.route) == ("rid-2", 404, "/ping")  # type: ignore[attr-defined]
    formatted = logging.Formatter("%(asctime)s %(message)s").format(again)
    assert "message" not in log._template and formatted.endswith("GET /ping 404 0.50ms")  # type: ignore[operator]


@pytest.mark.parametrize("route", ["oip", "strata"])
def test_responses_carry_their_length_and_are_not_chunked(flights: Flights, route: str) -> None:
    from .test_worker_limits import serving

    config = {"endpoints": [{"model": "flights/1"}], "prediction_log": {"enabled": False}}
    frame = rows(flights.frame[FEATURES], 2)
    with serving(flights, config) as (url, app):
        if route == "oip":
            body = {
                "inputs": [
                    {"name": n, "shape": [2], "datatype": "FP64", "data": frame[n].tolist()}
                    for n in FEATURES
                ]
            }
            r = httpx.post(f"{url}/v2/models/flights/infer", json=body)
        else:
            r = httpx.post(
                f"{url}/v1/models/flights/predict", json={"records": frame.to_dict("records")}
            )
        assert r.status_code == 200, r.text
        assert r.headers["content-length"] == str(len(r.content))
        assert "transfer-encoding" not in r.headers
        missing = httpx.get(f"{url}/v2/models/nope")
        assert missing.status_code == 404
        assert missing.headers["content-length"] == str(len(missing.content))
        # the access lines and the metrics of these requests, written at shutdown
        app.close()
        assert app.access_log.pending == []


class _Bytes:
    """An artifact store keeping what the log writes, by path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def put_bytes(self, path: str, data: bytes) -> None:
        self.files[path] = data


def _log_requests(use_matrix: list[bool]) -> Any:
    """The table a prediction log writes for the same requests, each queued as its ``[n, 3]``
    matrix or as the matrix's columns (``use_matrix`` per request)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from strata.serving.predlog import PredictionLog

    store = _Bytes()
    plog = PredictionLog(store)
    rng = np.random.default_rng(7)
    for i, whole in enumerate(use_matrix):
        n = 1 + i % 3
        matrix = rng.random((n, 3))
        inputs = {name: matrix[:, j] for j, name in enumerate(["a", "b", "c"])}
        assert plog.record(
            request_id=f"r{i}",
            model="m",
            version="1",
            endpoint="m",
            path="primary",
            latency_ms=float(i),
            inputs=inputs,
            prediction=np.arange(n) % 2,
            proba=np.column_stack([np.full(n, 0.5), np.full(n, 0.5)]),
            matrix=matrix if whole else None,
        )
    assert plog.flush() == sum(1 + i % 3 for i in range(len(use_matrix)))
    tables = [pq.read_table(pa.BufferReader(data)) for data in store.files.values()]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table.sort_by([("latency_ms", "ascending"), ("row", "ascending")]).drop_columns(["ts"])


def test_a_request_queued_as_its_matrix_is_logged_as_its_columns() -> None:
    as_columns = _log_requests([False] * 7)
    assert as_columns.num_rows == 1 + 2 + 3 + 1 + 2 + 3 + 1
    assert _log_requests([True] * 7).equals(as_columns)
    assert _log_requests([True, False, True, True, False, False, True]).equals(as_columns)


def test_an_oip_matrix_request_queues_its_tensor_and_logs_every_column(
    flights: Flights,
) -> None:
    import duckdb
    from conftest import serve_in_thread

    from strata.server.serving import build_serving_app
    from strata.serving import handlers
    from strata.serving.models import ServeConfig

    # without adaptive batching: a batch's requests are queued as one entry (with the batch's
    # inputs, test_predlog_batches.py), each other request as itself
    config = {"endpoints": [{"model": "flights/1", "batching": {"enabled": False}}]}
    app = build_serving_app(ServeConfig.model_validate(config), flights.settings, auth=False)
    queued: list[Any] = []
    record = app.router.predlog.record

    def spy(**kw: Any) -> bool:
        queued.append(kw.get("matrix"))
        return record(**kw)

    app.router.predlog.record = spy  # type: ignore[method-assign]
    frame = rows(flights.frame[FEATURES], 3, start=40)
    tensor = {"name": "x", "shape": [3, len(FEATURES)], "datatype": "FP64"}
    matrix_body = {"inputs": [{**tensor, "data": frame.to_numpy("float64").ravel().tolist()}]}
    columns_body = {
        "inputs": [
            {"name": n, "shape": [3], "datatype": "FP64", "data": frame[n].tolist()}
            for n in FEATURES
        ]
    }
    for url in serve_in_thread(app):
        deadline = time.monotonic() + 60
        while not app.endpoints.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        for rid, body in (("as-matrix", matrix_body), ("as-columns", columns_body)):
            r = httpx.post(
                f"{url}/v2/models/flights/infer", json=body, headers={"x-request-id": rid}
            )
            assert r.status_code == 200, r.text
        app.router.predlog.flush()
    assert queued[0] is not None and queued[0].shape == (3, len(FEATURES))  # the tensor
    assert queued[1] is None  # one tensor per column: queued as columns
    assert handlers._matrix_of([], {}, {}) is None
    root = flights.settings.artifact_uri
    got = duckdb.sql(
        "select request_id, row, "
        + ", ".join(f"inputs.{n}" for n in FEATURES)
        + f" from read_parquet('{root}/predictions/model=flights/*/*.parquet', "
        "hive_partitioning=true, union_by_name=true) "
        "where request_id in ('as-matrix', 'as-columns') order by request_id, row"
    ).fetchall()
    want = [tuple(r) for r in frame.to_numpy("float64").tolist()]
    assert [g[2:] for g in got if g[0] == "as-matrix"] == want
    assert [g[2:] for g in got if g[0] == "as-columns"] == want
