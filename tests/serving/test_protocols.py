"""The three protocols against a live server on the flights models: the official Triton
client (binary and JSON), the MLflow scoring formats, Strata JSON; and the bad-input codes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from .conftest import FEATURES, Flights, expected, rows, start_serving


@pytest.fixture(scope="module")
def url(flights: Flights) -> Iterator[str]:
    config = {
        "endpoints": [{"model": "flights@champion"}, {"model": "carriers/1"}],
        "prediction_log": {"enabled": True, "flush_seconds": 0.2},
    }
    yield from start_serving(flights.settings, config)


def test_health_metadata_and_readiness(url: str) -> None:
    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    ready = httpx.get(f"{url}/v2/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["models"]["flights"] == {"ready": True, "version": "1", "error": None}
    assert httpx.get(f"{url}/v2").json()["extensions"] == ["binary_tensor_data"]
    meta = httpx.get(f"{url}/v2/models/flights").json()
    assert meta["versions"] == ["1"]
    assert [i["name"] for i in meta["inputs"]] == FEATURES
    assert all(i["datatype"] == "FP64" and i["shape"] == [-1] for i in meta["inputs"])
    assert httpx.get(f"{url}/v2/models/flights/versions/1/ready").json()["ready"] is True
    assert httpx.get(f"{url}/ping").status_code == 200
    assert httpx.get(f"{url}/version").status_code == 200


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_batched_matrix(url: str, flights: Flights, binary: bool) -> None:
    x = rows(flights.frame, 16)[FEATURES]
    labels, proba = expected(flights.client, "models:/flights/1", x)
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    for dtype, datatype in ((np.float32, "FP32"), (np.float64, "FP64")):
        tensor = triton.InferInput("input", [16, 4], datatype)
        tensor.set_data_from_numpy(x.to_numpy(dtype=dtype), binary_data=binary)
        outputs = [
            triton.InferRequestedOutput("label", binary_data=binary),
            triton.InferRequestedOutput("probabilities", binary_data=binary),
        ]
        result = client.infer("flights", [tensor], outputs=outputs)
        got = result.as_numpy("label")
        assert got is not None
        assert got.tolist() == labels.tolist()
        if dtype is np.float64:
            assert np.allclose(result.as_numpy("probabilities"), proba)
    assert client.is_server_ready() and client.is_model_ready("flights")
    assert client.get_model_metadata("flights")["name"] == "flights"


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_per_column_fp32_fp64_int64_bytes(
    url: str, flights: Flights, binary: bool
) -> None:
    x = rows(flights.frame, 8)
    cols = ["carrier", "dep_delay", "distance", "hour"]
    labels, _ = expected(flights.client, "models:/carriers/1", x[cols])
    carrier = triton.InferInput("carrier", [8], "BYTES")
    carrier.set_data_from_numpy(x["carrier"].to_numpy(dtype=object), binary_data=binary)
    dep = triton.InferInput("dep_delay", [8], "FP32")
    dep.set_data_from_numpy(x["dep_delay"].to_numpy(dtype=np.float32), binary_data=binary)
    dist = triton.InferInput("distance", [8, 1], "INT64")
    dist.set_data_from_numpy(
        x["distance"].to_numpy(dtype=np.int64).reshape(8, 1), binary_data=binary
    )
    hour = triton.InferInput("hour", [8], "FP64")
    hour.set_data_from_numpy(x["hour"].to_numpy(dtype=np.float64), binary_data=binary)
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    result = client.infer("carriers", [carrier, dep, dist, hour])  # outputs binary by default
    assert result.as_numpy("label").tolist() == labels.tolist()


def test_tritonclient_unknown_input_is_4xx(url: str) -> None:
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    bogus = triton.InferInput("nope", [2], "FP64")
    bogus.set_data_from_numpy(np.zeros(2))
    with pytest.raises(triton.InferenceServerException) as info:
        client.infer("flights", [bogus])
    assert info.value.status() in ("400", "422")
    assert "nope" in str(info.value.message()) or "missing" in str(info.value.message())


def test_json_mode_without_content_type_is_accepted(url: str, flights: Flights) -> None:
    x = rows(flights.frame, 3)[FEATURES]
    body = {
        "inputs": [
            {"name": n, "shape": [3], "datatype": "FP64", "data": x[n].tolist()} for n in FEATURES
        ]
    }
    import orjson

    r = httpx.post(f"{url}/v2/models/flights/infer", content=orjson.dumps(body))
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    labels, _ = expected(flights.client, "models:/flights/1", x)
    assert out["label"]["data"] == labels.tolist()
    assert r.json()["model_version"] == "1"


@pytest.fixture(scope="module")
def single(flights: Flights) -> Iterator[str]:
    config = {"endpoints": [{"model": "flights@champion"}], "prediction_log": {"enabled": False}}
    yield from start_serving(flights.settings, config)


def test_mlflow_formats_agree(single: str, flights: Flights) -> None:
    url = single
    x = rows(flights.frame, 5)[FEATURES]
    labels, _ = expected(flights.client, "models:/flights/1", x)
    bodies = [
        {"dataframe_split": x.to_dict(orient="split") | {"index": list(range(5))}},
        {"dataframe_records": x.to_dict(orient="records")},
        {"instances": x.to_dict(orient="records")},
        {"inputs": x.to_dict(orient="list")},
    ]
    for body in bodies:
        r = httpx.post(f"{url}/invocations", json=body)
        assert r.status_code == 200, (body.keys(), r.text)
        assert r.json() == {"predictions": labels.tolist()}
    assert r.headers["x-strata-path"] == "primary"
    assert r.headers["x-strata-model-version"] == "1"
    bad = httpx.post(f"{url}/invocations", json={"instances": [], "inputs": []})
    assert bad.status_code == 400 and "exactly one of" in bad.json()["message"]


def test_strata_json(url: str, flights: Flights) -> None:
    x = rows(flights.frame, 4)[FEATURES]
    labels, proba = expected(flights.client, "models:/flights/1", x)
    for ref in ("flights", "flights@champion", "flights/1"):
        r = httpx.post(
            f"{url}/v1/models/{ref}/predict",
            json={"records": x.to_dict(orient="records")},
            headers={"x-request-id": "req-42"},
        )
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["predictions"] == labels.tolist()
        assert np.allclose(doc["probabilities"], proba)
        assert doc["version"] == "1" and doc["request_id"] == "req-42"
        assert doc["path"] == "primary" and doc["labels"] == [0, 1]
    cols = httpx.post(f"{url}/v1/models/flights/predict", json={"columns": x.to_dict("list")})
    assert cols.json()["predictions"] == labels.tolist()


def test_bad_input_codes(url: str, flights: Flights) -> None:
    post = httpx.post
    malformed = post(f"{url}/v1/models/flights/predict", content=b"{not json")
    assert malformed.status_code == 400
    unknown = post(f"{url}/v1/models/nope/predict", json={"records": [{}]})
    assert unknown.status_code == 404
    assert unknown.json()["details"]["served"] == ["carriers", "flights"]
    assert post(f"{url}/v1/models/flights/9/predict", json={"records": [{}]}).status_code == 404
    wrong_alias = post(f"{url}/v1/models/flights@nope/predict", json={"records": [{}]})
    assert wrong_alias.status_code == 404
    missing = post(f"{url}/v1/models/flights/predict", json={"records": [{"dep_delay": 1.0}]})
    assert missing.status_code == 422
    assert missing.json()["details"]["column"] == "distance"
    text = post(
        f"{url}/v1/models/flights/predict",
        json={"records": [dict.fromkeys(FEATURES, 1.0) | {"hour": "noon"}]},
    )
    assert text.status_code == 422 and text.json()["details"]["column"] == "hour"
    oip_404 = post(f"{url}/v2/models/nope/infer", json={"inputs": []})
    assert oip_404.status_code == 404 and "flights" in oip_404.json()["error"]
    huge = post(f"{url}/v1/models/flights/predict", content=b"x" * (70 * 1024 * 1024))
    assert huge.status_code == 413
    many = post(f"{url}/invocations", json={"inputs": {}})
    assert many.status_code == 404  # two models: /invocations says which routes to use
    assert "carriers" in many.json()["message"]
    # Refused before admission, each is still counted by code: with the endpoint its path
    # named when one is served, else with none (never a label per made-up name).
    counted = _requests_by_labels(httpx.get(f"{url}/metrics").text)
    for endpoint, protocol, code in [
        ("flights", "strata", "400"),
        ("", "strata", "404"),
        ("flights", "strata", "413"),
        ("flights", "strata", "422"),
        ("", "oip", "404"),
        ("", "mlflow", "404"),
    ]:
        assert counted.get((endpoint, protocol, code), 0) >= 1, (endpoint, protocol, code)
    assert not any(e == "nope" for e, _, _ in counted)


def _requests_by_labels(text: str) -> dict[tuple[str, str, str], float]:
    """``strata_serving_requests_total`` summed by (endpoint, protocol, code)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "strata_serving_requests_total":
                labels = sample.labels
                key = (labels["endpoint"], labels["protocol"], labels["code"])
                out[key] = out.get(key, 0) + sample.value
    return out


def test_explain_gives_per_row_shap(url: str, flights: Flights) -> None:
    import strata

    x = rows(flights.frame, 3)[FEATURES]
    r = httpx.post(f"{url}/v1/models/flights/explain", json={"records": x.to_dict("records")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["features"] == FEATURES and doc["version"] == "1"
    values = np.asarray(doc["values"])
    assert values.shape == (3, 4)
    # TreeSHAP is additive: base + attributions = the raw score (log-odds) of each row
    booster = strata.models.load("models:/flights/1", tracking=flights.client.tracking)
    raw = booster.predictor.booster.predict(x.to_numpy(), raw_score=True)  # type: ignore[attr-defined]
    assert np.allclose(values.sum(axis=1) + doc["base_value"], raw)
    text = httpx.post(f"{url}/v1/models/carriers/explain", json={"records": [{"x": 1}]})
    assert text.status_code == 422
