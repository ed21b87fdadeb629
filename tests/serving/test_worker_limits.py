"""One worker's limits and housekeeping: explain passes the in-flight limit and the metrics,
large bodies decode off the event loop, swapped-out versions take their batcher with them,
the response cache keys on the model, shadows are bounded, the prediction log samples at
monitoring's rate, large requests get more threads, and ONNX exports serve."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import httpx
import numpy as np
import pytest

from strata.serving import handlers, routing
from strata.serving.models import ServeConfig
from strata.serving.policies import read_sample_rate, write_sample_rate

from .conftest import FEATURES, Flights, rows


@contextmanager
def serving(flights: Flights, config: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """A live one-worker server on ``config`` and its app (to look inside)."""
    from conftest import serve_in_thread

    from strata.server.serving import build_serving_app

    app = build_serving_app(ServeConfig.model_validate(config), flights.settings, auth=False)
    for url in serve_in_thread(app):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not app.endpoints.ready:
            time.sleep(0.05)
        assert app.endpoints.ready, app.endpoints.statuses()
        yield url, app


def _records(flights: Flights, n: int, start: int = 0) -> dict[str, Any]:
    return {"records": rows(flights.frame[FEATURES], n, start).to_dict("records")}


def _metric(url: str, needle: str) -> str:
    text = httpx.get(f"{url}/metrics").text
    return next((line for line in text.splitlines() if needle in line), "")


def test_explain_takes_an_in_flight_place_and_lands_in_the_metrics(flights: Flights) -> None:
    config = {"endpoints": [{"model": "flights/1"}], "prediction_log": {"enabled": False}}
    with serving(flights, config) as (url, app):
        r = httpx.post(f"{url}/v1/models/flights/explain", json=_records(flights, 2), timeout=60)
        assert r.status_code == 200, r.text
        line = _metric(url, 'protocol="explain"')
        assert 'code="200"' in line and line.endswith(" 1.0"), line
        app.in_flight = app.max_in_flight  # the worker is full
        try:
            busy = httpx.post(f"{url}/v1/models/flights/explain", json=_records(flights, 1))
        finally:
            app.in_flight = 0
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert 'code="503"' in _metric(url, 'protocol="explain",version=""')


def test_large_bodies_decode_in_a_worker_thread(
    flights: Flights, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    original = handlers._strata_doc

    def spy(body: bytes) -> Any:
        threads.append(threading.current_thread().name)
        return original(body)

    monkeypatch.setattr(handlers, "_strata_doc", spy)
    config = {"endpoints": [{"model": "flights/1"}], "prediction_log": {"enabled": False}}
    with serving(flights, config) as (url, _app):
        small = httpx.post(f"{url}/v1/models/flights/predict", json=_records(flights, 1))
        big = httpx.post(f"{url}/v1/models/flights/predict", json=_records(flights, 1500))
    assert small.status_code == 200 and big.status_code == 200, big.text
    assert len(big.json()["predictions"]) == 1500
    assert len(big.request.content) > handlers.DECODE_INLINE_BYTES
    loop_thread, worker = threads
    assert "AnyIO worker thread" not in loop_thread  # small: decoded on the event loop
    assert worker == "AnyIO worker thread"  # large: core/threads.run_blocking


def test_decode_runs_inline_for_small_bodies_and_off_the_loop_for_large_ones() -> None:
    import asyncio

    async def where(size: int) -> int:
        return await handlers.decode(size, threading.get_ident)

    async def main() -> tuple[int, int, int]:
        return threading.get_ident(), await where(10), await where(10 * 1024 * 1024)

    loop_id, small, large = asyncio.run(main())
    assert small == loop_id
    assert large != loop_id


def test_a_swapped_out_version_takes_its_batcher_along(flights: Flights) -> None:
    config = {
        "endpoints": [{"model": "flights@champion", "batching": {"enabled": True}}],
        "prediction_log": {"enabled": False},
        "poll_seconds": 3600,
    }
    try:
        with serving(flights, config) as (url, app):
            ep = app.endpoints.get("flights")
            first = weakref.ref(ep.primary)
            r = httpx.post(f"{url}/v1/models/flights/predict", json=_records(flights, 1))
            assert r.status_code == 200 and r.json()["version"] == "1"
            assert ep.primary.batcher is not None and len(app.router.batchers) == 1
            flights.client.registry.set_alias("flights", "champion", 2)
            app.endpoints.poll()
            r = httpx.post(f"{url}/v1/models/flights/predict", json=_records(flights, 1))
            assert r.json()["version"] == "2"
            for _ in range(3):
                gc.collect()
            assert first() is None  # the old version and its queue are gone
            assert len(app.router.batchers) == 1
    finally:
        flights.client.registry.set_alias("flights", "champion", 1)


def test_the_cache_key_names_the_model_and_version(flights: Flights) -> None:
    config = {
        "endpoints": [{"model": "flights/1"}, {"model": "carriers/1"}],
        "prediction_log": {"enabled": False},
    }
    with serving(flights, config) as (_url, app):
        a = app.endpoints.get("flights").primary
        b = app.endpoints.get("carriers").primary
        assert a.version == b.version == "1"
        same = {"x": np.array([1.0, 2.0])}
        assert routing.cache_key(a, same) != routing.cache_key(b, same)
        assert routing.cache_key(a, same) == routing.cache_key(a, {"x": np.array([1.0, 2.0])})


def test_shadows_beyond_the_limit_are_dropped_and_counted(
    flights: Flights, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "endpoints": [
            {"model": "flights/1", "policy": {"shadow": {"model": "flights/2", "fraction": 1}}}
        ],
        "prediction_log": {"enabled": False},
    }
    with serving(flights, config) as (url, app):
        r = httpx.post(f"{url}/v1/models/flights/predict", json=_records(flights, 1))
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while app.router.stats.get("flights", {}).get("shadow", 0) < 1:
            assert time.monotonic() < deadline, "the shadow never ran"
            time.sleep(0.05)
        monkeypatch.setattr(routing, "SHADOW_IN_FLIGHT", 0)
        for _ in range(3):
            r = httpx.post(f"{url}/v1/models/flights/predict", json=_records(flights, 1))
            assert r.status_code == 200 and r.json()["path"] == "primary"
        assert _metric(url, "strata_serving_shadow_dropped_total{").endswith(" 3.0")
        assert app.router.stats["flights"]["shadow_dropped"] == 3
        assert app.router.stats["flights"]["shadow"] == 1


def test_the_prediction_log_samples_at_monitorings_rate(flights: Flights) -> None:
    store = flights.client.backends.artifacts
    flights.client.monitoring.set_log_settings("carriers", sample_rate=0.0)
    assert read_sample_rate(store, "carriers") == 0.0  # monitoring's setting, where serving reads
    config = {
        "endpoints": [{"model": "carriers/1"}],
        "prediction_log": {"enabled": True, "flush_seconds": 0.05},
        "poll_seconds": 3600,
    }
    cols = ["carrier", "dep_delay", "distance", "hour"]
    body = {"records": rows(flights.frame[cols], 1).to_dict("records")}

    def logged() -> int:
        app.router.predlog.flush()
        glob = f"{flights.settings.artifact_uri}/predictions/model=carriers/*/*.parquet"
        try:
            return int(duckdb.sql(f"select count(*) from read_parquet('{glob}')").fetchall()[0][0])
        except duckdb.IOException:
            return 0

    try:
        with serving(flights, config) as (url, app):
            for _ in range(20):
                assert httpx.post(f"{url}/v1/models/carriers/predict", json=body).is_success
            assert logged() == 0
            write_sample_rate(store, "carriers", 0.25)
            app.endpoints.poll()
            for _ in range(400):
                assert httpx.post(f"{url}/v1/models/carriers/predict", json=body).is_success
            sampled = logged()
            assert 40 <= sampled <= 170, sampled  # ~100 of 400 (binomial: ±6 sd)
            flights.client.monitoring.set_log_settings("carriers", sample_rate=1.0)
            app.endpoints.poll()
            for _ in range(10):
                assert httpx.post(f"{url}/v1/models/carriers/predict", json=body).is_success
            assert logged() == sampled + 10
    finally:
        write_sample_rate(store, "carriers", 1.0)


def test_large_requests_get_the_large_batch_threads() -> None:
    import lightgbm  # noqa: F401  (loads LightGBM's OpenMP runtime)
    from threadpoolctl import threadpool_info

    from strata.serving.metrics import ServingMetrics

    def openmp() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"}

    router = routing.Router(ServingMetrics(), None, threads=1, large_batch_threads=3)
    try:
        assert router.pool.submit(openmp).result() == {3}
        assert 3 not in openmp() or len(openmp()) > 1  # this thread keeps its own count
    finally:
        router.close()


def test_an_onnx_export_serves_on_onnx_runtime_and_auto_picks_one(flights: Flights) -> None:
    import strata
    from strata.models import export_onnx

    from .conftest import _log, register, train_lgbm

    run_id = _log(flights.client, train_lgbm(flights.frame), flights.frame[FEATURES].head(5))
    export_onnx(f"runs:/{run_id}/model", tracking=flights.client.tracking)
    version = register(flights.client, "flights_onnx", run_id)
    native = strata.models.load(f"models:/flights_onnx/{version}", tracking=flights.client.tracking)
    x = rows(flights.frame[FEATURES], 20, 100)
    want = native.predict_proba(x)
    config = {
        "endpoints": [
            {"model": f"flights_onnx/{version}", "runtime": "onnx"},
            {"model": f"flights_onnx/{version}", "name": "auto", "runtime": "auto"},
        ],
        "prediction_log": {"enabled": False},
    }
    with serving(flights, config) as (url, app):
        assert app.endpoints.get("flights_onnx").primary.runtime == "onnx"
        assert app.endpoints.get("auto").primary.runtime in ("native", "onnx")
        for name in ("flights_onnx", "auto"):
            r = httpx.post(
                f"{url}/v1/models/{name}/predict", json={"records": x.to_dict("records")}
            )
            assert r.status_code == 200, r.text
            got = np.asarray(r.json()["probabilities"])
            assert np.allclose(got, want, atol=1e-5)  # ONNX runs in float32
        status = httpx.get(f"{url}/v1/endpoints").json()["endpoints"]
        assert {s["name"]: s["runtime"] for s in status}["flights_onnx"] == "onnx"
    _auto_picks_the_faster(flights, version)


def _auto_picks_the_faster(flights: Flights, version: str) -> None:
    """``runtime: auto`` keeps whichever runtime answers the example faster: each in turn is
    made 50 ms slower a predict (the rest is the models' real work; 2 ms was not enough on a
    loaded CI machine, where LightGBM's own predicts can stall for milliseconds)."""
    import time

    from strata.serving.models import parse_ref
    from strata.serving.served import ServedModel, load_served

    real = ServedModel.predict
    for slow, want in (("onnx", "native"), ("native", "onnx")):

        def predict(self: ServedModel, checked: Any, _slow: str = slow) -> Any:
            if self.runtime == _slow:
                time.sleep(0.05)
            return real(self, checked)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ServedModel, "predict", predict)
            served = load_served(
                parse_ref(f"flights_onnx/{version}"),
                tracking=flights.client.tracking,
                registry=flights.client.registry,
                runtime="auto",
            )
        assert served.runtime == want, slow


