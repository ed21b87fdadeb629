"""What the server does around predictions: alias swaps under load with zero failures, a
model raising (500, the worker survives), overload (503 + Retry-After), auth, the
prediction log and the metrics."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
import pytest

import strata
from strata.core.principal import Role

from .conftest import FEATURES, Flights, rows, serve_process, start_serving

USER_CODE = '''
import os
import time

import numpy as np


class Touchy:
    """Doubles x; raises on a negative x, and on every x while the file named by
    TOUCHY_BROKEN exists; sleeps when x is 999."""

    def load(self, context):
        pass

    def predict(self, context, inputs):
        x = inputs["x"].to_numpy()
        if (x < 0).any():
            raise ValueError("negative input")
        if os.path.exists(os.environ.get("TOUCHY_BROKEN", "/nonexistent/touchy")):
            raise RuntimeError("broken")
        if (x == 999).any():
            time.sleep(1.0)
        return x * 2.0
'''


@pytest.fixture(scope="module")
def touchy_run(flights: Flights, tmp_path_factory: pytest.TempPathFactory) -> str:
    import pandas as pd

    src = tmp_path_factory.mktemp("code")
    (src / "touchy_model.py").write_text(USER_CODE)
    spec = importlib.util.spec_from_file_location("touchy_model", src / "touchy_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["touchy_model"] = module
    spec.loader.exec_module(module)
    example = pd.DataFrame({"x": [1.0, 2.0]})
    with strata.start_run(
        experiment="touchy", client=flights.client, capture_environment=False
    ) as run:
        strata.log_model(module.Touchy(), "model", input_example=example, trusted=True)
        from sklearn.linear_model import LinearRegression

        steady = LinearRegression().fit(example, example["x"] * 3.0)  # data, no code to run
        strata.log_model(steady, "steady", input_example=example)
    return run.run_id


@pytest.fixture(scope="module")
def touchy(flights: Flights, touchy_run: str) -> Iterator[str]:
    config = {
        "endpoints": [{"model": f"runs:/{touchy_run}/model", "name": "touchy", "trusted": True}],
        "max_in_flight": 1,
        "prediction_log": {"enabled": False},
    }
    yield from start_serving(flights.settings, config)


def test_model_raising_is_a_500_with_the_request_id_and_the_worker_survives(touchy: str) -> None:
    r = httpx.post(
        f"{touchy}/v1/models/touchy/predict",
        json={"records": [{"x": -1.0}]},
        headers={"x-request-id": "boom-1"},
    )
    assert r.status_code == 500
    assert r.json()["details"]["request_id"] == "boom-1"
    assert "negative input" not in r.text  # nothing internal in the answer
    ok = httpx.post(f"{touchy}/v1/models/touchy/predict", json={"records": [{"x": 2.0}]})
    assert ok.status_code == 200 and ok.json()["predictions"] == [4.0]


def test_overload_is_a_503_with_retry_after(touchy: str) -> None:
    slow_body = {"columns": {"x": [999.0] * 100}}  # > INLINE_ROWS: predicts off the loop
    results: list[int] = []

    def slow() -> None:
        results.append(
            httpx.post(f"{touchy}/v1/models/touchy/predict", json=slow_body, timeout=10).status_code
        )

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    busy = httpx.post(f"{touchy}/v1/models/touchy/predict", json={"records": [{"x": 1.0}]})
    t.join()
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert results == [200]


def _hammer(
    url: str,
    body: dict[str, Any],
    stop: threading.Event,
    statuses: Counter[int],
    versions: list[list[str]],
) -> None:
    """One load-generator thread: requests back to back until ``stop``."""
    seen: list[str] = []
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set():
            r = http.post("/v1/models/flights/predict", json=body)
            statuses[r.status_code] += 1
            if r.status_code == 200:
                seen.append(r.json()["version"])
    versions.append(seen)


@pytest.mark.parametrize("process", ["thread", "strata-serve"])
def test_alias_move_under_load_drops_nothing(
    flights: Flights, process: str, tmp_path: Path
) -> None:
    """In a thread of this process, and as `strata serve` runs it: its own process, its heap
    frozen once loaded, unfrozen, collected and frozen again by the swap (the freezing
    itself is tested in test_heap.py). The frozen case once ran in a thread here: the swap
    then collected the whole pytest worker's heap, seconds with the GIL held, and twice in
    full-suite runs a load thread's connection was reset. That was this test's shared
    process, not the server; a serving worker's own heap collects in ~0.1 s."""
    config = {
        "endpoints": [{"model": "flights@champion"}],
        "poll_seconds": 0.1,
        "prediction_log": {"enabled": False},
    }
    body = {"records": rows(flights.frame, 1)[FEATURES].to_dict(orient="records")}
    flights.client.registry.set_alias("flights", "champion", 1)
    servers = (
        start_serving(flights.settings, config)
        if process == "thread"
        else serve_process(flights.settings, config, tmp_path)
    )
    try:
        for url in servers:
            _swap_under_load(flights, url, body)
    finally:
        flights.client.registry.set_alias("flights", "champion", 1)


