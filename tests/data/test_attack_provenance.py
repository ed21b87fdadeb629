"""Issue 7, item 7: a client cannot forge provenance. What a caller says about parents,
transform and source over REST is kept apart as *claimed* — stored with the version, shown as
claimed by REST, the SDK and the UI — and never becomes a lineage edge."""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest
from conftest import LiveServer

from strata.core.principal import Role

FORGED_TRANSFORM = {
    "kind": "sql",
    "name": "official_cleaning",
    "code": "SELECT * FROM gold",
    "git_commit": "0" * 40,
}


@pytest.fixture
def editor(live_server: LiveServer) -> httpx.Client:
    token = live_server.token_for(Role.EDITOR)
    http = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    r = http.post("/api/v1/data/datasets/gold/rows", json=[{"a": 1}, {"a": 2}])
    assert r.status_code == 201, r.text
    return http


def test_an_upload_cannot_claim_parents_a_transform_or_a_source(editor: httpx.Client) -> None:
    options = {
        "parents": ["gold"],
        "transform": FORGED_TRANSFORM,
        "source_info": {"kind": "s3", "uri": "s3://trusted-bucket/gold.parquet"},
    }
    r = editor.put(
        "/api/v1/data/upload/forged",
        params={"filename": "x.csv", "options": json.dumps(options)},
        content=b"a\n666\n",
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    v = editor.get("/api/v1/data/versions/forged").json()
    # the server's own record: an upload, no parents, no transform
    assert v["parents"] == [] and v["transform_id"] is None
    assert v["source"]["kind"] == "upload" and v["source"]["uri"] == "x.csv"
    assert "trusted-bucket" not in json.dumps(v["source"])
    # the claims, kept apart and named as such
    assert v["claimed"] == {
        "parents": ["gold"],
        "transform": FORGED_TRANSFORM,
        "source_info": {"kind": "s3", "uri": "s3://trusted-bucket/gold.parquet"},
    }
    # no lineage edge either way: gold's descendants do not include the forgery
    up = editor.get("/api/v1/data/versions/forged/lineage").json()
    assert not [e for e in up["edges"] if e["kind"] != "version"]
    (node,) = [n for n in up["nodes"] if n["id"] == up["root"]]
    assert node["attrs"]["claimed"]["parents"] == ["gold"]
    down = editor.get("/api/v1/data/versions/gold/lineage", params={"direction": "down"}).json()
    assert not [n for n in down["nodes"] if "forged" in n["id"]]


def test_pushed_rows_keep_the_stream_position_but_not_a_claimed_source(
    editor: httpx.Client,
) -> None:
    info = {"kind": "kafka", "uri": "kafka://prod/orders", "stream": "s1", "offsets": {"0": 5}}
    r = editor.post(
        "/api/v1/data/datasets/pushed/rows",
        params={"source_info": json.dumps(info)},
        json=[{"a": 1}],
    )
    assert r.status_code == 201, r.text
    v = editor.get("/api/v1/data/versions/pushed").json()
    assert v["source"] == {"kind": "push", "stream": "s1", "offsets": {"0": 5}}
    assert v["claimed"] == {"source_info": {"kind": "kafka", "uri": "kafka://prod/orders"}}
    pos = editor.get("/api/v1/data/datasets/pushed/stream-position", params={"stream": "s1"})
    assert pos.json()["position"]["offsets"] == {"0": 5}


def test_the_sdk_shows_a_remote_python_transform_as_claimed(live_server: LiveServer) -> None:
    client = live_server.client(live_server.token_for(Role.EDITOR))
    client.data.ingest(pd.DataFrame({"a": [1, 2, 3]}), "src")
    out = client.data.transform({"s": "src"}, fn=lambda s: s[s.a > 1], output="big")
    v = client.data.get_version(out.ref or "")
    assert v.parents == [] and v.transform_id is None
    assert v.claimed is not None
    assert v.claimed["parents"] == [client.data.get_version("src").ref]
    assert v.claimed["transform"]["kind"] == "python"
    assert "s.a > 1" in v.claimed["transform"]["code"]
    # the embedded (server-side) SQL transform is real lineage, observed by the server
    sql = client.data.transform(["src"], sql="SELECT * FROM src WHERE a > 2", output="bigger")
    real = client.data.get_version(sql.ref or "")
    assert real.parents and real.transform_id and real.claimed is None
