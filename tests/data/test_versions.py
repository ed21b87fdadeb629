"""Versions: gates, schema evolution, append + stream offsets, references, catalog, diff."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from strata.core.errors import Conflict, InvalidInput, NotFound
from strata.data.embedded import EmbeddedData
from strata.data.models import ColumnAnnotation
from strata.governance.audit import list_records

SUITE = {
    "name": "trips",
    "expectations": [
        {"expect_column_values_to_not_be_null": {"column": "fare"}},
        {
            "expect_column_values_to_be_between": {
                "column": "fare",
                "min_value": 0,
                "max_value": 100,
            }
        },
        {"expect_column_values_to_be_in_set": {"column": "city", "value_set": ["a", "b"]}},
    ],
}


def _trips() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "fare": [10.0, None, 250.0, 5.0, 7.5, -1.0],
            "city": ["a", "b", "a", "z", "b", "a"],
        }
    )


def test_gate_modes(data: EmbeddedData) -> None:
    with pytest.raises(InvalidInput, match="not published") as info:
        data.ingest(_trips(), "trips", suite=SUITE, on_fail="fail")
    assert info.value.details["validation"]["success"] is False
    assert data.get_dataset("trips").latest_version is None
    assert data.list_versions("trips").items == []
    unpublished = data.ingest(_trips(), "trips", suite=SUITE, raise_on_fail=False)
    assert not unpublished.published and unpublished.version is None

    warned = data.ingest(_trips(), "trips", suite=SUITE, on_fail="warn")
    assert warned.published and warned.rows == 6 and warned.quarantined_rows == 0
    assert warned.validation is not None and warned.validation["success"] is False
    reports = data.list_reports(warned.ref or "")
    assert len(reports) == 1 and reports[0].gate == "warn" and not reports[0].success

    q = data.ingest(_trips(), "trips", suite=SUITE, on_fail="quarantine")
    assert (q.rows, q.quarantined_rows) == (2, 4)
    assert q.validation is not None and q.validation["success"] is True
    assert data.read_pandas("trips")["id"].tolist() == [1, 5]
    bad = data.read_pandas(q.quarantine or "").sort_values("_row")
    assert bad["id"].tolist() == [2, 3, 4, 6] and bad["_row"].tolist() == [2, 3, 4, 6]
    assert "expect_column_values_to_not_be_null(fare)" in bad["_reason"].iloc[0]
    assert "expect_column_values_to_be_between(fare)" in bad["_reason"].iloc[1]
    assert "not in" in bad["_reason"].iloc[2]
    assert bad["_line"].isna().all()
    # the quarantine dataset is in the catalog only on request
    assert [d.name for d in data.list_datasets()] == ["trips"]
    assert "trips__quarantine" in [d.name for d in data.list_datasets(include_quarantine=True)]
    actions = [r.action for r in list_records(data.db, action="data.*", limit=50)]
    assert actions.count("data.ingest") == 4


def test_unknown_column_in_suite_names_it(data: EmbeddedData) -> None:
    suite = {"expectations": [{"expect_column_values_to_not_be_null": {"column": "nope"}}]}
    with pytest.raises(InvalidInput, match=r"'nope'.*existing columns: id, fare, city"):
        data.ingest(_trips(), "t2", suite=suite)
    data.ingest(_trips(), "t2")
    with pytest.raises(InvalidInput, match="'nope'"):
        data.validate("t2", suite)
    report = data.validate("t2@latest", SUITE)
    assert not report.success and [r.success for r in report.results] == [False, False, False]
    assert data.list_reports("t2")[0].report["suite_name"] == "trips"


def test_schema_evolution_and_breaking_flag(data: EmbeddedData) -> None:
    base = pd.DataFrame({"a": pa.array([1, 2], type=pa.int32()).to_pandas(), "b": ["x", "y"]})
    v1 = data.ingest(base, "evo")
    added = data.ingest(base.assign(c=[1.0, 2.0]), "evo")
    assert added.schema_changes is not None and not added.schema_changes.breaking
    assert [c.name for c in added.schema_changes.added] == ["c"]
    wider = data.ingest(
        pa.table({"a": pa.array([1, 2], pa.int64()), "b": ["x", "y"], "c": [1.0, 2.0]}), "evo"
    )
    assert wider.schema_changes is not None
    assert wider.schema_changes.type_changed[0].widening
    with pytest.raises(Conflict, match=r"breaking schema change.*removed c"):
        data.ingest(base, "evo")
    assert data.get_version("evo").id == wider.version
    back = data.ingest(base, "evo", allow_breaking=True)
    assert back.version == v1.version and not back.created
    assert data.get_version("evo@latest").id == v1.version
    with pytest.raises(Conflict, match=r"a int32→int64 \(widening\), b string→int64"):
        data.ingest(pd.DataFrame({"a": [1], "b": [2]}), "evo")


def test_append_reuses_parts_and_commits_stream_offsets(data: EmbeddedData) -> None:
    first = data.push_rows(
        "events",
        [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}],
        source_info={"stream": "kafka://t", "offsets": {"0": 2}},
    )
    assert first.rows == 2
    second = data.push_rows(
        "events",
        b'{"k": 3, "v": "c"}\n{"k": "x"}\n{"k": 4}\n',
        source_info={"stream": "kafka://t", "offsets": {"0": 5}},
    )
    assert (second.rows, second.quarantined_rows) == (4, 1)
    files = data.files("events")
    assert len(files) == 2 and files[0].path == data.files(first.ref or "")[0].path
    v = data.get_version("events")
    assert v.parents == [first.ref]
    assert data.read_pandas("events")["k"].tolist() == [1, 2, 3, 4]
    pos = data.stream_position("events", "kafka://t")
    assert pos is not None and pos.offsets == {"0": 5} and pos.version == second.version
    assert data.stream_position("events", "other") is None
    with pytest.raises(InvalidInput, match="column 'k'"):
        data.ingest(pd.DataFrame({"k": ["x"], "v": ["d"]}), "events", mode="append")
    with pytest.raises(InvalidInput, match="No rows"):
        data.push_rows("events", b"")


def test_references_tags_and_annotations(data: EmbeddedData, tmp_path: Path) -> None:
    v1 = data.ingest(
        pd.DataFrame({"email": ["a@x"], "n": [1]}),
        "users",
        annotations={"email": {"pii": True, "semantic_type": "email"}},
        tags=["first"],
        description="v1",
    )
    v2 = data.ingest(pd.DataFrame({"email": ["b@x"], "n": [2]}), "users")
    assert v1.version and v2.version
    assert data.get_version(f"users@{v1.version[:6]}").id == v1.version
    assert data.get_version("users@first").id == v1.version
    assert data.get_version("users").id == v2.version
    assert data.read_pandas("users", as_of=v1.version[:6])["email"].tolist() == ["a@x"]
    assert data.read_pandas("users", as_of="first")["n"].tolist() == [1]
    assert data.duckdb("users", as_of="latest").aggregate("max(n)").fetchall() == [(2,)]
    with pytest.raises(InvalidInput, match="already names a version"):
        data.read_arrow(f"users@{v2.version}", as_of="first")
    inherited = data.get_version("users").columns[0].annotation
    assert inherited.pii and inherited.semantic_type == "email"
    data.tag_version("users", "prod")
    assert data.get_version("users@prod").id == v2.version
    data.tag_version(f"users@{v1.version}", "prod")  # tags move
    assert data.get_version("users@prod").id == v1.version
    with pytest.raises(NotFound, match="'nosuch'"):
        data.get_version("users@nosuch")
    with pytest.raises(NotFound, match="Dataset 'ghost'"):
        data.get_version("ghost@latest")
    with pytest.raises(InvalidInput, match="shadow"):
        data.tag_version("users", "abcd1234")
    with pytest.raises(InvalidInput, match=r"column 'zip'.*existing columns: email, n"):
        data.annotate("users", {"zip": ColumnAnnotation(pii=True)})
    data.annotate("users", {"n": ColumnAnnotation(description="count")})
    assert data.get_version("users").columns[1].annotation.description == "count"
    data.update_dataset("users", description="People", tags={"team": "growth"})
    data.ingest(pd.DataFrame({"x": [1.5]}), "metrics", project="ops")
    assert [d.name for d in data.list_datasets(pii=True)] == ["users"]
    assert [d.name for d in data.list_datasets(pii=False)] == ["metrics"]
    assert [d.name for d in data.list_datasets(column="x")] == ["metrics"]
    assert [d.name for d in data.list_datasets(tag="team=growth")] == ["users"]
    assert [d.name for d in data.list_datasets(tag="team")] == ["users"]
    assert [d.name for d in data.list_datasets(query="PEOP")] == ["users"]
    assert [d.name for d in data.list_datasets(project="ops")] == ["metrics"]
    assert data.get_dataset("users").version_count == 2


def test_read_back_forms_and_diff(data: EmbeddedData, flights: pd.DataFrame) -> None:
    jan = data.ingest(flights[flights.month == 1], "fl")
    feb = data.ingest(
        flights[flights.month == 2].drop(columns=["tailnum"]), "fl", allow_breaking=True
    )
    arrow = data.read_arrow(f"fl@{jan.version}", columns=["month", "dep_delay"])
    assert arrow.num_rows == jan.rows and arrow.column_names == ["month", "dep_delay"]
    rel = data.duckdb("fl")
    assert rel.aggregate("count(*), min(month)").fetchall() == [(feb.rows, 2)]
    import duckdb

    con = duckdb.connect()
    data.duckdb(f"fl@{jan.version}", con=con, view="jan")
    assert con.sql("SELECT count(*) FROM jan").fetchall() == [(jan.rows,)]
    assert all(f.uri.startswith("file://") for f in data.files("fl"))
    d = data.diff(f"fl@{jan.version}", "fl")
    assert (d.rows_a, d.rows_b) == (jan.rows, feb.rows) and not d.same_content
    assert [c.name for c in d.schema_changes.removed] == ["tailnum"]
    assert any(c["name"] == "dep_delay" for c in d.columns["columns"])
    with pytest.raises(InvalidInput, match="no column 'nope'"):
        data.read_arrow("fl", columns=["nope"])


def test_failed_ingest_leaves_nothing(data: EmbeddedData, tmp_path: Path) -> None:
    """An ingest that fails midway publishes nothing and leaves no staging behind."""
    data.ingest(pd.DataFrame({"a": [1]}), "keep")
    with pytest.raises(Conflict):
        data.ingest(pd.DataFrame({"b": ["x"]}), "keep")
    assert len(data.list_versions("keep")) == 1
    assert list(Path(data.tmp_root).iterdir()) == []
    with data.db.read() as s:
        n = s.execute(sa.text("SELECT count(*) FROM dat_versions")).scalar_one()
    assert n == 1


def test_append_version_profile_covers_the_whole_version(lite: EmbeddedData) -> None:
    lite.ingest(pd.DataFrame({"v": [1.0, 2.0, 3.0]}), "grow")
    lite.ingest(pd.DataFrame({"v": [10.0, 20.0]}), "grow", mode="append")
    profile = lite.profile("grow")
    assert profile.row_count == 5
    assert profile.column("v").count == 5


def test_concurrent_append_is_refused_not_lost(
    lite: EmbeddedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    import strata.data.commit as commit

    lite.ingest(pd.DataFrame({"v": [1]}), "race")
    real_stage = commit.stage

    def stage_while_another_append_lands(*args: object, **kwargs: object) -> object:
        staged = real_stage(*args, **kwargs)  # type: ignore[arg-type]
        monkeypatch.setattr(commit, "stage", real_stage)
        lite.ingest(pd.DataFrame({"v": [2]}), "race", mode="append")  # wins the race
        return staged

    monkeypatch.setattr(commit, "stage", stage_while_another_append_lands)
    with pytest.raises(Conflict, match="moved from"):
        lite.ingest(pd.DataFrame({"v": [3]}), "race", mode="append")
    assert sorted(lite.read_pandas("race")["v"]) == [1, 2]