@pytest.mark.parametrize(
    "items",
    [["UA", "AA", "B6"], ["a", "bcd", ""], ["", ""], ["é1", "xy"], ["ab\x00", "cd\x00"], []],
)
def test_bytes_elements_of_one_width_or_many(items: list[str]) -> None:
    import struct

    from strata.serving.oip import _bytes_elements

    raw = b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in items)
    got = _bytes_elements(raw, len(items), "c")
    assert got.dtype == object and got.tolist() == items


def test_ready_waits_for_every_worker(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --workers N a probe reaches one worker: it says ready only once N live workers
    marked themselves ready (a dead worker's marker does not count)."""
    import os
    import subprocess
    import sys
    from types import SimpleNamespace

    from strata.server.serving import WORKERS_ENV, _WorkerReadiness

    monkeypatch.setenv(WORKERS_ENV, "2")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    readiness = _WorkerReadiness.from_env()
    assert readiness is not None
    readiness.wait_and_mark(SimpleNamespace(ready=True))  # this process: one worker
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (readiness.dir / f"ready-{dead.stdout.strip()}").touch()
    assert not readiness.all_ready()
    (readiness.dir / f"ready-{os.getppid()}").touch()  # a second live worker
    assert readiness.all_ready()
    monkeypatch.setenv(WORKERS_ENV, "1")
    assert _WorkerReadiness.from_env() is None


def test_a_lone_request_does_not_wait_for_a_batch(flights: Flights) -> None:
    """Adaptive batching is on by default and sends a request at once when the model is
    idle: with max_latency_ms at 10 s a lone request still answers in well under that."""
    config = {
        "endpoints": [{"model": "flights/1", "batching": {"max_latency_ms": 10_000}}],
        "prediction_log": {"enabled": False},
    }
    with serving(flights, config) as (url, app):
        assert app.endpoints.get("flights").config.batching.enabled  # the default
        for _ in range(3):
            start = time.monotonic()
            r = httpx.post(f"{url}/v1/models/flights/predict", json=_records(flights, 1))
            assert r.status_code == 200
            assert time.monotonic() - start < 5
        assert app.endpoints.get("flights").primary.batcher is not None


@pytest.mark.parametrize(
    "values",
    [
        np.array(["late", "on time", "", "é✓", "x"], dtype=object),  # str labels, mixed widths
        np.array(["UA", "AA", "B6"]),  # numpy unicode
        np.array([b"ab", b"", b"\xff\x00c"], dtype=object),  # raw bytes, a NUL inside
        np.array([b"ab", b"cde"]),  # numpy fixed-width bytes
        np.array(["ab\x00", "c"], dtype=object),  # a trailing NUL: element by element
        np.array([b"ab", "cd", 7], dtype=object),  # mixed types: element by element
        np.array([["a", "bb"], ["ccc", ""]], dtype=object),  # 2-D
        np.array(["z" * 5000] + ["a"] * 3, dtype=object),  # one long among short ones
        np.array([], dtype=object),
    ],
)
def test_bytes_outputs_match_the_protocol_element_by_element(values: np.ndarray) -> None:
    """BYTES outputs are byte for byte the length-prefixed elements, and the real
    tritonclient reads them back (kept element by element: a numpy build of the same bytes
    measured 5x slower for 10,000 labels and 140x for one, docs/serving.md)."""
    from tritonclient.utils import deserialize_bytes_tensor

    from strata.serving.oip import _bytes_payload

    flat = values.reshape(-1).tolist()
    encoded = [v if isinstance(v, bytes) else str(v).encode() for v in flat]
    want = b"".join(len(b).to_bytes(4, "little") + b for b in encoded)
    got = _bytes_payload(values)
    assert got == want
    if flat:
        assert deserialize_bytes_tensor(got).tolist() == encoded


def test_a_shutdown_while_models_load_leaves_nothing_running(flights: Flights) -> None:
    """A worker told to stop while its models are still loading (a quick restart, a test
    that is done before the server is): the load finishes without error and starts no
    predict pool threads or alias follower behind the shutdown."""
    import asyncio

    from strata.server.serving import build_serving_app

    config = {"endpoints": [{"model": "flights@champion"}], "prediction_log": {"enabled": False}}
    app = build_serving_app(ServeConfig.model_validate(config), flights.settings, auth=False)
    failures: list[BaseException] = []
    loaded = threading.Event()
    load_all = app.endpoints.load_all

    def slow_load_all() -> None:  # the real load, observed: it is still running at shutdown
        loaded.wait(10)
        load_all()

    app.endpoints.load_all = slow_load_all
    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)  # type: ignore[arg-type]
    try:

        async def start_then_stop() -> None:
            await app.on_startup()
            await app.on_shutdown()

        asyncio.run(start_then_stop())
        loaded.set()  # the load goes on after the shutdown
        for loader in [t for t in threading.enumerate() if t.name == "strata-load"]:
            loader.join(30)
            assert not loader.is_alive()
    finally:
        threading.excepthook = previous
    assert failures == []
    assert app.endpoints._thread is None  # no alias follower left running
    assert not app.router.pool._threads  # no predict threads started into a closed pool
