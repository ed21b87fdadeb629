"""The data contract: the same tests on the embedded and the remote client (SQLite and PG).

Remote ingestion uploads local files and DataFrames; the server re-chunks them canonically,
so version ids are the same as an embedded ingest's. Errors arrive as the same class.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import LiveServer

from strata.backends.context import Backends
from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import (
    AlreadyExists,
    Conflict,
    DigestMismatch,
    InvalidInput,
    NotFound,
    PermissionDenied,
    StrataError,
)
from strata.core.page import iterate_pages
from strata.data.embedded import EmbeddedData
from strata.data.models import ColumnAnnotation, IngestOptions, TransformOptions

FRAME = pd.DataFrame(
    {
        "id": [1, 2, 3, 4],
        "city": ["a", "b", None, "a"],
        "fare": [1.5, 2.5, 3.5, None],
    }
)
SUITE = {"expectations": [{"expect_column_values_to_not_be_null": {"column": "fare"}}]}


def _exactly(cls: type[StrataError], fn: object, *args: object, **kw: object) -> StrataError:
    assert callable(fn)
    with pytest.raises(StrataError) as info:
        fn(*args, **kw)
    assert type(info.value) is cls, f"expected {cls.__name__}, got {info.value!r}"
    return info.value


def test_versions_round_trip(client: Client, tmp_path: Path, settings: Settings) -> None:
    data = client.data
    ds = data.create_dataset("trips", project="p1", description="Trips", tags={"t": "1"})
    assert ds.name == "trips" and ds.latest_version is None and ds.tags == {"t": "1"}
    r = data.ingest(
        FRAME, "trips", tags=["first"], annotations={"city": ColumnAnnotation(pii=True)}
    )
    assert r.created and r.rows == 4 and r.version and r.ref == f"trips@{r.version}"
    backends = Backends(Settings(home=tmp_path / "other"))
    try:
        assert EmbeddedData(backends).ingest(FRAME, "trips").version == r.version
    finally:
        backends.close()
    again = data.ingest(FRAME, "trips")
    assert not again.created and again.version == r.version
    v = data.get_version("trips@first")
    assert v.id == r.version and v.rows == 4 and v.columns[1].annotation.pii
    assert [c.type for c in v.columns] == ["int64", "string", "double"]
    assert data.read_pandas(f"trips@{r.version[:6]}").equals(FRAME)
    assert data.read_arrow("trips", columns=["fare"]).column_names == ["fare"]
    assert data.duckdb("trips").aggregate("sum(id)").fetchall() == [(10,)]
    files = data.files("trips")
    assert len(files) == 1 and files[0].rows == 4
    from strata.backends.artifacts import ArtifactStore

    stored = ArtifactStore(settings.artifact_uri).get_bytes(files[0].path)
    if client.is_remote:  # the server's own directory layout is not shown to clients
        assert files[0].uri == files[0].path and not files[0].uri.startswith(("file:", "/"))
    assert (files[0].sha256, files[0].bytes) == (hashlib.sha256(stored).hexdigest(), len(stored))
    assert [x.id for x in data.list_versions("trips")] == [r.version]
    assert data.get_dataset("trips").latest_version == r.version
    csv = tmp_path / "t.csv"
    csv.write_text("id,city,fare\n1,a,1.5\n2,b\nx,y,z,w\n")
    c = data.ingest(csv, "fromcsv")
    assert (c.rows, c.quarantined_rows) == (1, 2)
    q = data.quarantine(c.ref or "")
    assert q is not None and q.rows == 2
    assert sorted(data.read_pandas(q.ref)["_line"].tolist()) == [3, 4]
    updated = data.update_dataset("trips", description="All trips", tags={"t": ""})
    assert updated.description == "All trips" and updated.tags == {}
    assert [d.name for d in data.list_datasets(pii=True)] == ["trips"]


def test_lists_come_in_pages(client: Client) -> None:
    data = client.data
    for name in ("c", "a", "b"):
        data.ingest(pd.DataFrame({"x": [1]}), name)
    first = data.list_datasets(max_results=2)
    assert [d.name for d in first] == ["a", "b"] and first.next_page_token
    rest = data.list_datasets(max_results=2, page_token=first.next_page_token)
    assert [d.name for d in rest] == ["c"] and rest.next_page_token is None
    ids = [data.ingest(pd.DataFrame({"x": [i]}), "a", mode="replace").version for i in range(2, 5)]
    every = list(iterate_pages(lambda t: data.list_versions("a", max_results=2, page_token=t)))
    oldest = data.list_versions("a")[0].id
    assert [v.id for v in every] == [oldest, *ids]
    newest = data.list_versions("a", max_results=3, newest_first=True)
    assert [v.id for v in newest] == ids[::-1] and newest.next_page_token
    older = data.list_versions("a", newest_first=True, page_token=newest.next_page_token)
    assert [v.id for v in older] == [oldest] and older.next_page_token is None
    err = _exactly(InvalidInput, data.list_datasets, max_results=0)
    assert "max_results" in err.message
    err = _exactly(InvalidInput, data.list_versions, "a", page_token="not-a-token")
    assert "page_token" in err.message
    _exactly(InvalidInput, data.list_datasets, bogus=1)
    _exactly(NotFound, data.list_versions, "nope")


def test_push_rows_and_stream_position(client: Client) -> None:
    data = client.data
    first = data.push_rows(
        "ev",
        [{"k": 1, "s": "a"}, {"k": 2, "s": "b"}],
        source_info={"stream": "redis://s", "offsets": {"id": "1-0"}},
    )
    second = data.push_rows("ev", '{"k": 3, "s": "c"}\nnot json\n{"k": 4, "s": "d"}\n')
    assert (second.rows, second.quarantined_rows) == (4, 1)
    assert data.get_version("ev").parents == [first.ref]
    assert data.read_pandas("ev")["k"].tolist() == [1, 2, 3, 4]
    pos = data.stream_position("ev", "redis://s")
    assert pos is not None and pos.offsets == {"id": "1-0"} and pos.version == first.version


def test_errors_are_the_same_class(client: Client, tmp_path: Path) -> None:
    data = client.data
    _exactly(NotFound, data.get_dataset, "ghost")
    _exactly(NotFound, data.get_version, "ghost@latest")
    _exactly(InvalidInput, data.get_version, "bad name")
    data.ingest(FRAME, "trips")
    err = _exactly(
        InvalidInput,
        data.validate,
        "trips",
        {"expectations": [{"expect_column_values_to_be_unique": {"column": "nope"}}]},
    )
    assert "'nope'" in err.message and "id, city, fare" in err.message
    gate = _exactly(InvalidInput, data.ingest, FRAME.assign(id=[5, 6, 7, 8]), "trips", suite=SUITE)
    assert gate.details["validation"]["success"] is False
    _exactly(Conflict, data.ingest, FRAME.drop(columns=["fare"]), "trips")
    _exactly(NotFound, data.ingest, tmp_path / "missing.csv", "trips")
    _exactly(InvalidInput, data.ingest, FRAME, "x__quarantine")
    _exactly(AlreadyExists, data.create_dataset, "trips")
    _exactly(InvalidInput, data.lineage, "trips", direction="sideways")


def test_quality_transforms_and_lineage(client: Client) -> None:
    data = client.data
    base = data.ingest(FRAME, "trips", suite=SUITE, on_fail="quarantine")
    assert (base.rows, base.quarantined_rows) == (3, 1)
    report = data.validate("trips", SUITE)
    assert report.success and report.row_count == 3
    assert [r.gate for r in data.list_reports("trips")] == [None, "quarantine"]
    prof = data.profile("trips")
    assert prof.row_count == 3 and prof.column("fare").mean == pytest.approx(2.5)
    assert data.suggest_suite("trips").expectations
    sql = data.transform(
        ["trips"],
        sql="SELECT city, sum(fare) AS total FROM trips GROUP BY city ORDER BY city",
        output="by_city",
    )
    py = data.transform({"t": "trips"}, fn=lambda t: t[t.fare > 2], output="pricey")
    assert data.get_version("by_city").parents == [base.ref]
    assert data.read_pandas("pricey")["id"].tolist() == [2, 3]
    pricey = data.get_version("pricey")
    if client.is_remote:
        # A Python transform runs in the client: the server did not observe it, so its
        # parents and code are a claim, kept apart (issue 7), not lineage.
        assert pricey.transform_id is None and pricey.parents == []
        assert pricey.claimed is not None and pricey.claimed["parents"] == [base.ref]
        claimed = pricey.claimed["transform"]
        assert claimed["kind"] == "python" and "t.fare > 2" in claimed["code"]
    else:
        t = data.get_transform(pricey.transform_id or "")
        assert t.kind == "python" and "t.fare > 2" in t.code and pricey.claimed is None
    down = data.lineage("trips", direction="down")
    ids = {n.id for n in down.nodes}
    assert {f"version:{sql.ref}", f"version:{base.quarantine}"} <= ids
    assert (f"version:{py.ref}" in ids) is not client.is_remote
    d = data.diff("trips", "pricey")
    assert (d.rows_a, d.rows_b) == (3, 2)
    tagged = data.tag_version("trips", "gold")
    assert tagged.tags == ["gold"]
    annotated = data.annotate("trips", {"fare": {"description": "USD", "semantic_type": "money"}})
    assert annotated.columns[2].annotation.semantic_type == "money"


def test_viewer_reads_but_cannot_write(live_server: LiveServer) -> None:
    live_server.client().data.ingest(FRAME, "trips")
    viewer = live_server.client(live_server.token_for("viewer"))
    assert viewer.data.get_version("trips").rows == 4
    _exactly(PermissionDenied, viewer.data.ingest, FRAME, "trips2")
    _exactly(PermissionDenied, viewer.data.push_rows, "trips", [{"id": 9}])


def test_http_push_and_server_refuses_local_paths(live_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=120) as http:
        r = http.post(
            "/api/v1/data/datasets/pushed/rows",
            content=b'[{"a": 1}, {"a": 2}]',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 201 and r.json()["rows"] == 2
        r = http.post(
            "/api/v1/data/datasets/pushed/rows",
            content=b'{"a": 3}\n{"a": "x"}\n',
            headers={"content-type": "application/x-ndjson"},
        )
        assert r.status_code == 201 and r.json()["quarantined_rows"] == 1
        r = http.post("/api/v1/data/datasets/pushed/ingest", json={"source": "/etc/passwd"})
        assert r.status_code == 400 and "does not read its own files" in r.json()["message"]
        for sneaky in (
            "local:///etc/passwd",
            "memory://x/y.csv",
            "simplecache::file:///etc/passwd",
            "file:///etc/passwd",
            "http://127.0.0.1:5432/x.csv",
            "http://169.254.169.254/latest/meta-data/",
        ):
            r = http.post("/api/v1/data/datasets/pushed/ingest", json={"source": sneaky})
            assert r.status_code == 400, sneaky
            assert "root:" not in r.text
        r = http.post(
            "/api/v1/data/datasets/pushed/ingest",
            json={"source": "SELECT 1", "sql_url": "sqlite:////etc/passwd"},
        )
        assert r.status_code == 400 and r.json()["details"]["field"] == "sql_url"
        r = http.get("/api/v1/data/versions/pushed@latest/files/7")
        assert r.status_code == 400
        r = http.get("/api/v1/data/versions/pushed%40latest")
        assert r.status_code == 200 and r.json()["rows"] == 3


def test_ingest_options_one_object(client: Client, tmp_path: Path) -> None:
    """Options as an IngestOptions object, as keywords, or both (keywords win); the same
    validation on every implementation; ``label`` names an uploaded file."""
    data = client.data
    opts = IngestOptions(tags=["first"], description="from options", profile=False)
    r = data.ingest(FRAME, "trips", opts, description="keyword wins")
    v = data.get_version(r.ref or "")
    assert v.tags == ["first"] and v.description == "keyword wins"
    err = _exactly(InvalidInput, data.ingest, FRAME, "trips", on_fial="warn")
    assert err.details["field"] == "on_fial" and "on_fail" in err.message
    err = _exactly(InvalidInput, data.ingest, FRAME, "trips", on_fail="sometimes")
    assert err.details["field"] == "on_fail" and "'fail', 'quarantine' or 'warn'" in err.message
    err = _exactly(InvalidInput, data.ingest, FRAME, "trips", suite=42)
    assert err.details["field"] == "suite"
    csv = tmp_path / "tmp-1234.csv"
    csv.write_text("id,fare\n1,2.5\n")
    labelled = data.ingest_with(csv, "labelled", IngestOptions(), label="fares.csv")
    source = data.get_version(labelled.ref or "").source
    assert "fares.csv" in str(source) and "tmp-1234" not in str(source)


def test_upload_options_are_validated(live_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=headers) as http:
        for options, field in (
            ('{"on_fail": "sometimes"}', "on_fail"),
            ('{"sql_url": "postgresql://db/x"}', "options.sql_url"),
            ("[1]", "options"),
        ):
            r = http.put(
                "/api/v1/data/upload/up",
                params={"filename": "a.csv", "options": options},
                content=b"a\n1\n",
            )
            assert r.status_code == 400, options
            assert r.json()["details"]["field"] == field
        assert http.get("/api/v1/data/datasets/up").status_code == 404


def test_changed_parts_are_refused_before_streaming_and_stale_cache_is_refetched(
    live_server: LiveServer,
) -> None:
    """A part changed in the server's store is a DigestMismatch before the first byte (not a
    cut stream read as "server unreachable"); a cached part is reused only by its digest."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    remote = live_server.client().data
    remote.ingest(FRAME, "cached")
    paths = remote.download("cached")
    assert remote.read_pandas("cached")["id"].tolist() == [1, 2, 3, 4]
    # Same size, other bytes: a size check would reuse it.
    size = os.path.getsize(paths[0])
    with open(paths[0], "r+b") as f:
        f.seek(size // 2)
        f.write(b"\x00" * 8)
    assert os.path.getsize(paths[0]) == size
    assert remote.read_pandas("cached")["id"].tolist() == [1, 2, 3, 4]

    server = live_server.embedded.data
    assert isinstance(server, EmbeddedData)
    part = server.vfiles.location(server.files("cached")[0].path)
    os.chmod(part, 0o644)
    pq.write_table(pa.table({"id": [666]}), part)
    os.remove(paths[0])
    _exactly(DigestMismatch, remote.read_pandas, "cached")


def test_open_file_streams_a_part_with_its_digest(client: Client) -> None:
    data = client.data
    r = data.ingest(FRAME, "trips")
    part, reader = data.open_file(r.ref or "", 0)
    with reader:
        body = reader.read()
    assert part.index == 0 and hashlib.sha256(body).hexdigest() == part.sha256
    assert pd.read_parquet(io.BytesIO(body)).equals(FRAME)
    err = _exactly(InvalidInput, data.open_file, "trips", 3)
    assert "parts 0..0, not 3" in err.message and err.details["index"] == 3
    sql = data.transform(["trips"], sql="SELECT id FROM trips", output="ids", git_commit="abc123")
    t = data.get_transform(data.get_version(sql.ref or "").transform_id or "")
    assert t.git_commit == "abc123"


def test_transform_options_are_validated_once(client: Client) -> None:
    """Transform takes a TransformOptions object or the same keywords; bad options are
    InvalidInput naming the field, on both sides, before anything runs."""
    data = client.data
    data.ingest(FRAME, "trips")
    opts = TransformOptions(inputs=["trips"], output="cheap", sql="SELECT * FROM trips")
    r = data.transform(["trips"], opts, description="from an options object")
    assert r.rows == 4 and data.get_version(r.ref or "").description == "from an options object"
    bad = _exactly(InvalidInput, data.transform, ["trips"], output="x", sql="SELECT 1", bogus=1)
    assert bad.details["field"] == "bogus" and "valid options are" in bad.message
    bad = _exactly(InvalidInput, data.transform, ["trips"], output="x", sql="SELECT 1", on_fail="?")
    assert bad.details["field"] == "on_fail"
    bad = _exactly(InvalidInput, data.transform, [], output="x", sql="SELECT 1")
    assert bad.details["field"] == "inputs"
    bad = _exactly(InvalidInput, data.transform, ["trips"], output="bad name!", sql="SELECT 1")
    assert bad.details["field"] == "output"
    with pytest.raises(InvalidInput, match="exactly one of fn=") as both:
        data.transform(["trips"], output="x", sql="SELECT 1", fn=len)
    assert type(both.value) is InvalidInput
    _exactly(InvalidInput, data.transform, ["trips"], sql="SELECT 1")  # output is required
    assert [d.name for d in data.list_datasets()] == ["cheap", "trips"]


def test_consume_options_are_validated_and_remote_refuses(client: Client) -> None:
    """Stream consumption is a service method: bad options are InvalidInput naming the field on
    both sides; a remote client refuses to consume (positions commit in the DB's transaction)."""
    bad = _exactly(InvalidInput, client.data.consume, "kafka://127.0.0.1:9/t", "ev", batch_size=0)
    assert bad.details["field"] == "batch_size"
    if client.is_remote:
        refused = _exactly(InvalidInput, client.data.consume, "kafka://127.0.0.1:9/t", "ev")
        assert "unset STRATA_URI" in refused.message
    else:
        unknown = _exactly(InvalidInput, client.data.consume, "nats://x/y", "ev")
        assert "unknown scheme" in unknown.message
