"""`strata data ...`: the command spellings, one JSON object with --json, exit codes, remote."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import LiveServer
from typer.testing import CliRunner, Result

from strata.cli.main import app, main

runner = CliRunner()


def run(*args: str, code: int = 0) -> Result:
    result = runner.invoke(app, ["data", *args])
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


def run_json(*args: str, code: int = 0) -> Any:
    return json.loads(run(*args, "--json", code=code).stdout)


@pytest.fixture
def csvs(tmp_path: Path) -> Path:
    (tmp_path / "a.csv").write_text("id,score,city\n1,0.5,x\n2,,y\n3,0.9,x\nbad\n4,0.1,y\n")
    (tmp_path / "b.csv").write_text("id,score,city\n1,0.5,x\n2,0.7,y\n3,0.9,z\n")
    (tmp_path / "suite.yaml").write_text(
        "expectations:\n  - expect_column_values_to_not_be_null: {column: score}\n"
    )
    return tmp_path


def test_ingest_show_versions_diff_list(csvs: Path) -> None:
    a = run_json("ingest", str(csvs / "a.csv"), "--name", "scores", "--tag", "v1")
    assert (a["rows"], a["quarantined_rows"]) == (4, 1) and a["version"]
    human = run("ingest", str(csvs / "b.csv"), "--name", "scores")
    assert "Created scores@" in human.stdout and "rows/s" in human.stdout
    again = run("ingest", str(csvs / "b.csv"), "--name", "scores")
    assert "Unchanged (identical data)" in again.stdout
    shown = run_json("show", "scores@v1")
    assert shown["rows"] == 4 and shown["parents"] == [] and shown["id"] == a["version"]
    assert [c["name"] for c in shown["schema"]] == ["id", "score", "city"]
    assert "Schema" in run("show", "scores").stdout
    versions = run_json("versions", "scores")["versions"]
    assert [v["rows"] for v in versions] == [4, 3]
    assert "Versions of scores" in run("versions", "scores").stdout
    d = run_json("diff", "scores@v1", "scores")
    assert (d["rows_a"], d["rows_b"], d["rows_delta"]) == (4, 3, -1)
    assert "rows 4 → 3" in run("diff", "scores@v1", "scores").stdout
    listed = run_json("list")["datasets"]
    assert [x["name"] for x in listed] == ["scores"]
    assert [x["name"] for x in run_json("list", "--all")["datasets"]] == [
        "scores",
        "scores__quarantine",
    ]
    assert run_json("list", "--column", "nope")["datasets"] == []
    q = run_json("quarantine", "scores@v1")
    assert q["rows"] == 1 and q["sample"][0]["_line"] == 5 and q["sample"][0]["_raw"] == "bad"
    assert "nothing was quarantined" in run("quarantine", "scores").stdout
    tagged = run_json("tag", "scores", "prod")
    assert "prod" in tagged["tags"]


def test_validate_profile_suggest_and_gate(csvs: Path, tmp_path: Path) -> None:
    run_json("ingest", str(csvs / "a.csv"), "--name", "s")
    report = run_json("validate", "s@latest", "--suite", str(csvs / "suite.yaml"), code=1)
    assert report["success"] is False and report["results"][0]["unexpected_count"] == 1
    table = run("validate", "s", "--suite", str(csvs / "suite.yaml"), code=1)
    assert "expect_column_values_to_not_be_null" in table.stdout
    prof = run_json("profile", "s")
    assert prof["row_count"] == 4 and prof["columns"][0]["name"] == "id"
    assert "Profile of s" in run("profile", "s").stdout
    out = tmp_path / "suggested.yaml"
    run("suggest-suite", "s", "-o", str(out))
    suggested = yaml.safe_load(out.read_text())
    assert suggested["expectations"] and all(len(e) == 1 for e in suggested["expectations"])
    assert run_json("suggest-suite", "s")["expectations"]
    # the suggested suite is valid input for validate
    run("validate", "s", "--suite", str(out), code=0)

    failed = run_json(
        "ingest",
        str(csvs / "a.csv"),
        "--name",
        "gated",
        "--suite",
        str(csvs / "suite.yaml"),
        code=1,
    )
    assert failed["published"] is False and failed["version"] is None
    assert failed["validation"]["success"] is False
    quarantined = run_json(
        "ingest",
        str(csvs / "a.csv"),
        "--name",
        "gated",
        "--suite",
        str(csvs / "suite.yaml"),
        "--on-fail",
        "quarantine",
    )
    assert (quarantined["rows"], quarantined["quarantined_rows"]) == (3, 2)


def test_errors_are_one_line_for_a_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.csv"
    monkeypatch.setattr(sys, "argv", ["strata", "data", "ingest", str(missing), "--name", "x"])
    with pytest.raises(SystemExit) as info:
        main()
    _, err = capsys.readouterr()
    err = err.replace("\n", "")  # Rich wraps long paths
    assert info.value.code == 1 and "does not exist" in err and str(missing) in err
    assert "Traceback" not in err
    bad_suite = tmp_path / "bad.yaml"
    bad_suite.write_text("expectations:\n  - expect_column_values_to_not_be_null: {column: [\n")
    (tmp_path / "d.csv").write_text("a\n1\n")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "strata",
            "data",
            "ingest",
            str(tmp_path / "d.csv"),
            "--name",
            "x",
            "--suite",
            str(bad_suite),
        ],
    )
    with pytest.raises(SystemExit) as info:
        main()
    _, err = capsys.readouterr()
    assert info.value.code == 2 and "line" in err


def test_remote_cli_uploads_the_file(
    live_server: LiveServer, csvs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATA_URI", live_server.url)
    monkeypatch.setenv("STRATA_TOKEN", live_server.admin_token)
    out = run_json("ingest", str(csvs / "a.csv"), "--name", "remote_scores")
    assert (out["rows"], out["quarantined_rows"]) == (4, 1)
    human = run("ingest", str(csvs / "b.csv"), "--name", "remote_scores")
    assert "Created remote_scores@" in human.stdout
    local = live_server.embedded.data.get_version(f"remote_scores@{out['version']}")
    assert local.source["uri"] == "a.csv" and local.source["kind"] == "upload"
    q = run_json("quarantine", f"remote_scores@{out['version']}")
    assert q["sample"][0]["_source"] == "a.csv" and q["sample"][0]["_line"] == 5
    assert run_json("show", "remote_scores")["rows"] == 3


def test_counts_are_pluralised_and_sizes_binary(tmp_path: Path) -> None:
    from strata.data.cli_common import size_text as _size

    (tmp_path / "one.csv").write_text("id,x\n1,a\n2\n")
    out = " ".join(run("ingest", str(tmp_path / "one.csv"), "--name", "one").stdout.split())
    assert "one@" in out and ": 1 row, " in out and "1 row quarantined" in out, out
    shown = " ".join(run("show", "one").stdout.split())
    assert " 1 row, " in shown and "1 file" in shown and "(1 row)" in shown, shown
    # "1 rows" as words ("(11 rows/s)", a rate, is not one)
    assert not re.search(r"(?<![\d.])1 rows", out + shown) and "file(s)" not in shown
    assert "1 quarantined row" in run("quarantine", "one").stdout
    assert _size(3 * 1024 * 1024) == "3.0 MiB" and _size(1536) == "1.5 KiB"


def test_lineage_tree_shows_node_kinds(csvs: Path) -> None:
    run("ingest", str(csvs / "b.csv"), "--name", "scores")
    run("transform", "--input", "scores", "--sql", "SELECT id FROM scores", "--output", "ids")
    tree = run("lineage", "ids").stdout
    assert "[version] ids@" in tree and "[transform]" in tree and "[version] scores@" in tree


def test_typed_ingest_quarantines_values_that_do_not_convert(tmp_path: Path) -> None:
    csv = tmp_path / "typed.csv"
    csv.write_text("id,n,when\n1,5,2024-01-01\n2,abc,2024-01-02\n3,7,nope\n4,,2024-01-04\n")
    got = run_json("ingest", str(csv), "--name", "typed", "--schema", "n=int, when=date")
    assert (got["rows"], got["quarantined_rows"]) == (2, 2)
    shown = run_json("show", "typed")
    assert {c["name"]: c["type"] for c in shown["schema"]} == {
        "id": "int64", "n": "int64", "when": "date32[day]",
    }  # fmt: skip
    sample = run_json("quarantine", "typed")["sample"]
    assert [(r["_line"], r["_raw"]) for r in sample] == [(3, "2,abc,2024-01-02"), (4, "3,7,nope")]
    assert "column 'n'" in sample[0]["_reason"] and "'abc'" in sample[0]["_reason"]
    assert "column 'when'" in sample[1]["_reason"] and "'nope'" in sample[1]["_reason"]

    (tmp_path / "schema.yaml").write_text("n: float\nwhen: string\n")
    again = run_json(
        "ingest", str(csv), "--name", "typed2", "--schema", str(tmp_path / "schema.yaml")
    )
    assert (again["rows"], again["quarantined_rows"]) == (3, 1)  # only 'abc' fails as a float

    for schema, words in (
        ("price=int", ["'price'", "does not have", "id, n, when"]),
        ("n=integr", ["Unknown type 'integr'", "column 'n'"]),
        ("n", ["COL=TYPE"]),
    ):
        bad = runner.invoke(app, ["data", "ingest", str(csv), "--name", "x", "--schema", schema])
        assert bad.exit_code != 0 and all(w in str(bad.exception) for w in words), bad.exception
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"n": [1]}), tmp_path / "p.parquet")
    bad = runner.invoke(
        app, ["data", "ingest", str(tmp_path / "p.parquet"), "--name", "x", "--schema", "n=int"]
    )
    assert "apply to CSV sources" in str(bad.exception)
