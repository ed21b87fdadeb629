"""The prediction log's byte cap (security review): requests with large string inputs against
a blocked store keep the log's memory under ``max_bytes``, the rest dropped and counted, every
request still answered; the writer releases the bytes once written."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import httpx
import numpy as np

from strata.backends.artifacts import ArtifactStore
from strata.serving.models import PredictionLogConfig
from strata.serving.predlog import PredictionLog, request_bytes

from .conftest import Flights, GatedStore, rows
from .test_worker_limits import serving

MB = 2**20
CAP = 8 * MB


def _big(plog: PredictionLog, i: int, body_bytes: int | None) -> bool:
    text = f"{i:08d}" + "x" * (MB - 8)  # a fresh 1 MiB string per request
    return plog.record(
        request_id=f"r{i}",
        model="m",
        version="1",
        endpoint="m",
        path="primary",
        latency_ms=1.0,
        inputs={"text": np.array([text], dtype=object), "n": np.zeros(1)},
        prediction=np.zeros(1),
        body_bytes=body_bytes,
    )


def test_large_strings_against_a_blocked_store_stay_under_the_byte_cap(tmp_path: Path) -> None:
    blocked = GatedStore(ArtifactStore(str(tmp_path)))
    config = PredictionLogConfig(max_bytes=CAP, flush_rows=1, flush_seconds=0.05)
    plog = PredictionLog(blocked, config).start()
    try:
        assert _big(plog, -1, None)
        assert blocked.entered.wait(10)  # the writer holds the first request, stuck
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        accepted = [
            _big(plog, i, None if i % 2 else MB + 40) for i in range(40)
        ]  # without and with the body's length (the protocol layer's)
        elapsed = time.perf_counter() - start
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        assert plog.queued_bytes <= CAP
        assert held < CAP + MB, held  # 40 MiB offered; what stays is the log's, under the cap
        assert 4 <= sum(accepted) <= 7  # ~1 MiB each (the estimate errs on the high side)
        assert plog.dropped_rows == 40 - sum(accepted)
        assert elapsed < 2  # never waits for the store
    finally:
        blocked.gate.set()
        plog.close()
    assert plog.written_rows == 1 + sum(accepted)
    assert plog.queued_bytes == 0  # the writer released what it wrote
    assert _big(plog, 99, None)  # room again


def test_a_served_model_with_a_string_input_cannot_fill_memory(flights: Flights) -> None:
    config = {
        "endpoints": [{"model": "carriers/1"}],
        "prediction_log": {"enabled": True, "flush_seconds": 0.05, "max_bytes": CAP},
        "poll_seconds": 3600,
    }
    cols = ["carrier", "dep_delay", "distance", "hour"]
    record = rows(flights.frame[cols], 1).to_dict("records")[0]
    with serving(flights, config) as (url, app):
        plog = app.router.predlog
        blocked = GatedStore(plog.store)
        plog.store = blocked
        try:
            with httpx.Client(timeout=30) as http:
                first = http.post(f"{url}/v1/models/carriers/predict", json={"records": [record]})
                assert first.status_code == 200
                assert blocked.entered.wait(10)  # the writer is stuck in put_bytes
                for i in range(30):
                    big = record | {"carrier": f"{i:04d}" + "Z" * (MB - 4)}
                    r = http.post(f"{url}/v1/models/carriers/predict", json={"records": [big]})
                    assert r.status_code == 200, r.text  # still answered
                    assert plog.queued_bytes <= CAP
                metrics = http.get(f"{url}/metrics").text
        finally:
            blocked.gate.set()
        assert plog.dropped_rows >= 22  # 30 MiB of strings offered, at most 8 kept
        dropped = next(
            line
            for line in metrics.splitlines()
            if line.startswith("strata_serving_prediction_log_dropped_rows_total")
        )
        assert float(dropped.split()[-1]) == plog.dropped_rows
        plog.flush()
        assert plog.queued_bytes == 0


def test_a_matrix_request_is_sized_as_request_bytes_sizes_its_arrays(tmp_path: Path) -> None:
    """``record`` sizes a numeric ``[n, k]`` tensor inline (the hot path); the figure must be
    :func:`request_bytes`' for the same arrays, and any object array still goes through it."""
    numbers = np.arange(24, dtype=np.float64).reshape(3, 8)
    labels = np.array(["a", "bb", "ccc"], dtype=object)
    cases = [
        (numbers, np.arange(3), np.full((3, 2), 0.5)),
        (numbers, np.arange(3, dtype=np.int32), None),
        (numbers, labels, np.full((3, 2), 0.5)),
        (numbers, np.arange(3), np.full((3, 2), 0.5).astype(object)),
        (np.array([["x" * 50] * 2] * 3, dtype=object), np.arange(3), None),
    ]
    for matrix, prediction, proba in cases:
        plog = PredictionLog(ArtifactStore(str(tmp_path)), PredictionLogConfig())
        assert plog.record(
            request_id="r",
            model="m",
            version="1",
            endpoint="m",
            path="primary",
            latency_ms=1.0,
            inputs={f"x{i}": matrix[:, i] for i in range(matrix.shape[1])},
            prediction=prediction,
            proba=proba,
            body_bytes=None,
            matrix=matrix,
        )
        assert plog.queued_bytes == request_bytes((matrix, prediction, proba), None)
