"""The tracking REST API (``/api/v1``) as HTTP: status codes, error bodies, wire formats,
limits and streaming. Behaviour shared with the SDK is in tests/contract."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import serve_in_thread

from strata.client import Client
from strata.core.config import Settings
from strata.core.principal import Role
from strata.governance.embedded import EmbeddedGovernance
from strata.server.app import create_app

LIMIT = 256 * 1024
V1 = "/api/v1"


@dataclass
class Api:
    http: httpx.Client
    url: str
    tokens: dict[Role, str]
    settings: Settings

    def as_(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One real server (SQLite, auth on, JSON bodies limited to 256 KiB) for the module."""
    home = tmp_path_factory.mktemp("api-home")
    settings = Settings(home=home, max_request_bytes=LIMIT)
    embedded = Client("", settings=settings)
    gov = embedded.governance
    assert isinstance(gov, EmbeddedGovernance)
    tokens = {}
    for role in (Role.VIEWER, Role.EDITOR, Role.ADMIN):
        gov.create_user(f"{role.value}-user", role)
        tokens[role] = gov.create_token(f"{role.value}-user").secret
    app = create_app(settings, client=embedded, auth=True)
    headers = {"Authorization": f"Bearer {tokens[Role.EDITOR]}"}
    for url in serve_in_thread(app):
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            yield Api(http, url, tokens, settings)


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error_code", "message", "details"}, body
    assert body["error_code"] == code, body
    assert "Traceback" not in response.text
    return body


def strict_json(text: str) -> Any:
    """Parse JSON refusing the non-standard NaN/Infinity literals."""

    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name} in body")

    return json.loads(text, parse_constant=refuse)


_counter = iter(range(1_000_000))


def new_run(api: Api) -> tuple[str, str]:
    r = api.http.post(f"{V1}/experiments", json={"name": f"exp-{next(_counter)}"})
    assert r.status_code == 201, r.text
    exp_id = r.json()["experiment_id"]
    r = api.http.post(f"{V1}/runs", json={"experiment_id": exp_id})
    assert r.status_code == 201, r.text
    return exp_id, r.json()["info"]["run_id"]


def test_status_codes_of_a_full_lifecycle(api: Api) -> None:
    h = api.http
    r = h.post(f"{V1}/experiments", json={"name": "lifecycle", "tags": {"team": "ml"}})
    assert r.status_code == 201
    exp = r.json()
    assert exp["name"] == "lifecycle" and exp["tags"] == {"team": "ml"}
    exp_id = exp["experiment_id"]
    assert h.get(f"{V1}/experiments/{exp_id}").json() == exp
    assert h.get(f"{V1}/experiments/by-name", params={"name": "lifecycle"}).json() == exp
    listed = h.get(f"{V1}/experiments", params={"filter": "name = 'lifecycle'"}).json()
    assert [e["experiment_id"] for e in listed["experiments"]] == [exp_id]
    assert listed["next_page_token"] is None
    r = h.patch(f"{V1}/experiments/{exp_id}", json={"description": "about"})
    assert r.status_code == 200 and r.json()["description"] == "about"
    assert (
        h.post(f"{V1}/experiments/{exp_id}/tags", json={"key": "k", "value": "v"}).status_code
        == 204
    )

    r = h.post(f"{V1}/runs", json={"experiment_id": exp_id, "run_name": "r1"})
    assert r.status_code == 201
    run_id = r.json()["info"]["run_id"]
    batch = {
        "metrics": [{"key": "loss", "value": 0.5, "timestamp": 1, "step": 0}],
        "params": [{"key": "lr", "value": "0.1"}],
        "tags": [{"key": "t", "value": "1"}],
    }
    r = h.post(f"{V1}/runs/{run_id}/log-batch", json=batch)
    assert r.status_code == 204 and r.content == b""
    assert h.post(f"{V1}/runs/{run_id}/delete-tag", json={"key": "t"}).status_code == 204
    inputs = {"datasets": [{"name": "d", "digest": "1", "schema": "{}", "context": "train"}]}
    assert h.post(f"{V1}/runs/{run_id}/log-inputs", json=inputs).status_code == 204
    run = h.get(f"{V1}/runs/{run_id}").json()
    assert run["params"] == {"lr": "0.1"} and run["metrics"] == {"loss": 0.5}
    assert run["tags"] == {} and run["inputs"][0]["schema"] == "{}"
    r = h.patch(f"{V1}/runs/{run_id}", json={"status": "FINISHED"})
    assert r.status_code == 200 and r.json()["status"] == "FINISHED" and r.json()["end_time"]
    search = {"experiment_ids": [exp_id], "filter": "params.lr = '0.1'"}
    assert [
        x["info"]["run_id"] for x in h.post(f"{V1}/runs/search", json=search).json()["runs"]
    ] == [run_id]
    assert h.delete(f"{V1}/runs/{run_id}").status_code == 204
    assert h.post(f"{V1}/runs/{run_id}/restore").status_code == 204
    assert h.delete(f"{V1}/experiments/{exp_id}").status_code == 204
    assert h.post(f"{V1}/experiments/{exp_id}/restore").status_code == 204
    r = h.post(f"{V1}/experiments", json={"name": "lifecycle"})
    assert "lifecycle" in error(r, 409, "RESOURCE_ALREADY_EXISTS")["message"]


