"""`strata features ...` as a user runs it: plan, apply, list, materialize, lookups, a
training set, and errors in plain words."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from strata.cli.main import app
from strata.client import Client

from .conftest import FLIGHT_DEFS, planes, weather

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["features", *args])
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.output


def test_cli_walk(tmp_path: Path) -> None:
    with Client() as client:  # STRATA_HOME is the test's own (tests/conftest.py)
        client.data.ingest(weather, "weather")
        client.data.ingest(planes, "planes")
        entities = (
            weather[["origin", "time_hour"]]
            .head(50)
            .rename(columns={"time_hour": "event_timestamp"})
        )
        client.data.ingest(entities, "entity_rows")
    defs = tmp_path / "features.yaml"
    defs.write_text(yaml.safe_dump(FLIGHT_DEFS))
    assert "add" in run("plan", str(defs)) and "weather" in run("plan", str(defs))
    applied = json.loads(run("apply", str(defs), "--json"))
    assert applied["applied"] and {c["action"] for c in applied["changes"]} == {"add"}
    assert "No changes" in run("plan", str(defs))
    listed = json.loads(run("list", "--json"))
    assert [v["name"] for v in listed["items"]] == ["planes", "weather"]
    assert "origin" in run("list", "entities")
    assert "weather:temp" in run("search", "temp")
    stats = json.loads(run("stats", "weather", "--json"))
    assert stats["rows"] == len(weather) and stats["source_version"].startswith("weather@")
    temp = {c["name"]: c for c in stats["columns"]}["temp"]
    assert temp["nulls"] == int(weather["temp"].isna().sum())
    assert abs(temp["mean"] - weather["temp"].mean()) < 1e-9
    assert [c["name"] for c in stats["columns"]][:2] == ["origin", "time_hour"]
    assert "temp" in run("stats", "weather")
    missing = runner.invoke(app, ["features", "stats", "wether"])
    assert "registered: planes, weather" in str(missing.exception)
    done = json.loads(run("materialize", "--end", "2014-01-01T00:00:00Z", "--json"))
    assert {r["view"]: r["rows"] for r in done["items"]} == {"weather": 3, "planes": len(planes)}
    online = json.loads(
        run("get-online", "--features", "planes:seats", "--entity", "tailnum=N14228", "--json")
    )
    assert online["values"][0]["planes:seats"]["value"] == 149
    out = run(
        "get-historical",
        "--entities",
        "entity_rows",
        "--features",
        "weather:temp",
        "--out",
        "training",
        "--json",
    )
    assert json.loads(out)["rows"] == 50
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"tailnum": "N14228", "seats": 150}]))
    assert "Wrote 1 row" in run("push", "planes", str(rows))
    rows.write_text(json.dumps([{"tailnum": "N14228", "seats": "many"}]))
    bad = runner.invoke(app, ["features", "push", "planes", str(rows)])
    assert bad.exit_code != 0 and "seats" in str(bad.exception)
    missing = runner.invoke(app, ["features", "show", "wether"])
    assert missing.exit_code != 0 and "weather" in str(missing.exception)
