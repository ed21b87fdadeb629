"""Malformed request bodies are the caller's mistake (4xx), never a 500 or an allocation the
body cannot back: ragged JSON in every format, OIP parameters of the wrong type, and binary
BYTES tensors whose shape asks for more elements than their bytes can hold."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

import strata
from strata.core.errors import InvalidInput
from strata.serving import formats, oip

from .conftest import FEATURES, Flights, rows, start_serving


@pytest.mark.parametrize(
    "doc",
    [
        {"inputs": [[1, 2], [3]]},
        {"instances": [[1.0], [2.0, 3.0]]},
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}},
        {"instances": {"a": [[1], [2, 3]]}},
    ],
)
def test_ragged_mlflow_bodies_are_bad_input(doc: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as info:
        formats.mlflow_columns(doc)
    assert "do not form a table" in info.value.message or "dataframe_split" in info.value.message


def test_ragged_strata_bodies_are_bad_input() -> None:
    with pytest.raises(InvalidInput) as info:
        formats.strata_columns({"columns": {"a": [[1], [2, 3]]}})
    assert "do not form a table" in info.value.message


def _binary(shape: list[int], data: bytes, datatype: str = "BYTES") -> tuple[bytes, str]:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "datatype": datatype,
                    "shape": shape,
                    "parameters": {"binary_data_size": len(data)},
                }
            ]
        }
    )
    return head + data, str(len(head))


def test_bytes_shape_larger_than_its_data_allocates_nothing() -> None:
    body, header = _binary([50_000_000], b"\x00\x00\x00\x00")
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput) as info:
            oip.parse_infer(body, header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "cannot hold 50000000 BYTES elements" in info.value.message
    assert peak < 10 * 1024 * 1024  # refused before a 400 MB object array existed


def test_bytes_prefixes_and_parameters_are_checked() -> None:
    ok, header = _binary([2], b"\x01\x00\x00\x00a\x01\x00\x00\x00b")
    (tensor,) = oip.parse_infer(ok, header).inputs
    assert tensor.array.tolist() == ["a", "b"]
    short, header = _binary([2], b"\x05\x00\x00\x00ab\x00\x00\x00\x00")
    with pytest.raises(InvalidInput):
        oip.parse_infer(short, header)
    extra, header = _binary([1], b"\x01\x00\x00\x00a\x01\x00\x00\x00b")
    with pytest.raises(InvalidInput) as info:
        oip.parse_infer(extra, header)
    assert "more than the 1 elements" in info.value.message
    for bad in (
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "parameters": 7}]},
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
            "outputs": [{"name": "y", "parameters": "binary"}],
        },
    ):
        with pytest.raises(InvalidInput) as info:
            oip.parse_infer(orjson.dumps(bad), None)
        assert "parameters must be an object" in info.value.message


def test_explain_and_ragged_bodies_over_http(flights: Flights) -> None:
    """Through the live server: explain answers TreeSHAP rows that add up to the margin; an
    unknown version is a 404 naming what is served; ragged bodies are 400s, not 500s."""
    import httpx
    import numpy as np

    config = {"endpoints": [{"name": "flights", "model": "flights/1"}]}
    for url in start_serving(flights.settings, config):
        x = rows(flights.frame[FEATURES], 3)
        body = {"records": x.to_dict("records")}
        r = httpx.post(f"{url}/v1/models/flights/explain", json=body, timeout=60)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["features"] == FEATURES and len(doc["values"]) == 3
        model = strata.models.load("models:/flights/1", tracking=flights.client.tracking)
        proba = model.predict_proba(x)[:, 1]
        margin = np.log(proba / (1 - proba))
        contributions = np.asarray(doc["values"]).sum(axis=1) + doc["base_value"]
        assert np.allclose(contributions, margin, atol=1e-6)
        missing = httpx.post(f"{url}/v1/models/flights/9/explain", json=body, timeout=60)
        assert missing.status_code == 404, missing.text
        for path, ragged in (
            ("/invocations", {"inputs": [[1.0, 2.0], [3.0]]}),
            ("/v1/models/flights/predict", {"columns": {"dep_delay": [[1.0], [2.0, 3.0]]}}),
        ):
            bad = httpx.post(f"{url}{path}", json=ragged, timeout=60)
            assert bad.status_code == 400, (path, bad.status_code, bad.text)
            assert "do not form a table" in bad.text


def test_runtime_policies_name_registered_models_only(flights: Flights, tmp_path: object) -> None:
    """An editor may move traffic between registered models, never point the server at a
    directory or a run's files (which it would load, and probe for)."""
    import pytest as _pytest

    from strata.serving.models import Cache

    serving = flights.client.serving
    config = {"endpoints": [{"model": "flights@champion"}]}
    for _url in start_serving(flights.settings, config):
        for policy, field in (
            ({"canary": [{"model": "/etc", "weight": 1.0}]}, "canary[0].model"),
            ({"shadow": {"model": "../../home"}}, "shadow.model"),
            ({"fallback": {"model": f"runs:/{flights.v1_run}/model"}}, "fallback.model"),
        ):
            with _pytest.raises(InvalidInput) as info:
                serving.set_traffic_policy("flights", policy)
            assert info.value.details["field"] == field
            assert "registered models only" in info.value.message
        assert (
            serving.set_traffic_policy(
                "flights", {"canary": [{"model": "flights/2", "weight": 0.1}]}
            )
            .canary[0]
            .model
            == "flights/2"
        )
        serving.set_traffic_policy("flights", {})
    with _pytest.raises(ValueError):
        Cache(max_entries=10_000_000)  # each entry holds a request: bounded


def test_open_readiness_probe_keeps_load_errors_private(flights: Flights) -> None:
    """With auth on, /v2/health/ready answers without a token (probes), so a load error's
    text (paths, URLs) is kept for the authenticated endpoint listing."""
    import httpx

    config = {
        "endpoints": [{"model": "flights/1"}, {"model": "ghost-secret-name/1"}],
        "prediction_log": {"enabled": False},
    }
    for url in start_serving(flights.settings, config, auth=True):
        ready = httpx.get(f"{url}/v2/health/ready")
        assert ready.status_code == 503
        ghost = ready.json()["models"]["ghost-secret-name"]
        assert ghost["ready"] is False and "/v1/endpoints" in ghost["error"]
        assert "ghost-secret-name" not in ghost["error"]
