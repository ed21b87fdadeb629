"""`strata models register|alias|request-promotion|approve|reject|rollback|list|show|versions|
card|delete`, on the embedded default client (STRATA_HOME of the test)."""

from __future__ import annotations

import json
from pathlib import Path

from registry_helpers import log_run
from typer.testing import CliRunner, Result

from strata.cli.main import app
from strata.client import Client
from strata.core.errors import NotFound, PermissionDenied

runner = CliRunner()


def run(*args: str, code: int = 0) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_the_registry_walk(tmp_path: Path) -> None:
    with Client() as client:
        first, second = log_run(client), log_run(client, c=0.3)
    assert json.loads(run("models", "register", "churn", "--run", first, "--json").output) == {
        "name": "churn",
        "version": 1,
    }
    assert "version 2" in run("models", "register", "churn", "--run", second).output
    assert "v1 → v2" not in run("models", "alias", "set", "churn", "canary", "1").output
    out = run("models", "alias", "set", "churn", "canary", "2", "--reason", "newer").output
    assert "v1 → v2" in out
    history = json.loads(run("models", "alias", "history", "churn", "canary", "--json").output)
    assert [(h["from_version"], h["to_version"]) for h in history["items"]] == [(1, 2), (None, 1)]
    assert history["items"][0]["reason"] == "newer"
    req = json.loads(
        run(
            "models",
            "request-promotion",
            "churn",
            "1",
            "--alias",
            "production",
            "--reason",
            "best",
            "--json",
        ).output
    )
    assert req["status"] == "pending" and req["id"]
    denied = runner.invoke(app, ["models", "approve", req["id"]])
    assert isinstance(denied.exception, PermissionDenied)
    run("models", "settings", "--allow-self-approval")
    assert "approved" in run("models", "approve", req["id"], "--comment", "ok").output
    req2 = json.loads(
        run(
            "models",
            "request-promotion",
            "churn",
            "2",
            "--alias",
            "production",
            "--reason",
            "v2",
            "--json",
        ).output
    )
    run("models", "approve", req2["id"])
    assert "v2 → v1" in run("models", "rollback", "churn", "--alias", "production").output
    req3 = json.loads(
        run(
            "models",
            "request-promotion",
            "churn",
            "2",
            "--alias",
            "production",
            "--reason",
            "again",
            "--json",
        ).output
    )
    assert "rejected" in run("models", "reject", req3["id"], "--comment", "no").output
    listed = json.loads(run("models", "list", "--json").output)
    assert [m["name"] for m in listed["items"]] == ["churn"]
    assert listed["items"][0]["aliases"] == {"canary": 2, "production": 1}
    shown = json.loads(run("models", "show", "churn", "--json").output)
    assert shown["latest_version"] == 2
    versions = json.loads(run("models", "versions", "churn", "--json").output)
    assert [v["version"] for v in versions["items"]] == [2, 1]
    reqs = json.loads(run("models", "requests", "--model", "churn", "--json").output)
    assert [r["status"] for r in reqs["items"]] == ["rejected", "approved", "approved"]
    assert "production" in run("models", "list").output
    card = run("models", "card", "churn", "1", "--intended-use", "Churn scoring").output
    assert "# Model card: churn v1" in card and "Churn scoring" in card
    carded = json.loads(run("models", "card", "churn", "1", "--json").output)
    assert carded["sections"]["intended_use"] == "Churn scoring" and carded["version"] == 1
    assert carded["format"] == "markdown" and "Churn scoring" in carded["card"]
    one = json.loads(run("models", "show", "churn", "1", "--json").output)
    assert (one["version"], one["run_id"], one["aliases"]) == (1, first, ["production"])
    assert "v2" not in run("models", "show", "churn", "1").output
    run("models", "card", "churn", "1", "--html", "-o", str(tmp_path / "card.html"))
    assert (tmp_path / "card.html").read_text().startswith("<!doctype html>")
    run("models", "delete", "churn", "2", "-y")
    gone = runner.invoke(app, ["models", "show", "nope"])
    assert isinstance(gone.exception, NotFound)
