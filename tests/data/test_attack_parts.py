"""Attacks on stored versions: user SQL that writes a part, a part changed on disk or in a
cache, and what every read path does about it (issue 7, item 3)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from strata.backends.artifacts import DigestMismatch
from strata.core.errors import InvalidInput
from strata.data.embedded import EmbeddedData


def _part_path(data: EmbeddedData, ref: str) -> str:
    return data.locations(ref)[0]


def test_transform_copy_into_an_input_part_is_refused(lite: EmbeddedData) -> None:
    lite.ingest(pd.DataFrame({"a": [1, 2, 3]}), name="src")
    part = _part_path(lite, "src")
    before = Path(part).read_bytes()
    attacks = [
        f"COPY (SELECT 666 AS a) TO '{part}' (FORMAT parquet)",
        f"SELECT * FROM src; COPY (SELECT 666 AS a) TO '{part}' (FORMAT parquet)",
        f"EXPORT DATABASE '{os.path.dirname(part)}'",
        "ATTACH ':memory:' AS other",
    ]
    for sql in attacks:
        with pytest.raises(InvalidInput, match="exactly one SELECT"):
            lite.transform(["src"], sql=sql, output="evil")
    assert Path(part).read_bytes() == before
    # Ordinary SELECTs, CTEs and DuckDB's FROM-first form still work.
    ok = lite.transform(["src"], sql="WITH d AS (FROM src) SELECT a + 1 AS b FROM d", output="b")
    assert ok.rows == 3


def test_custom_expectation_cannot_smuggle_a_copy(lite: EmbeddedData) -> None:
    lite.ingest(pd.DataFrame({"a": [1, 2, 3]}), name="nums")
    part = _part_path(lite, "nums")
    before = Path(part).read_bytes()
    # Closes the engine's "SELECT COUNT(*) FROM (" and reopens it after the COPY.
    smuggled = (
        f"SELECT 1) _x; COPY (SELECT 666 AS a) TO '{part}' (FORMAT parquet); "
        "SELECT * FROM {relation}, (SELECT 1"
    )
    check = {"expect_sql_query_to_return_no_rows": {"query": smuggled}}
    with pytest.raises(InvalidInput, match="read-only"):
        lite.validate("nums", {"expectations": [check]})
    assert Path(part).read_bytes() == before


def test_published_parts_are_read_only_on_disk(lite: EmbeddedData) -> None:
    lite.ingest(pd.DataFrame({"a": [1, 2, 3]}), name="ro")
    mode = os.stat(_part_path(lite, "ro")).st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def _tamper(path: str) -> None:
    os.chmod(path, 0o644)
    pq.write_table(pa.table({"a": [666, 666, 666]}), path)


def test_a_changed_part_is_detected_by_every_embedded_read(lite: EmbeddedData) -> None:
    lite.ingest(pd.DataFrame({"a": [1, 2, 3]}), name="src")
    assert lite.read_pandas("src")["a"].tolist() == [1, 2, 3]  # verified once, then cached
    _tamper(_part_path_unverified(lite, "src"))
    with pytest.raises(DigestMismatch, match="changed after it was recorded"):
        lite.read_pandas("src")
    with pytest.raises(DigestMismatch):
        lite.duckdb("src").fetchall()
    with pytest.raises(DigestMismatch):
        lite.transform(["src"], sql="SELECT * FROM src", output="copy")
    with pytest.raises(DigestMismatch):
        lite.validate("src", {"expectations": [{"expect_column_to_exist": {"column": "a"}}]})
    assert not any(d.name == "copy" for d in lite.list_datasets())


def _part_path_unverified(data: EmbeddedData, ref: str) -> str:
    return data.vfiles.location(data.files(ref)[0].path)


def test_sql_source_secret_in_the_query_string_is_masked_in_the_version(
    postgres_base_url: str, tmp_path: Path
) -> None:
    from strata.backends.context import Backends
    from strata.core.config import Settings

    backends = Backends(Settings(home=tmp_path / "home"))
    try:
        data = EmbeddedData(backends)
        sep = "&" if "?" in postgres_base_url else "?"
        url = f"{postgres_base_url}{sep}password=hunter2Query"
        data.ingest("SELECT 1 AS one", "q", sql_url=url)
        version = data.get_version("q")
        assert "hunter2Query" not in version.model_dump_json()
        assert "password=***" in version.source["url"]
    finally:
        backends.close()


def test_ingest_audit_records_the_masked_source_and_the_sql_digest(
    postgres_base_url: str, tmp_path: Path
) -> None:
    import hashlib

    from strata.backends.context import Backends
    from strata.core.config import Settings
    from strata.governance import audit

    backends = Backends(Settings(home=tmp_path / "home"))
    try:
        data = EmbeddedData(backends)
        sep = "&" if "?" in postgres_base_url else "?"
        query = "SELECT 1 AS one"
        data.ingest(query, "q", sql_url=f"{postgres_base_url}{sep}password=hunter2Audit")
        records = audit.list_records(backends.db, action="data.ingest")
        details = records[-1].details
        assert details["sql_sha256"] == hashlib.sha256(query.encode()).hexdigest()
        assert details["source"]["kind"] == "sql" and "password=***" in details["source"]["url"]
        assert "hunter2Audit" not in str(details)
    finally:
        backends.close()
