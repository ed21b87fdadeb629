"""`strata monitor drift|report|profile|series` on the embedded default client (STRATA_HOME of
the test)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from monitoring_helpers import write_log
from typer.testing import CliRunner, Result

from strata.cli.main import app
from strata.client import Client
from strata.core.errors import InvalidInput, NotFound

runner = CliRunner()


def run(*args: str, code: int = 0) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result


def _frame(shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(shift, 1, 2000), "c": rng.choice(["a", "b", "c"], 2000)})


def test_drift_json_html_report_and_profiles(tmp_path: Path) -> None:
    with Client() as client:
        client.data.ingest(_frame(0, 0), "ref", tags=["base"])
        client.data.ingest(_frame(1.0, 1).drop(columns=["c"]).assign(y=1), "cur")
    out = json.loads(run("monitor", "drift", "-r", "ref@base", "-c", "cur@latest", "--json").output)
    assert out["columns"]["x"]["drifted"] and out["columns"]["x"]["method"] == "wasserstein"
    assert set(out["columns"]["x"]) == {"drifted", "method", "score", "threshold"}
    assert out["dataset_drift"] and out["drifted_share"] == 1.0
    assert out["missing"] == {"current": ["c"], "reference": ["y"]}
    page = tmp_path / "r.html"
    text = run("monitor", "drift", "-r", "ref@base", "-c", "cur@latest", "--html", str(page)).output
    assert "dataset drift" in text and "missing in current" in text and "c" in text
    assert "<svg" in page.read_text()
    report = tmp_path / "report.html"
    run("monitor", "report", "-r", "ref@base", "-c", "ref@base", "-o", str(report))
    assert "no dataset drift" in report.read_text()
    psi = json.loads(
        run(
            "monitor",
            "drift",
            "-r",
            "ref@base",
            "-c",
            "cur@latest",
            "--method",
            "psi",
            "--psi-bins",
            "quantile",
            "--json",
        ).output
    )
    assert psi["columns"]["x"]["method"] == "psi"
    run("monitor", "profile", "save", "base", "ref@base")
    listed = json.loads(run("monitor", "profile", "list", "--json").output)
    assert [p["name"] for p in listed] == ["base"]
    same = json.loads(
        run(
            "monitor",
            "drift",
            "-r",
            "profile:base",
            "-c",
            "cur@latest",
            "--json",
            "--store-as",
            "m1",
        ).output
    )
    assert same["columns"] == out["columns"]
    series = json.loads(run("monitor", "series", "m1", "--json").output)
    assert "drift.score.x" in series
    bad = run("monitor", "drift", "-r", "nope@1", "-c", "cur@latest", code=1)
    assert isinstance(bad.exception, NotFound) and "nope" in bad.exception.message


def test_log_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = dt.datetime(2013, 7, 3, 9, tzinfo=dt.UTC)
    with Client() as client:
        rid = write_log(
            client.backends.artifacts,
            monkeypatch,
            model="m",
            version="1",
            at=at,
            inputs={"x": np.array([1.0, 2.0])},
            prediction=np.array([0, 1]),
            entity_key="N1",
        )
    table = run("monitor", "log", "query", "m").output
    assert rid[:8] in table and "N1" in table
    rows = json.loads(run("monitor", "log", "query", "m", "--request-id", rid, "--json").output)
    assert [r["row"] for r in rows["rows"]] == [0, 1]
    stats = json.loads(
        run("monitor", "log", "stats", "m", "--since", "2013-07-01", "--json").output
    )
    assert stats["rows"] == 2 and stats["requests"] == 1
    out = tmp_path / "x.jsonl"
    assert (
        "Wrote 2 rows" in run("monitor", "log", "export", "m", str(out), "--format", "jsonl").output
    )
    assert len(out.read_text().splitlines()) == 2
    assert (
        "retention 9 days" in run("monitor", "log", "settings", "m", "--retention-days", "9").output
    )
    bad = run("monitor", "log", "query", "m", "--since", "last week", code=1)
    assert isinstance(bad.exception, InvalidInput) and "since" in bad.exception.message


def test_feedback_file_and_performance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = dt.datetime(2013, 7, 3, 9, tzinfo=dt.UTC)
    pred = np.array([1, 0, 1, 1])
    with Client() as client:
        rid = write_log(
            client.backends.artifacts,
            monkeypatch,
            model="c",
            version="1",
            at=at,
            inputs={"x": np.arange(4.0)},
            prediction=pred,
            proba=np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]),
        )
    labels = tmp_path / "labels.csv"
    labels.write_text(f"request_id,row,label\n{rid},0,1\n{rid},1,0\n{rid},2,0\nghost,0,1\n")
    out = run("monitor", "feedback", "c", str(labels)).output
    assert "4 labels stored" in out and "3 matched" in out and "ghost" in out
    report = json.loads(run("monitor", "performance", "c", "--json").output)
    (w,) = report["windows"]
    assert w["labelled"] == 3 and w["coverage"] == 0.75
    assert w["metrics"]["accuracy"]["value"] == pytest.approx(2 / 3)
    table = run("monitor", "performance", "c", "--window", "7d").output
    assert "3/4" in table and "75%" in table


def test_alert_rules_from_yaml(tmp_path: Path) -> None:
    from strata.monitoring import series
    from strata.monitoring.models import SeriesPoint

    with Client() as client:
        t0 = dt.datetime(2013, 7, 1, tzinfo=dt.UTC)
        series.append(client.backends.db, [SeriesPoint(model="m", series="f1", ts=t0, value=0.5)])
    (tmp_path / "train.yaml").write_text("experiment: e\ndata: flights@latest\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - {name: low-f1, model: m, expr: 'f1 < 0.7', cooldown_s: 0}\n"
        "  - name: retrain\n    model: m\n    expr: f1 < 0.6\n"
        "    actions: [{type: retrain, config: train.yaml}]\n"
    )
    assert "Saved rule low-f1" in run("monitor", "alerts", "save", str(rules)).output
    listed = json.loads(run("monitor", "alerts", "list", "--json").output)
    assert [r["rule"]["name"] for r in listed] == ["low-f1", "retrain"]
    assert listed[1]["rule"]["actions"][0]["config"] == {
        "experiment": "e",
        "data": "flights@latest",
    }
    assert "low-f1" in run("monitor", "alerts", "list").output
    bad = tmp_path / "bad.yaml"
    bad.write_text("{name: x, model: m, expr: 'latency > 3'}")
    err = run("monitor", "alerts", "save", str(bad), code=1)
    assert isinstance(err.exception, InvalidInput) and "unknown series" in err.exception.message
    fired = json.loads(run("monitor", "alerts", "evaluate", "--json").output)
    assert [f["rule"] for f in fired] == ["low-f1", "retrain"]
    (job,) = fired[1]["detail"]["actions"]  # embedded, the CLI waits for the queued training
    assert job["status"] == "failed" and "target" in job["error"]
    run("monitor", "alerts", "delete", "retrain")
    assert "low-f1" in run("monitor", "alerts", "events").output
    assert "low-f1" in run("monitor", "alerts", "show", "low-f1").output
