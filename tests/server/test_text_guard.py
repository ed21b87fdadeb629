"""Issue 7, Low: NUL characters and lone surrogates in any text are a 400 naming the field,
on every backend (PostgreSQL raised DataError, a 500; a lone surrogate failed to encode)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from conftest import LiveServer


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=60) as client:
        yield client


def _raw_json(http: httpx.Client, method: str, url: str, text: str) -> httpx.Response:
    return http.request(
        method, url, content=text.encode(), headers={"content-type": "application/json"}
    )


BAD = {"nul": "\\u0000", "surrogate": "\\ud800", "low surrogate": "\\udc00"}


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
def test_bad_text_in_json_bodies_is_a_400_naming_the_field(http: httpx.Client, bad: str) -> None:
    cases = [
        ("POST", "/api/v1/data/datasets", f'{{"name": "d{bad}x"}}', "name"),
        ("POST", "/api/v1/experiments", f'{{"name": "e{bad}"}}', "name"),
        ("POST", "/api/v1/users", f'{{"name": "u", "role": "viewer", "x{bad}": 1}}', "x"),
        ("POST", "/api/2.0/mlflow/experiments/create", f'{{"name": "m{bad}"}}', "name"),
        ("POST", "/api/v1/data/datasets/t/rows", f'[{{"a": "v{bad}"}}]', "[0].a"),
    ]
    for method, url, body, field in cases:
        r = _raw_json(http, method, url, body)
        assert r.status_code == 400, (url, r.status_code, r.text)
        payload = r.json()
        assert payload["error_code"] == "INVALID_PARAMETER_VALUE", payload
        assert payload["details"]["field"].startswith(field), (url, payload)
    # nothing was written
    assert [
        d for d in http.get("/api/v1/data/datasets").json()["datasets"] if d["name"] != "t"
    ] == []


def test_nul_in_the_query_or_path_and_json_options_of_an_upload(http: httpx.Client) -> None:
    r = http.get("/api/v1/data/datasets", params={"project": "a\x00b"})
    assert r.status_code == 400 and r.json()["details"]["field"] == "project"
    r = http.get("/api/v1/data/datasets/a%00b")
    assert r.status_code == 400 and r.json()["details"]["field"] == "path"
    r = http.put(
        "/api/v1/data/upload/u",
        params={"filename": "x.csv", "options": '{"tags": ["\\ud800"]}'},
        content=b"a\n1\n",
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["details"]["field"] == "options.tags[0]"


def test_valid_escapes_still_pass(http: httpx.Client) -> None:
    # a surrogate pair (an emoji), an escaped backslash before "u0000", plain unicode
    body = json.dumps({"name": "ds_ok", "description": "\U0001f600 \\u0000 é"})
    r = _raw_json(http, "POST", "/api/v1/data/datasets", body)
    assert r.status_code == 201, r.text
    assert r.json()["description"] == "\U0001f600 \\u0000 é"