def test_404s_name_the_missing_id(api: Api) -> None:
    h = api.http
    _, run_id = new_run(api)
    for method, path in [
        ("GET", f"{V1}/runs/ghost-run-1"),
        ("PATCH", f"{V1}/runs/ghost-run-1"),
        ("DELETE", f"{V1}/runs/ghost-run-1"),
        ("GET", f"{V1}/runs/ghost-run-1/metrics/history?key=loss"),
        ("GET", f"{V1}/runs/ghost-run-1/artifacts"),
        ("GET", f"{V1}/metrics/history-bulk?key=loss&run_id={run_id}&run_id=ghost-run-1"),
        ("GET", f"{V1}/artifacts/runs/ghost-run-1/model.pkl"),
    ]:
        r = h.request(method, path, json={} if method == "PATCH" else None)
        body = error(r, 404, "RESOURCE_DOES_NOT_EXIST")
        assert "ghost-run-1" in body["message"], (method, path, body)
    body = error(h.get(f"{V1}/experiments/ghost-exp-1"), 404, "RESOURCE_DOES_NOT_EXIST")
    assert "ghost-exp-1" in body["message"]
    body = error(
        h.get(f"{V1}/artifacts/runs/{run_id}/absent/file.txt"), 404, "RESOURCE_DOES_NOT_EXIST"
    )
    assert run_id in body["message"] and "absent/file.txt" in body["message"]
    assert str(api.settings.home) not in body["message"]  # no server paths leak


def test_bad_filter_is_400_with_position(api: Api) -> None:
    exp_id, _ = new_run(api)
    r = api.http.post(
        f"{V1}/runs/search", json={"experiment_ids": [exp_id], "filter": "metrics.auc > 0.8 or x"}
    )
    body = error(r, 400, "INVALID_PARAMETER_VALUE")
    assert body["details"]["position"] == 18 and "position 18" in body["message"]
    r = api.http.post(f"{V1}/experiments/search", json={"filter": "name LIKE"})
    assert error(r, 400, "INVALID_PARAMETER_VALUE")["details"]["position"] == 9


