"""Prediction-log partitions written by serving's real writer (strata/serving/predlog.py),
with the clock of each batch set (the writer stamps rows with the time of ``record``)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from strata.serving import predlog


def write_log(
    store: Any,
    monkeypatch: pytest.MonkeyPatch,
    *,
    model: str,
    version: str,
    at: dt.datetime,
    inputs: dict[str, np.ndarray],
    prediction: np.ndarray,
    proba: np.ndarray | None = None,
    request_id: str | None = None,
    entity_key: str | None = None,
    endpoint: str | None = None,
    path: str = "primary",
    latency_ms: float = 1.0,
) -> str:
    """One request's rows logged at ``at`` and flushed to ``store``; its request id."""
    rid = request_id or uuid.uuid4().hex
    ns = int(at.timestamp() * 1e9)
    with monkeypatch.context() as m:
        m.setattr(predlog.time, "time_ns", lambda: ns)
        log = predlog.PredictionLog(store)
        log.record(
            request_id=rid,
            model=model,
            version=version,
            endpoint=endpoint or model,
            path=path,
            latency_ms=latency_ms,
            inputs=inputs,
            prediction=prediction,
            proba=proba,
            entity_key=entity_key,
        )
        assert log.flush() == len(prediction)
    return rid


class Receiver:
    """A real HTTP server on 127.0.0.1 recording POSTs; the first ``fail`` answer 500."""

    def __init__(self, fail: int = 0, status: int = 200, location: str | None = None) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail = fail
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.calls.append((dict(self.headers), body))
                code = 500 if len(outer.calls) <= outer.fail else status
                self.send_response(code)
                if location:
                    self.send_header("Location", location)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
