"""Adaptive batching on a live server (concurrent 1-row requests answered from shared model
calls, each with its own rows back), and the `strata serving` CLI."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from strata.cli.main import app
from strata.serving.models import EndpointStatus
from strata.serving.policies import publish_status
from strata.serving.served import ServedModel

from .conftest import FEATURES, Flights, expected, rows, start_serving


@pytest.fixture(scope="module")
def batched(flights: Flights) -> Iterator[str]:
    config = {
        "endpoints": [
            {
                "model": "flights/1",
                "batching": {"enabled": True, "max_batch_size": 16, "max_latency_ms": 50},
            }
        ],
        "prediction_log": {"enabled": False},
    }
    yield from start_serving(flights.settings, config)


def test_concurrent_requests_share_batches_and_get_their_own_rows(
    batched: str, flights: Flights, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = rows(flights.frame, 12)[FEATURES]
    labels, _ = expected(flights.client, "models:/flights/1", x)
    answers: dict[int, list[int]] = {}
    # A busy model: the first batch predicts for 0.2 s, so the other requests arrive while it
    # does and must gather (a 1-row LightGBM predict takes ~0.1 ms: twelve client threads
    # would otherwise each find the model idle and go alone, as they should).
    predict = ServedModel.predict
    busy = threading.Event()

    def first_slow(self: ServedModel, checked: Any) -> Any:
        if not busy.is_set():
            busy.set()
            time.sleep(0.2)
        return predict(self, checked)

    monkeypatch.setattr(ServedModel, "predict", first_slow)

    def one(i: int) -> None:
        body = {"records": x.iloc[i : i + 1].to_dict(orient="records")}
        r = httpx.post(f"{batched}/v1/models/flights/predict", json=body, timeout=10)
        assert r.status_code == 200
        answers[i] = r.json()["predictions"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [answers[i][0] for i in range(12)] == labels.tolist()
    metrics = httpx.get(f"{batched}/metrics").text
    count = re.search(r'strata_serving_batch_rows_count\{model="flights",version="1"\} ([\d.]+)',
                      metrics)  # fmt: skip
    total = re.search(r'strata_serving_batch_rows_sum\{model="flights",version="1"\} ([\d.]+)',
                      metrics)  # fmt: skip
    assert count is not None and total is not None
    assert float(total.group(1)) >= 12
    assert float(count.group(1)) < float(total.group(1))  # fewer model calls than rows
    assert "strata_serving_queue_seconds_count" in metrics


def test_serving_cli(flights: Flights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_HOME", str(flights.settings.home))
    monkeypatch.setenv("STRATA_ARTIFACT_URI", str(flights.settings.artifact_uri))
    status = EndpointStatus(name="cli-ep", model="flights@champion", version="1", ready=True)
    from strata.backends.artifacts import ArtifactStore

    publish_status(ArtifactStore(str(flights.settings.artifact_uri)), status)
    runner = CliRunner()
    listed = runner.invoke(app, ["serving", "endpoints", "--json"])
    assert listed.exit_code == 0, listed.output
    assert "cli-ep" in [e["name"] for e in json.loads(listed.output)]
    changed = runner.invoke(
        app, ["serving", "policy", "cli-ep", "--canary", "flights/2=0.25", "--json"]
    )
    assert changed.exit_code == 0, changed.output
    shown = runner.invoke(app, ["serving", "policy", "cli-ep"])
    assert json.loads(shown.output)["canary"] == [{"model": "flights/2", "weight": 0.25}]
    bad = runner.invoke(app, ["serving", "policy", "cli-ep", "--canary", "flights/2"])
    assert bad.exit_code != 0 and "REF=WEIGHT" in str(bad.exception)
    cached = runner.invoke(app, ["serving", "policy", "cli-ep", "--fallback-cached", "--json"])
    assert cached.exit_code == 0, cached.output
    fallback = json.loads(cached.output)["fallback"]
    assert (fallback["cached"], fallback["model"]) == (True, None)
    both = runner.invoke(
        app, ["serving", "policy", "cli-ep", "--fallback-cached", "--fallback", "flights/2"]
    )
    assert both.exit_code == 0, both.output
    shown = runner.invoke(app, ["serving", "policy", "cli-ep"])
    assert json.loads(shown.output)["fallback"]["model"] == "flights/2"
    assert json.loads(shown.output)["fallback"]["cached"] is True