def test_param_conflict_is_409_naming_both_values(api: Api) -> None:
    _, run_id = new_run(api)
    url = f"{V1}/runs/{run_id}/log-batch"
    assert api.http.post(url, json={"params": [{"key": "lr", "value": "0.1"}]}).status_code == 204
    assert api.http.post(url, json={"params": [{"key": "lr", "value": "0.1"}]}).status_code == 204
    body = error(
        api.http.post(url, json={"params": [{"key": "lr", "value": "0.2"}]}), 409, "CONFLICT"
    )
    assert "'0.1'" in body["message"] and "'0.2'" in body["message"] and "lr" in body["message"]
    assert (body["details"]["old_value"], body["details"]["new_value"]) == ("0.1", "0.2")


def test_invalid_names_and_keys_are_400_saying_the_rule(api: Api) -> None:
    _, run_id = new_run(api)
    url = f"{V1}/runs/{run_id}/log-batch"
    bad_key = {"metrics": [{"key": "bad*key", "value": 1, "timestamp": 1}]}
    body = error(api.http.post(url, json=bad_key), 400, "INVALID_PARAMETER_VALUE")
    assert "letters, digits" in body["message"] and "bad*key" in body["message"]
    long_key = {"params": [{"key": "k" * 251, "value": "v"}]}
    assert (
        "250" in error(api.http.post(url, json=long_key), 400, "INVALID_PARAMETER_VALUE")["message"]
    )
    long_value = {"params": [{"key": "k", "value": "v" * 6001}]}
    body = error(api.http.post(url, json=long_value), 400, "INVALID_PARAMETER_VALUE")
    assert "6000" in body["message"]
    body = error(
        api.http.post(f"{V1}/experiments", json={"name": ""}), 400, "INVALID_PARAMETER_VALUE"
    )
    assert "non-empty" in body["message"]
    body = error(
        api.http.patch(f"{V1}/runs/{run_id}", json={"status": "DONE"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert "DONE" in body["message"] and "FINISHED" in body["message"]
    # A body of the wrong shape names the field.
    wrong = {"metrics": [{"key": "loss", "value": "high", "timestamp": 1}]}
    body = error(api.http.post(url, json=wrong), 400, "INVALID_PARAMETER_VALUE")
    assert "metrics.0.value" in body["message"]
    body = error(
        api.http.post(url, content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert "JSON" in body["message"]


def test_failed_batch_writes_nothing_over_http(api: Api) -> None:
    _, run_id = new_run(api)
    url = f"{V1}/runs/{run_id}/log-batch"
    api.http.post(url, json={"params": [{"key": "p", "value": "1"}]})
    metrics = [{"key": "loss", "value": i, "timestamp": 1, "step": i} for i in range(10)]
    r = api.http.post(
        url,
        json={
            "metrics": metrics,
            "params": [{"key": "p", "value": "2"}],
            "tags": [{"key": "t", "value": "v"}],
        },
    )
    error(r, 409, "CONFLICT")
    r = api.http.post(
        url, json={"metrics": [*metrics, {"key": "x", "value": "bad", "timestamp": 1}]}
    )
    error(r, 400, "INVALID_PARAMETER_VALUE")
    run = api.http.get(f"{V1}/runs/{run_id}").json()
    assert run["metrics"] == {} and run["tags"] == {} and run["params"] == {"p": "1"}
    history = api.http.get(f"{V1}/runs/{run_id}/metrics/history", params={"key": "loss"}).json()
    assert history == {"metrics": []}


def test_non_finite_values_cross_the_wire_as_valid_json(api: Api) -> None:
    exp_id, run_id = new_run(api)
    batch = {
        "metrics": [
            {"key": "a", "value": "NaN", "timestamp": 1, "step": 0},
            {"key": "b", "value": "Infinity", "timestamp": 1, "step": 0},
            {"key": "c", "value": "-Infinity", "timestamp": 1},
            {"key": "d", "value": 2.5, "timestamp": 1, "step": 1},
        ]
    }
    assert api.http.post(f"{V1}/runs/{run_id}/log-batch", json=batch).status_code == 204
    # Python's JSON literals are accepted on input as well.
    raw = b'{"metrics": [{"key": "e", "value": NaN, "timestamp": 2}]}'
    r = api.http.post(
        f"{V1}/runs/{run_id}/log-batch", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 204
    run = strict_json(api.http.get(f"{V1}/runs/{run_id}").text)
    assert run["metrics"] == {"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": 2.5, "e": "NaN"}
    hist = strict_json(
        api.http.get(f"{V1}/runs/{run_id}/metrics/history", params={"key": "b"}).text
    )
    assert hist == {"metrics": [{"key": "b", "value": "Infinity", "timestamp": 1, "step": 0}]}
    bulk = strict_json(
        api.http.get(f"{V1}/metrics/history-bulk", params={"run_id": [run_id], "key": "c"}).text
    )
    assert bulk["metrics"] == [
        {"key": "c", "value": "-Infinity", "timestamp": 1, "step": 0, "run_id": run_id}
    ]
    found = strict_json(api.http.post(f"{V1}/runs/search", json={"experiment_ids": [exp_id]}).text)
    assert found["runs"][0]["metrics"]["a"] == "NaN"


def test_compare_returns_rows_as_json(api: Api) -> None:
    exp_id, run_id = new_run(api)
    batch = {
        "metrics": [{"key": "auc", "value": 0.9, "timestamp": 1}],
        "params": [{"key": "model", "value": "lgbm"}],
    }
    api.http.post(f"{V1}/runs/{run_id}/log-batch", json=batch)
    other = api.http.post(f"{V1}/runs", json={"experiment_id": exp_id}).json()["info"]["run_id"]
    body = strict_json(
        api.http.post(
            f"{V1}/runs/compare",
            json={"experiment_ids": [exp_id], "order_by": ["metrics.auc DESC"]},
        ).text
    )
    assert body["columns"][:5] == ["run_id", "run_name", "experiment_id", "status", "start_time"]
    assert [row["run_id"] for row in body["rows"]] == [run_id, other]
    first, second = body["rows"]
    assert (first["params.model"], first["metrics.auc"]) == ("lgbm", 0.9)
    assert (second["params.model"], second["metrics.auc"]) == (None, None)
    assert isinstance(first["start_time"], int) and first["start_time"] > 1_600_000_000_000


def test_artifact_traversal_is_400(api: Api) -> None:
    _, run_id = new_run(api)
    for raw in ("%2E%2E/evil.txt", "a/%2E%2E/%2E%2E/evil.txt", "/etc/passwd", "a%5Cb"):
        url = f"{api.url}{V1}/artifacts/runs/{run_id}/{raw}"
        body = error(api.http.put(url, content=b"x"), 400, "INVALID_PARAMETER_VALUE")
        assert "artifact path" in body["message"], raw
        error(api.http.get(url), 400, "INVALID_PARAMETER_VALUE")
    r = api.http.get(f"{V1}/runs/{run_id}/artifacts", params={"path": "../x"})
    error(r, 400, "INVALID_PARAMETER_VALUE")
    assert api.http.get(f"{V1}/runs/{run_id}/artifacts").json() == {"files": []}


def test_413_for_json_over_the_limit_but_artifacts_stream_any_size(api: Api) -> None:
    _, run_id = new_run(api)
    metrics = [{"key": "loss", "value": 0.1, "timestamp": 1, "step": i} for i in range(6000)]
    r = api.http.post(f"{V1}/runs/{run_id}/log-batch", json={"metrics": metrics})
    body = error(r, 413, "REQUEST_TOO_LARGE")
    assert str(LIMIT) in body["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: discovered while streaming
        for _ in range(3):
            yield json.dumps({"metrics": metrics}).encode()[: LIMIT // 2]

    r = api.http.post(
        f"{V1}/runs/{run_id}/log-batch",
        content=chunked(),
        headers={"content-type": "application/json"},
    )
    error(r, 413, "REQUEST_TOO_LARGE")
    payload = bytes(range(256)) * (4 * LIMIT // 256)  # 4x the JSON limit
    r = api.http.put(f"{V1}/artifacts/runs/{run_id}/big.bin", content=payload)
    assert r.status_code == 201, r.text
    assert r.json() == {"path": "big.bin", "is_dir": False, "file_size": len(payload)}
    got = api.http.get(f"{V1}/artifacts/runs/{run_id}/big.bin")
    assert got.status_code == 200 and got.content == payload
    assert got.headers["x-strata-sha256"] == hashlib.sha256(payload).hexdigest()
    assert got.headers["content-type"] == "application/octet-stream"
    assert api.http.get(f"{V1}/runs/{run_id}/metrics/history", params={"key": "loss"}).json() == {
        "metrics": []
    }


def test_upload_streams_and_an_interrupted_one_stores_nothing(api: Api) -> None:
    _, run_id = new_run(api)
    root = Path(api.settings.home / "artifacts")

    def partials() -> list[Path]:
        return [p for p in root.rglob("*") if "partial" in p.name]

    def wait_for(condition: Any) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return False

    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"PUT {V1}/artifacts/runs/{run_id}/partial.bin HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {api.tokens[Role.EDITOR]}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        sock.sendall(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        # The store is already writing (to a temp name) while the body is still arriving.
        assert wait_for(lambda: len(partials()) == 1)
        assert partials()[0].name.startswith(".partial.bin.tmp-")
    assert wait_for(lambda: partials() == []), partials()
    assert api.http.get(f"{V1}/runs/{run_id}/artifacts").json() == {"files": []}


def test_download_of_a_directory_is_400_and_listing_shows_sizes(api: Api) -> None:
    _, run_id = new_run(api)
    api.http.put(f"{V1}/artifacts/runs/{run_id}/model/MLmodel", content=b"flavor")
    body = error(
        api.http.get(f"{V1}/artifacts/runs/{run_id}/model"), 400, "INVALID_PARAMETER_VALUE"
    )
    assert "directory" in body["message"]
    listing = api.http.get(f"{V1}/runs/{run_id}/artifacts", params={"path": "model"}).json()
    assert listing == {"files": [{"path": "model/MLmodel", "is_dir": False, "file_size": 6}]}


def test_permissions_reads_for_viewers_writes_for_editors(api: Api) -> None:
    exp_id, run_id = new_run(api)
    viewer = api.as_(Role.VIEWER)
    assert api.http.get(f"{V1}/runs/{run_id}", headers=viewer).status_code == 200
    search = {"experiment_ids": [exp_id]}
    assert api.http.post(f"{V1}/runs/search", json=search, headers=viewer).status_code == 200
    r = api.http.post(f"{V1}/runs/{run_id}/log-batch", json={}, headers=viewer)
    error(r, 403, "PERMISSION_DENIED")
    r = api.http.put(f"{V1}/artifacts/runs/{run_id}/x.txt", content=b"x", headers=viewer)
    error(r, 403, "PERMISSION_DENIED")
    with httpx.Client(base_url=api.url) as anonymous:
        error(anonymous.get(f"{V1}/runs/{run_id}"), 401, "UNAUTHENTICATED")


def test_openapi_documents_tracking_routes(api: Api) -> None:
    spec = api.http.get("/openapi.json").json()
    tracking = {
        p
        for p, ops in spec["paths"].items()
        if any("tracking" in op.get("tags", []) for op in ops.values())
    }
    for path in (
        "/api/v1/experiments",
        "/api/v1/runs/search",
        "/api/v1/runs/{run_id}/log-batch",
        "/api/v1/artifacts/runs/{run_id}/{path}",
        "/api/v1/metrics/history-bulk",
    ):
        assert path in tracking, path
    body = spec["paths"]["/api/v1/runs/{run_id}/log-batch"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"metrics", "params", "tags"}
    assert "$ref" not in json.dumps(schema)