def _swap_under_load(flights: Flights, url: str, body: dict[str, Any]) -> None:
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    versions: list[list[str]] = []

    args = (url, body, stop, statuses, versions)
    threads = [threading.Thread(target=_hammer, args=args) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    flights.client.registry.set_alias("flights", "champion", 2, reason="swap test")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/v2/models/flights").json()["versions"] == ["2"]:
            break
        time.sleep(0.05)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert set(statuses) == {200}, statuses
    assert sum(statuses.values()) > 100
    for seen in versions:
        assert seen[0] == "1" and seen[-1] == "2"
        first_two = seen.index("2")
        assert set(seen[first_two:]) == {"2"}  # once swapped, never back
    metrics = httpx.get(f"{url}/metrics").text
    assert 'strata_serving_swaps_total{endpoint="flights"} 1.0' in metrics


def test_a_model_that_fails_to_load_is_not_ready_while_others_serve(flights: Flights) -> None:
    config = {
        "endpoints": [{"model": "flights@champion"}, {"model": "ghost/1"}],
        "prediction_log": {"enabled": False},
    }
    for url in start_serving(flights.settings, config):
        ready = httpx.get(f"{url}/v2/health/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
        models = ready.json()["models"]
        assert models["flights"]["ready"] is True
        assert models["ghost"]["ready"] is False and "ghost" in models["ghost"]["error"]
        assert httpx.get(f"{url}/v2/models/ghost/ready").status_code == 503
        x = rows(flights.frame, 1)[FEATURES].to_dict(orient="records")
        ok = httpx.post(f"{url}/v1/models/flights/predict", json={"records": x})
        assert ok.status_code == 200
        ghost = httpx.post(f"{url}/v1/models/ghost/predict", json={"records": x})
        assert ghost.status_code == 503 and "ghost" in ghost.json()["message"]


def test_prediction_log_and_metrics(flights: Flights) -> None:
    config = {
        "endpoints": [{"model": "flights/2"}],
        "prediction_log": {"enabled": True, "flush_seconds": 0.1},
    }
    x = rows(flights.frame, 3)[FEATURES]
    for url in start_serving(flights.settings, config):
        r = httpx.post(
            f"{url}/v1/models/flights/predict",
            json={"records": x.to_dict(orient="records"), "key": "N12345"},
            headers={"x-request-id": "logged-1"},
        )
        assert r.status_code == 200
        metrics = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{url}/metrics").text
            if "strata_serving_prediction_log_written_rows_total 3.0" in metrics:
                break
            time.sleep(0.1)
        assert "strata_serving_prediction_log_written_rows_total 3.0" in metrics
        assert (
            'strata_serving_requests_total{code="200",endpoint="flights",model="flights",'
            'path="primary",protocol="strata",version="2"} 1.0'
        ) in metrics
        assert (
            'strata_serving_rows_total{endpoint="flights",model="flights",path="primary",'
            'version="2"} 3.0' in metrics
        )
        assert "strata_serving_request_duration_seconds_bucket" in metrics
    root = Path(flights.settings.artifact_uri)
    glob = str(root / "predictions" / "model=flights" / "*" / "*.parquet")
    got = duckdb.sql(
        f"select request_id, row, version, path, entity_key, inputs.dep_delay, outputs.proba "
        f"from read_parquet('{glob}', hive_partitioning=true, union_by_name=true) "
        f"where request_id = 'logged-1' order by row"
    ).fetchall()
    assert [g[1] for g in got] == [0, 1, 2]
    assert {g[2] for g in got} == {"2"} and {g[3] for g in got} == {"primary"}
    assert {g[4] for g in got} == {"N12345"}
    assert [g[5] for g in got] == x["dep_delay"].tolist()
    assert np.allclose([sum(g[6]) for g in got], 1.0)


def test_auth_tokens_and_the_predict_permission(flights: Flights) -> None:
    gov = flights.client.governance
    gov.create_user("viewer-serving", Role.VIEWER)
    token = gov.create_token("viewer-serving").secret
    config = {"endpoints": [{"model": "flights/1"}], "prediction_log": {"enabled": False}}
    body: dict[str, Any] = {"records": rows(flights.frame, 1)[FEATURES].to_dict("records")}
    for url in start_serving(flights.settings, config, auth=True):
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200  # probes stay open
        none = httpx.post(f"{url}/v1/models/flights/predict", json=body)
        assert none.status_code == 401
        bad = httpx.post(
            f"{url}/v1/models/flights/predict",
            json=body,
            headers={"authorization": "Bearer strata_nope"},
        )
        assert bad.status_code == 401
        ok = httpx.post(
            f"{url}/v1/models/flights/predict",
            json=body,
            headers={"authorization": f"Bearer {token}"},
        )
        assert ok.status_code == 200
        assert httpx.get(f"{url}/v2/models/flights").status_code == 401
        # refused predictions are counted by code; before its token is checked a request
        # names no endpoint (an unauthenticated caller picks no label)
        from .test_protocols import _requests_by_labels

        counted = _requests_by_labels(httpx.get(f"{url}/metrics").text)
        assert counted.get(("", "strata", "401")) == 2
        # a service token (--predict-only) of an admin predicts, and may do nothing else
        gov.create_user("serving-app", Role.ADMIN)
        service = gov.create_token("serving-app", scope="predict").secret
        as_service = {"authorization": f"Bearer {service}"}
        predicted = httpx.post(f"{url}/v1/models/flights/predict", json=body, headers=as_service)
        assert predicted.status_code == 200
        # the endpoints' listing (load errors name paths and buckets) is for the people who
        # run the server: a viewer's token reads it, a service token does not
        listed = httpx.get(f"{url}/v1/endpoints", headers=as_service)
        assert listed.status_code == 403, listed.text
        assert "only predict" in listed.json()["message"]
        viewer = httpx.get(f"{url}/v1/endpoints", headers={"authorization": f"Bearer {token}"})
        assert viewer.status_code == 200 and viewer.json()["endpoints"][0]["name"] == "flights"


def test_serves_a_model_directory_and_a_bare_name(flights: Flights, tmp_path: Path) -> None:
    """What `strata deploy build` images run: `strata serve /opt/strata/model`; and NAME
    (the latest version)."""
    import strata.models as sm

    from .conftest import train_lgbm

    x = rows(flights.frame, 2)[FEATURES]
    model = train_lgbm(flights.frame, num_leaves=5)
    sm.save(model, tmp_path / "model", input_example=x)
    config = {
        "endpoints": [{"model": str(tmp_path / "model")}, {"model": "flights"}],
        "prediction_log": {"enabled": False},
    }
    for url in start_serving(flights.settings, config):
        body = {"records": x.to_dict(orient="records")}
        r = httpx.post(f"{url}/v1/models/model/predict", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == model.predict(x).tolist()
        latest = httpx.post(f"{url}/v1/models/flights/predict", json=body)
        assert latest.status_code == 200 and latest.json()["version"] == "2"


def test_fallback_on_error_and_timeout(flights: Flights, touchy_run: str) -> None:
    config = {
        "endpoints": [
            {
                "model": f"runs:/{touchy_run}/model",
                "name": "touchy",
                "trusted": True,
                "policy": {"fallback": {"model": f"runs:/{touchy_run}/steady", "timeout_ms": 300}},
            }
        ],
        "prediction_log": {"enabled": False},
    }
    for url in start_serving(flights.settings, config):
        predict = f"{url}/v1/models/touchy/predict"
        ok = httpx.post(predict, json={"records": [{"x": 2.0}]}).json()
        assert (ok["path"], ok["predictions"]) == ("primary", [4.0])
        raised = httpx.post(predict, json={"records": [{"x": -1.0}]}).json()
        assert raised["path"] == "fallback"
        assert raised["predictions"] == [pytest.approx(-3.0)]
        slow = httpx.post(predict, json={"records": [{"x": 999.0}]}, timeout=10).json()
        assert slow["path"] == "fallback"
        assert slow["predictions"] == [pytest.approx(2997.0)]
        metrics = httpx.get(f"{url}/metrics").text
        assert 'strata_serving_fallbacks_total{endpoint="touchy",reason="error"} 1.0' in metrics
        assert 'strata_serving_fallbacks_total{endpoint="touchy",reason="timeout"} 1.0' in metrics


def test_fallback_answers_with_the_last_good_answer_for_the_same_inputs(
    flights: Flights, touchy_run: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fallback: {cached: true}``: a failing primary answers with its last good answer
    for the same inputs (``fallback_cache``); inputs never answered well get the fallback
    model, or a 500 without one. Counted by reason."""
    broken = tmp_path / "broken"
    monkeypatch.setenv("TOUCHY_BROKEN", str(broken))
    model, steady = f"runs:/{touchy_run}/model", f"runs:/{touchy_run}/steady"
    config = {
        "endpoints": [
            {
                "model": model,
                "name": "cached",
                "trusted": True,
                "policy": {"fallback": {"cached": True}},
            },
            {
                "model": model,
                "name": "both",
                "trusted": True,
                "policy": {"fallback": {"cached": True, "model": steady}},
            },
        ],
        "prediction_log": {"enabled": False},
    }
    for url in start_serving(flights.settings, config):
        for name in ("cached", "both"):
            good = httpx.post(f"{url}/v1/models/{name}/predict", json={"records": [{"x": 7.0}]})
            assert (good.json()["path"], good.json()["predictions"]) == ("primary", [14.0])
        broken.touch()
        for name in ("cached", "both"):
            again = httpx.post(f"{url}/v1/models/{name}/predict", json={"records": [{"x": 7.0}]})
            assert again.status_code == 200, again.text
            assert again.json()["path"] == "fallback_cache"
            assert again.headers["x-strata-path"] == "fallback_cache"
            assert again.json()["predictions"] == [14.0]
        never = httpx.post(f"{url}/v1/models/cached/predict", json={"records": [{"x": 8.0}]})
        assert never.status_code == 500  # no good answer of x=8 yet, and no fallback model
        by_model = httpx.post(f"{url}/v1/models/both/predict", json={"records": [{"x": 8.0}]})
        assert by_model.json()["path"] == "fallback"
        assert by_model.json()["predictions"] == [pytest.approx(24.0)]
        broken.unlink()
        healed = httpx.post(f"{url}/v1/models/cached/predict", json={"records": [{"x": 8.0}]})
        assert healed.json()["path"] == "primary"
        metrics = httpx.get(f"{url}/metrics").text
        assert 'strata_serving_fallbacks_total{endpoint="cached",reason="error"} 1.0' in metrics
        assert 'strata_serving_fallbacks_total{endpoint="both",reason="error"} 2.0' in metrics
        assert 'path="fallback_cache"' in metrics


def test_a_failing_shadow_never_reaches_the_caller(flights: Flights, touchy_run: str) -> None:
    """The shadow fails on every request here (a candidate whose signature wants other
    inputs); the caller gets the primary's answers, and the failures are counted in
    ``strata_serving_shadow_errors_total`` only. (A policy's models never run stored code:
    a runtime policy could name any model.)"""
    config = {
        "endpoints": [
            {
                "model": f"runs:/{touchy_run}/steady",
                "name": "steady",
                "policy": {"shadow": {"model": "flights/1"}},
            }
        ],
        "prediction_log": {"enabled": False},
    }
    for url in start_serving(flights.settings, config):
        for _ in range(5):
            r = httpx.post(f"{url}/v1/models/steady/predict", json={"records": [{"x": -1.0}]})
            assert r.status_code == 200, r.text
            assert (r.json()["path"], r.json()["predictions"]) == ("primary", [pytest.approx(-3.0)])
        deadline = time.monotonic() + 10
        while True:
            metrics = httpx.get(f"{url}/metrics").text
            errors = [
                line
                for line in metrics.splitlines()
                if line.startswith("strata_serving_shadow_errors_total{")
            ]
            if errors and errors[0].endswith(" 5.0"):
                break
            assert time.monotonic() < deadline, errors
            time.sleep(0.1)
        assert 'endpoint="steady"' in errors[0]


def test_the_endpoint_status_adds_up_every_worker(flights: Flights, tmp_path: Path) -> None:
    """``strata serve --workers 2``: each worker reports its own counts; the listed status
    (CLI, REST, UI) adds up the live workers' (every request counted once) and says how
    many reported."""
    from strata.serving.policies import ENDPOINTS

    config = {
        "endpoints": [{"model": "flights/1", "name": "two"}],  # no other test's reports
        "poll_seconds": 0.2,
        "report_seconds": 0.3,
        "prediction_log": {"enabled": False},
    }
    body = {"records": rows(flights.frame, 1)[FEATURES].to_dict(orient="records")}
    store = flights.client.backends.artifacts
    folder = f"{ENDPOINTS}/two"
    for url in serve_process(flights.settings, config, tmp_path, ("--workers", "2")):
        sent = 0

        def per_worker() -> list[float]:
            if not store.exists(folder):
                return []
            reports = [json.loads(store.get_bytes(i.path)) for i in store.list(folder)]
            return [r["stats"].get("requests", 0.0) for r in reports]

        deadline = time.monotonic() + 60
        while True:  # new connections until each worker has answered some
            predict = f"{url}/v1/models/two/predict"
            with ThreadPoolExecutor(4) as pool:
                statuses = list(pool.map(lambda p: httpx.post(p, json=body), [predict] * 40))
            assert all(r.status_code == 200 for r in statuses)
            sent += len(statuses)
            time.sleep(0.8)  # a report from each
            counts = per_worker()
            if len(counts) == 2 and all(counts):
                break
            assert time.monotonic() < deadline, counts
        deadline = time.monotonic() + 20
        while True:
            status = flights.client.serving.get_endpoint("two")
            if status.stats.get("requests") == sent:
                break
            assert time.monotonic() < deadline, (status.stats, sent, per_worker())
            time.sleep(0.2)
        assert status.workers == 2 and status.ready
        assert sum(per_worker()) == sent and max(per_worker()) < sent  # neither alone
        assert "two" in [s.name for s in flights.client.serving.list_endpoints()]


def test_an_answer_that_fails_to_render_counts_once(flights: Flights) -> None:
    """An OIP request naming an output the model has not is predicted, then refused (400)
    when its answer is rendered: one request, one error, in the endpoint's status and in
    ``requests_total`` (by code 400, not 200)."""
    from .test_protocols import _requests_by_labels

    config = {
        "endpoints": [{"model": "flights/1", "name": "render"}],  # no other test's reports
        "poll_seconds": 0.2,
        "report_seconds": 0.2,
        "prediction_log": {"enabled": False},
    }
    x = rows(flights.frame, 1)[FEATURES]
    inputs = [
        {"name": c, "shape": [1], "datatype": "FP64", "data": x[c].astype(float).tolist()}
        for c in FEATURES
    ]
    for url in start_serving(flights.settings, config):
        r = httpx.post(
            f"{url}/v2/models/render/infer",
            json={"inputs": inputs, "outputs": [{"name": "no-such-output"}]},
        )
        assert r.status_code == 400, r.text
        assert "no-such-output" in r.text
        counted = _requests_by_labels(httpx.get(f"{url}/metrics").text)
        assert counted.get(("render", "oip", "400")) == 1
        assert counted.get(("render", "oip", "200"), 0) == 0
        deadline = time.monotonic() + 20
        while True:
            status = flights.client.serving.get_endpoint("render")
            if status.stats.get("requests"):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (status.stats["requests"], status.stats.get("errors")) == (1, 1), status.stats
        assert status.report_seconds == 0.2  # the config's, as the listing's live window reads


def test_a_service_token_is_not_shown_load_errors(flights: Flights) -> None:
    """A model's load error may name paths, buckets or URLs: a user's token sees it on every
    route that reports it; a service token (it may only predict) is told where to look."""
    gov = flights.client.governance
    gov.create_user("ops-viewer", Role.VIEWER)
    gov.create_user("ghost-app", Role.ADMIN)
    as_user = {"authorization": f"Bearer {gov.create_token('ops-viewer').secret}"}
    service = gov.create_token("ghost-app", scope="predict").secret
    as_service = {"authorization": f"Bearer {service}"}
    config = {"endpoints": [{"model": "ghost/1"}], "prediction_log": {"enabled": False}}
    inputs = [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]
    for url in start_serving(flights.settings, config, auth=True):
        listed = httpx.get(f"{url}/v1/endpoints", headers=as_user).json()["endpoints"]
        error = listed[0]["error"]
        assert error and "ghost" in error

        def answers(headers: dict[str, str], url: str = url) -> list[str]:
            return [
                httpx.get(f"{url}/v2/models/ghost/ready", headers=headers).json()["error"],
                httpx.get(f"{url}/v2/models/ghost", headers=headers).json()["error"],
                httpx.post(
                    f"{url}/v2/models/ghost/infer", json={"inputs": inputs}, headers=headers
                ).json()["error"],
                httpx.post(
                    f"{url}/v1/models/ghost/predict", json={"records": [{}]}, headers=headers
                ).json()["message"],
            ]

        assert all(error in text for text in answers(as_user))
        hidden = answers(as_service)
        assert all(error not in text and "user's token shows why" in text for text in hidden)
