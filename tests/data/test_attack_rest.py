"""Attacks through the data REST API (issue 7, item 4 and Low items): a suite given as a
server path, a deeply nested suite, upload names and corrupt files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest
from conftest import LiveServer


@pytest.fixture
def http(live_server: LiveServer) -> httpx.Client:
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    client = httpx.Client(base_url=live_server.url, headers=headers, timeout=60)
    r = client.post("/api/v1/data/datasets/t/rows", json=[{"a": 1}, {"a": 2}])
    assert r.status_code == 201
    return client


def test_a_suite_path_is_never_opened_by_the_server(http: httpx.Client, tmp_path: Path) -> None:
    secret = tmp_path / "private.yaml"
    secret.write_text("expectations:\n  - expect_column_to_exist: {column: hunter2_secret}\n")
    for body, route in (
        ({"suite": str(secret)}, "/api/v1/data/versions/t/validate"),
        (
            {"inputs": ["t"], "output": "o", "sql": "SELECT * FROM t", "suite": str(secret)},
            "/api/v1/data/transforms",
        ),
        ({"source": "s3://bucket/x.csv", "suite": str(secret)}, "/api/v1/data/datasets/i/ingest"),
    ):
        r = http.post(route, json=body)
        assert r.status_code == 400, (route, r.text)
        assert "hunter2_secret" not in r.text, route
    r = http.put(
        "/api/v1/data/upload/u",
        params={"filename": "x.csv", "options": json.dumps({"suite": str(secret)})},
        content=b"a\n1\n",
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 400 and "hunter2_secret" not in r.text
    # YAML text and objects still work.
    text = "expectations:\n  - expect_column_to_exist: {column: a}\n"
    r = http.post("/api/v1/data/versions/t/validate", json={"suite": text})
    assert r.status_code == 200 and r.json()["success"] is True


def test_a_deeply_nested_suite_is_a_400(http: httpx.Client) -> None:
    deep = "expectations: " + "[" * 3000 + "]" * 3000
    r = http.post("/api/v1/data/versions/t/validate", json={"suite": deep})
    assert r.status_code == 400, r.text
    assert "nests too deeply" in r.json()["message"]


@pytest.mark.parametrize("filename", ["..", ".", "../..", "..csv"])
def test_upload_names_that_are_directories_are_400_not_500(
    http: httpx.Client, filename: str
) -> None:
    r = http.put(
        "/api/v1/data/upload/named",
        params={"filename": filename, "options": json.dumps({"format": "csv"})},
        content=b"a\n1\n",
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code in (201, 400), r.text


def test_a_corrupt_gzip_upload_is_a_400(http: httpx.Client) -> None:
    body = gzip.compress(b"a,b\n1,2\n" * 1000)[:-200] + b"\x00garbage" * 20
    r = http.put(
        "/api/v1/data/upload/gz",
        params={"filename": "data.csv.gz"},
        content=body,
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 400, r.text
    assert "data.csv.gz" in r.json()["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([{"a": {"b": 1}}], "rows[0].a"),
        ([{"a": 1}, {"a": [1, {"x": 2}]}], "rows[1].a"),
        ('{"a": 1}\n{"a": {"deep": {"er": 1}}}\n', "rows[1].a"),
    ],
)
def test_nested_objects_pushed_to_rows_are_a_400(
    http: httpx.Client, body: object, field: str
) -> None:
    if isinstance(body, str):
        r = http.post(
            "/api/v1/data/datasets/nested/rows",
            content=body.encode(),
            headers={"content-type": "application/x-ndjson"},
        )
    else:
        r = http.post("/api/v1/data/datasets/nested/rows", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["details"]["field"] == field
    assert http.get("/api/v1/data/datasets/nested").status_code == 404  # nothing written
