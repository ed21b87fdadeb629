"""Ingestion: sources, streaming readers, malformed rows to quarantine, bad input, SQL, S3."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from conftest import S3_BUCKET

from strata.backends.context import Backends
from strata.core.config import Settings
from strata.core.errors import InvalidInput, NotFound, Unavailable
from strata.data import ingest as ingest_mod
from strata.data.embedded import EmbeddedData
from strata.data.readers import open_reader
from strata.data.storage import write_parts


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_malformed_lines_go_to_quarantine_with_line_and_reason(
    lite: EmbeddedData, tmp_path: Path
) -> None:
    src = _csv(
        tmp_path / "t.csv",
        "a,b,c\n1,x,2.5\n2,y\n3,z,3.5\n4,w,1,9\n5,v,0.5\n",
    )
    r = lite.ingest(src, "t")
    assert (r.rows, r.quarantined_rows) == (3, 2)
    assert lite.read_pandas("t")["a"].tolist() == [1, 3, 5]
    q = lite.quarantine(r.ref or "")
    assert q is not None and q.quarantine_of == r.ref and q.rows == 2
    rows = lite.read_pandas(q.ref).sort_values("_line")
    assert rows["_line"].tolist() == [3, 5]
    assert rows["_raw"].tolist() == ["2,y", "4,w,1,9"]
    assert rows["_reason"].tolist() == ["expected 3 fields, found 2", "expected 3 fields, found 4"]
    assert set(rows["_source"]) == {str(src)}
    # the quarantine keeps the data columns (null for unparseable rows) before its own
    assert list(rows.columns[:3]) == ["a", "b", "c"]


def test_csv_type_error_after_first_block_is_line_exact(lite: EmbeddedData, tmp_path: Path) -> None:
    n = 300_000  # > the 4 MiB first block, so the bad value is met mid-stream
    lines = ["id,value,name"] + [f"{i},{i * 2},n{i}" for i in range(n)]
    bad_at = [250_000, 250_001, 280_000]
    for i in bad_at:
        lines[i + 1] = f"{i},oops{i},n{i}"
    lines.insert(100, "short,line")  # a wrong field count before the type errors
    src = _csv(tmp_path / "big.csv", "\n".join(lines) + "\n")
    r = lite.ingest(src, "big", profile=False)
    assert r.rows + r.quarantined_rows == n + 1
    assert r.quarantined_rows == len(bad_at) + 1
    q = lite.read_pandas(r.quarantine or "").sort_values("_line")
    assert q["_line"].tolist() == [101, *[i + 3 for i in bad_at]]
    text = src.read_text().splitlines()
    for line, raw in zip(q["_line"], q["_raw"], strict=True):
        assert text[line - 1] == raw
    assert "column 'value'" in q["_reason"].iloc[1] and "oops250000" in q["_reason"].iloc[1]
    got = lite.read_arrow("big", columns=["id"]).column("id").to_pylist()
    assert len(got) == n - len(bad_at) and got == sorted(got)
    assert set(range(n)) - set(got) == set(bad_at)


def test_identical_data_is_the_same_version_whatever_the_batching(
    lite: EmbeddedData, flights: pd.DataFrame, flights_csv: Path, tmp_path: Path
) -> None:
    table = pa.Table.from_pandas(flights.head(50_000), preserve_index=False)
    a = lite.ingest(table, "f", profile=False)
    b = lite.ingest(pa.Table.from_batches(table.to_batches(max_chunksize=777)), "f", profile=False)
    c = lite.ingest(flights.head(50_000), "f", profile=False)
    assert a.created and not b.created and not c.created
    assert a.version == b.version == c.version
    assert len(lite.list_versions("f")) == 1
    parts1 = write_parts(str(tmp_path / "p1"), table.schema, table.to_batches(max_chunksize=10))
    parts2 = write_parts(str(tmp_path / "p2"), table.schema, [table.combine_chunks()])
    assert [p.sha256 for p in parts1] == [p.sha256 for p in parts2]
    # different data, different version; the same data from CSV reads with its own types
    d = lite.ingest(flights_csv, "f", profile=False, allow_breaking=True)
    assert d.version != a.version and d.rows == len(flights)


def test_parquet_jsonl_glob_and_directory_sources(lite: EmbeddedData, tmp_path: Path) -> None:
    frame = pd.DataFrame({"k": [1, 2, 3], "v": ["a", "b", None]})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "x.parquet")
    assert lite.ingest(tmp_path / "x.parquet", "pq").rows == 3
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(3):
        _csv(folder / f"p{i}.csv", f"k,v\n{i},a{i}\n{i + 10},b{i}\n")
    assert lite.ingest(str(folder / "*.csv"), "glob").rows == 6
    assert lite.read_pandas("glob")["k"].tolist() == [0, 10, 1, 11, 2, 12]
    assert lite.ingest(str(folder), "dir").version == lite.get_version("glob").id
    jl = _csv(
        tmp_path / "e.jsonl",
        '{"k": 1, "v": "a"}\n\n{"k": 2, "v": "b"\n[1, 2]\n{"k": "x", "v": "c"}\n'
        '{"k": 4, "v": "d", "extra": 1}\n{"k": 5}\n',
    )
    r = lite.ingest(jl, "events")
    assert (r.rows, r.quarantined_rows) == (2, 4)
    q = lite.read_pandas(r.quarantine or "").sort_values("_line")
    assert q["_line"].tolist() == [3, 4, 5, 6]
    reasons = q["_reason"].tolist()
    assert reasons[0].startswith("invalid JSON") and "not a JSON object" in reasons[1]
    assert "unexpected field" in reasons[3]
    assert lite.read_pandas("events")["k"].tolist() == [1, 5]


def test_bad_input_errors_name_the_source(lite: EmbeddedData, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(NotFound, match=r"nope\.csv"):
        lite.ingest(missing, "x")
    with pytest.raises(NotFound, match="No file matches"):
        lite.ingest(str(tmp_path / "*.parquet"), "x")
    with pytest.raises(InvalidInput, match="empty"):
        lite.ingest(_csv(tmp_path / "empty.csv", ""), "x")
    with pytest.raises(InvalidInput, match="no rows"):
        lite.ingest(_csv(tmp_path / "header.csv", "a,b\n"), "x")
    with pytest.raises(InvalidInput, match="format"):
        lite.ingest(_csv(tmp_path / "data.bin", "a\n1\n"), "x")
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:9/data\.csv"):
        lite.ingest("http://127.0.0.1:9/data.csv", "x")
    with pytest.raises(InvalidInput, match="Invalid dataset name"):
        lite.ingest(pd.DataFrame({"a": [1]}), "bad name")
    with pytest.raises(InvalidInput, match="quarantines' own"):
        lite.ingest(pd.DataFrame({"a": [1]}), "x__quarantine")
    with pytest.raises(InvalidInput, match="Cannot ingest a int"):
        lite.ingest(5, "x")
    assert lite.list_datasets().items == []


def test_http_url_source(lite: EmbeddedData) -> None:
    body = b"a,b\n1,2\n3,4\n"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/d.csv":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.send_response(200 if self.path == "/d.csv" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        r = lite.ingest(f"{url}/d.csv", "web")
        assert r.rows == 2 and lite.get_version("web").source["uri"] == f"{url}/d.csv"
        with pytest.raises(NotFound, match=r"missing\.csv"):
            lite.ingest(f"{url}/missing.csv", "web")
    finally:
        server.shutdown()
        server.server_close()


def test_arrow_c_stream_source(lite: EmbeddedData) -> None:
    """Polars and friends export ``__arrow_c_stream__``; any such object ingests."""

    class Exporter:
        def __init__(self, table: pa.Table) -> None:
            self.table = table

        def __arrow_c_stream__(self, requested_schema: object = None) -> object:
            return self.table.__arrow_c_stream__(requested_schema)

    table = pa.table({"x": [1, 2, 3]})
    r = lite.ingest(Exporter(table), "cstream")
    assert r.rows == 3 and lite.get_version("cstream").source["type"] == "Exporter"
    assert lite.ingest(table, "cstream").version == r.version


def test_polars_dataframe_source(lite: EmbeddedData) -> None:
    import polars as pl

    df = pl.DataFrame({"carrier": ["UA", "AA", None], "delay": [3.5, -1.0, 12.25]})
    r = lite.ingest(df, "pl_flights")
    assert r.rows == 3
    back = lite.read_arrow("pl_flights")
    assert back.column("carrier").to_pylist() == ["UA", "AA", None]
    # the same rows from pandas are the same version (content-addressed, not source-addressed)
    assert lite.ingest(df.to_pandas(), "pl_flights").version == r.version


def test_sql_source_on_postgres(lite: EmbeddedData, pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE trips (id int, city text, fare numeric(8,2), ts timestamptz)")
        )
        conn.execute(
            sa.text(
                "INSERT INTO trips SELECT g, 'c' || (g % 7), g * 1.25, "
                "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute' "
                "FROM generate_series(1, 150000) g"
            )
        )
    engine.dispose()
    r = lite.ingest("SELECT * FROM trips ORDER BY id", "trips", sql_url=pg_url, profile=False)
    assert r.rows == 150_000
    v = lite.get_version("trips")
    assert v.source["kind"] == "sql" and v.source["query"].startswith("SELECT")
    types = [c.type for c in v.columns]
    assert types[:3] == ["int64", "string", "decimal128(8, 2)"]
    assert types[3].startswith("timestamp[us, tz=")
    assert lite.read_arrow("trips", columns=["id"]).column("id").to_pylist()[:3] == [1, 2, 3]
    secret = pg_url.replace("postgres@", "postgres:s3cr3tpw@", 1)
    with pytest.raises(InvalidInput, match="no_such_table") as info:
        lite.ingest("SELECT * FROM no_such_table", "x", sql_url=secret)
    assert "s3cr3tpw" not in info.value.message
    unreachable = "postgresql+psycopg://postgres:s3cr3tpw@127.0.0.1:1/test"
    with pytest.raises(Unavailable) as down:
        lite.ingest("SELECT 1", "x", sql_url=unreachable)
    assert "s3cr3tpw" not in down.value.message and "127.0.0.1:1" in down.value.message


def test_s3_store_and_s3_source(s3_endpoint: str, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home", artifact_uri=f"s3://{S3_BUCKET}/store", s3_endpoint_url=s3_endpoint
    )
    backends = Backends(settings)
    svc = EmbeddedData(backends)
    try:
        frame = pd.DataFrame({"k": range(1000), "v": [f"s{i}" for i in range(1000)]})
        r = svc.ingest(frame, "s3data")
        files = svc.files("s3data")
        assert files[0].uri.startswith(f"s3://{S3_BUCKET}/store/datasets/s3data/{r.version}/")
        assert svc.read_pandas("s3data").equals(frame)
        assert svc.duckdb("s3data").aggregate("sum(k)").fetchall() == [(499500,)]
        import boto3

        boto3.client("s3", endpoint_url=s3_endpoint).put_object(
            Bucket=S3_BUCKET, Key="in/a.csv", Body=b"k,v\n1,x\n2,y\n"
        )
        got = svc.ingest(f"s3://{S3_BUCKET}/in/a.csv", "froms3")
        assert got.rows == 2
        with pytest.raises(NotFound, match=r"missing\.csv"):
            svc.ingest(f"s3://{S3_BUCKET}/in/missing.csv", "froms3")
    finally:
        backends.close()


def test_reader_streams_in_bounded_batches(tmp_path: Path) -> None:
    """The CSV reader yields block-sized batches, never the whole file."""
    src = _csv(tmp_path / "s.csv", "a,b\n" + "".join(f"{i},{i}\n" for i in range(400_000)))
    reader = open_reader(str(src))
    sink = ingest_mod.BadRowSink(str(tmp_path / "bad.parquet"))
    sizes = [b.num_rows for b in reader.batches(sink)]
    assert sum(sizes) == 400_000 and len(sizes) > 1 and max(sizes) < 400_000
    assert json.loads(json.dumps(reader.info))["format"] == "csv"
