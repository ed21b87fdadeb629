"""The prediction log per adaptive batch: a batch's requests queued as one entry, written as the
rows each request would have written alone (ids, rows, latencies, paths, keys right per row);
drops counted, sampled-out requests left out, latencies set when the answers are sent."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from strata.serving.metrics import ServingMetrics
from strata.serving.models import Batching, PredictionLogConfig
from strata.serving.predlog import PredictionLog
from strata.serving.routing import Outcome, Router
from strata.serving.served import Prediction

from .conftest import FEATURES, Flights, rows


class _Bytes:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def put_bytes(self, path: str, data: bytes) -> None:
        self.files[path] = data


def _table(store: _Bytes) -> Any:
    tables = [pq.read_table(pa.BufferReader(data)) for data in store.files.values()]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table.sort_by([("request_id", "ascending"), ("row", "ascending")])


def _request(i: int) -> dict[str, Any]:
    """Request ``i``: 1-3 rows of inputs a (float) and b (string), its prediction and proba."""
    n = 1 + i % 3
    a = np.arange(n, dtype=np.float64) + 10 * i
    return {
        "request_id": f"r{i:02d}",
        "endpoint": "ep" if i % 4 else "other",
        "path": "canary" if i % 5 == 0 else "primary",
        "latency_ms": 1.5 * i,
        "entity_key": None if i % 2 else f"k{i}",
        "inputs": {"a": a, "b": np.array([f"s{i}"] * n, dtype=object)},
        "prediction": (a > 10).astype(np.int64),
        "proba": np.column_stack([a / 100, 1 - a / 100]),
    }


def _batch_kw(requests: list[dict[str, Any]]) -> dict[str, Any]:
    """What record_batch takes for these requests answered by one predict."""
    return {
        "request_ids": tuple(r["request_id"] for r in requests),
        "endpoints": tuple(r["endpoint"] for r in requests),
        "paths": tuple(r["path"] for r in requests),
        "keys": tuple(r["entity_key"] for r in requests),
        "latency_ms": np.array([r["latency_ms"] for r in requests]),
        "sizes": np.array([len(r["prediction"]) for r in requests]),
        "inputs": {
            name: np.concatenate([r["inputs"][name] for r in requests]) for name in ("a", "b")
        },
        "prediction": np.concatenate([r["prediction"] for r in requests]),
        "proba": np.concatenate([r["proba"] for r in requests]),
    }


def test_a_batch_is_written_as_the_rows_of_its_requests_recorded_alone() -> None:
    requests = [_request(i) for i in range(12)]
    alone = _Bytes()
    plog = PredictionLog(alone)
    for r in requests:
        assert plog.record(model="m", version="1", **r)
    assert plog.flush() == sum(1 + i % 3 for i in range(12))

    batched = _Bytes()
    plog = PredictionLog(batched)
    # three batches of 5, 1 and 4 requests, and two requests recorded alone among them
    assert plog.record_batch(model="m", version="1", **_batch_kw(requests[0:5]))
    assert plog.record(model="m", version="1", **requests[5])
    assert plog.record_batch(model="m", version="1", **_batch_kw(requests[6:7]))
    assert plog.record_batch(model="m", version="1", **_batch_kw(requests[7:11]))
    assert plog.record(model="m", version="1", **requests[11])
    assert plog.queued_rows == sum(1 + i % 3 for i in range(12))
    assert plog.flush() == plog.written_rows == sum(1 + i % 3 for i in range(12))
    assert len(batched.files) == 1  # one model, version and day: one file

    want, got = _table(alone), _table(batched)
    assert got.schema.equals(want.schema)
    assert got.drop_columns(["ts"]).equals(want.drop_columns(["ts"]))
    by_id = {
        rid: lat
        for rid, lat in zip(
            *got.select(["request_id", "latency_ms"]).to_pydict().values(), strict=True
        )
    }
    assert by_id["r07"] == 1.5 * 7  # a request's latency on each of its rows
    assert got.column("row").to_pylist()[:6] == [0, 0, 1, 0, 1, 2]  # r00: 1 row, r01: 2, r02: 3


def test_a_batch_that_does_not_fit_is_dropped_whole_and_counted() -> None:
    drops: list[int] = []
    store = _Bytes()
    plog = PredictionLog(store, PredictionLogConfig(max_rows=8), on_drop=drops.append)
    requests = [_request(i) for i in range(6)]  # 1+2+3+1+2+3 = 12 rows
    assert plog.record_batch(model="m", version="1", **_batch_kw(requests[:3]))  # 6 rows
    started = time.perf_counter()
    assert not plog.record_batch(model="m", version="1", **_batch_kw(requests[3:]))  # 6 more
    assert time.perf_counter() - started < 0.5  # never waits
    assert plog.dropped_rows == 6 and drops == [6]
    assert plog.queued_rows == 6
    assert plog.flush() == 6
    assert sorted(set(_table(store).column("request_id").to_pylist())) == ["r00", "r01", "r02"]


class _Served:
    """A served version whose predict doubles input ``x`` (proba from it too)."""

    def __init__(self) -> None:
        self.name, self.version, self.batcher = "m", "1", None
        self.batches: list[int] = []

    def predict(self, checked: dict[str, np.ndarray]) -> Prediction:
        x = checked["x"]
        self.batches.append(len(x))
        return Prediction(x * 2, np.column_stack([x / 1000, 1 - x / 1000]), [0, 1])


def _router(**config: Any) -> tuple[Router, _Bytes, Any, _Served]:
    store = _Bytes()
    router = Router(ServingMetrics(), PredictionLog(store, PredictionLogConfig(**config)))
    ep = SimpleNamespace(name="ep", config=SimpleNamespace(batching=Batching()))
    return router, store, ep, _Served()


async def _submit_together(
    router: Router, ep: Any, served: _Served, tags: list[Any]
) -> list[tuple[Prediction, Any]]:
    """Request i (i + 1 rows of x = 100 i + row) for each tag, all in one loop turn: one
    batch. A tag "log" means the request is logged with its batch (``LogAs``, its start 10 ms
    earlier per i), None and False are given as they are."""
    now = time.perf_counter()

    def log_as(i: int, tag: Any) -> Any:
        if tag != "log":
            return tag
        return (f"q{i}", ep.name, "primary", f"key{i}", now - 0.01 * i, 100)

    async def one(i: int, tag: Any) -> tuple[Prediction, Any]:
        x = 100.0 * i + np.arange(i + 1)
        if tag == "log":  # through the router: sampling, tag and batcher as a request
            return await router._predict(ep, served, {"x": x}, i + 1, log_as(i, tag))  # type: ignore[arg-type]
        batcher = served.batcher
        assert batcher is not None
        return await batcher.submit({"x": x}, i + 1, tag)

    first = await router._predict(ep, served, {"x": np.array([-1.0])}, 1)  # type: ignore[arg-type]
    assert first[1] is None  # no log_as: left to Router.record
    return list(await asyncio.gather(*[one(i, t) for i, t in enumerate(tags)]))


def test_requests_sharing_a_batch_get_their_own_rows_ids_paths_and_latencies() -> None:
    router, store, ep, served = _router()
    try:
        tags = ["log", "log", None, "log", False, "log"]
        answers = asyncio.run(_submit_together(router, ep, served, tags))
        assert served.batches[-1] == sum(range(1, 7))  # the six requests: one predict
        for i, (pred, slot) in enumerate(answers):
            assert pred.prediction.tolist() == [2 * (100.0 * i + r) for r in range(i + 1)]
            if tags[i] != "log":
                assert slot is tags[i]  # None: Router.record logs it; False: left out
        logged = [i for i, t in enumerate(tags) if t == "log"]
        assert [answers[i][1][1] for i in logged] == [0, 1, 2, 3]  # slots in the entry
        # the answers of requests 0 and 3 are sent: their latencies are set as measured then
        for i in (0, 3):
            outcome = Outcome(served, answers[i][0], "primary", {}, answers[i][1])  # type: ignore[arg-type]
            router.record(ep, outcome, f"q{i}", 1000.0 + i, None)
        assert router.predlog is not None
        assert router.predlog.flush() == sum(i + 1 for i in logged)
        table = _table(store).to_pydict()
        assert table["request_id"] == [f"q{i}" for i in logged for _ in range(i + 1)]
        assert table["row"] == [r for i in logged for r in range(i + 1)]
        assert [s["x"] for s in table["inputs"]] == [
            100.0 * i + r for i in logged for r in range(i + 1)
        ]
        assert [o["prediction"] for o in table["outputs"]] == [
            2 * (100.0 * i + r) for i in logged for r in range(i + 1)
        ]
        assert [o["proba"][0] for o in table["outputs"]] == [
            (100.0 * i + r) / 1000 for i in logged for r in range(i + 1)
        ]
        assert table["entity_key"] == [f"key{i}" for i in logged for _ in range(i + 1)]
        assert set(table["path"]) == {"primary"} and set(table["endpoint"]) == {"ep"}
        latency = dict(zip(table["request_id"], table["latency_ms"], strict=True))
        assert latency["q0"] == 1000.0 and latency["q3"] == 1003.0  # set when sent
        # not sent before the flush: the latency when the batch was predicted (10 ms per i)
        assert 10.0 * 1 <= latency["q1"] < 10.0 * 1 + 1000
        assert 10.0 * 5 <= latency["q5"] < 10.0 * 5 + 1000
    finally:
        router.close()


def test_sampled_out_models_are_skipped_and_a_full_log_counts_the_batch() -> None:
    router, store, ep, served = _router(max_rows=4)
    try:
        router.sample_rates["m"] = 0.0
        answers = asyncio.run(_submit_together(router, ep, served, ["log"] * 3))
        assert [slot for _, slot in answers] == [False] * 3
        assert router.predlog is not None
        assert router.predlog.queued_rows == 0 and router.predlog.dropped_rows == 0
        router.sample_rates["m"] = 1.0
        answers = asyncio.run(_submit_together(router, ep, served, ["log"] * 3))  # 6 rows > 4
        assert router.predlog.dropped_rows == 6 and router.predlog.queued_rows == 0
        outcome = Outcome(served, answers[0][0], "primary", {}, answers[0][1])  # type: ignore[arg-type]
        router.record(ep, outcome, "q0", 1.0, None)  # a dropped batch's slot: nothing logged
        assert router.predlog.queued_rows == 0
        del router.sample_rates["m"]
        asyncio.run(_submit_together(router, ep, served, ["log", "log"]))  # 3 rows
        assert router.predlog.flush() == 3
        assert sorted(_table(store).column("request_id").to_pylist()) == ["q0", "q1", "q1"]
    finally:
        router.close()


def test_concurrent_http_requests_are_logged_with_their_batches(flights: Flights) -> None:
    from conftest import serve_in_thread

    from strata.server.serving import build_serving_app
    from strata.serving.models import ServeConfig

    config = {"endpoints": [{"model": "flights/2", "name": "batched"}]}
    app = build_serving_app(ServeConfig.model_validate(config), flights.settings, auth=False)
    entries: list[int] = []
    record_batch = app.router.predlog.record_batch

    def spy(**kw: Any) -> bool:
        entries.append(len(kw["request_ids"]))
        return record_batch(**kw)

    app.router.predlog.record_batch = spy  # type: ignore[method-assign]
    frames = {f"c{i:03d}": rows(flights.frame[FEATURES], 1 + i % 3, start=i) for i in range(96)}
    elapsed: dict[str, float] = {}
    for url in serve_in_thread(app):
        deadline = time.monotonic() + 60
        while not app.endpoints.ready and time.monotonic() < deadline:
            time.sleep(0.05)

        def post(rid: str, url: str = url) -> None:
            frame = frames[rid]
            body = {"dataframe_split": frame.to_dict("split")} if rid[-1] in "02468" else None
            started = time.perf_counter()
            if body is None:
                tensor = {"name": "x", "shape": list(frame.shape), "datatype": "FP64"}
                data = frame.to_numpy("float64").ravel().tolist()
                r = httpx.post(
                    f"{url}/v2/models/batched/infer",
                    json={"inputs": [{**tensor, "data": data}]},
                    headers={"x-request-id": rid},
                )
            else:
                r = httpx.post(f"{url}/invocations", json=body, headers={"x-request-id": rid})
            elapsed[rid] = (time.perf_counter() - started) * 1000
            assert r.status_code == 200, r.text

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(post, frames))
        app.router.predlog.flush()  # what the writer thread has not written yet
        assert app.router.predlog.written_rows == sum(len(f) for f in frames.values())
    assert sum(entries) == 96 and len(entries) < 96  # some batches held several requests
    import duckdb

    root = flights.settings.artifact_uri
    got = duckdb.sql(
        "select request_id, row, path, latency_ms, "
        + ", ".join(f"inputs.{n}" for n in FEATURES)
        + f" from read_parquet('{root}/predictions/model=flights/*/*.parquet', "
        "hive_partitioning=true, union_by_name=true) "
        "where endpoint = 'batched' order by request_id, row"
    ).fetchall()
    assert [(g[0], g[1]) for g in got] == [
        (rid, r) for rid, f in sorted(frames.items()) for r in range(len(f))
    ]
    for g in got:
        assert list(g[4:]) == frames[g[0]].iloc[g[1]].tolist()
        assert g[2] == "primary"
        assert 0 < g[3] <= elapsed[g[0]]  # the server's latency, within the client's
