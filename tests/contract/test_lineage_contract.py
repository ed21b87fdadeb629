"""Lineage across layers: a dataset version down to the runs trained on it (embedded/remote)."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

import strata
from strata.cli.main import app
from strata.client import Client


def test_lineage_down_reaches_the_runs_that_used_a_version(client: Client) -> None:
    base = client.data.ingest(pd.DataFrame({"m": [1, 2, 3, 4], "v": [1.0, 2.0, 3.0, 4.0]}), "src")
    derived = client.data.transform(["src"], sql="SELECT * FROM src WHERE m <= 2", output="half")
    with strata.start_run(experiment="lin", run_name="trained-on-half", client=client) as run:
        strata.log_input(f"half@{derived.version}", context="train")
    with strata.start_run(experiment="lin", run_name="unrelated", client=client):
        strata.log_param("x", 1)

    graph = client.lineage(f"src@{base.version}", direction="down", depth=5)
    runs = [n for n in graph.nodes if n.kind == "run"]
    assert [(n.label, n.attrs["contexts"]) for n in runs] == [("trained-on-half", ["train"])]
    edge = next(e for e in graph.edges if e.target == f"run:{run.run_id}")
    assert edge.source == f"version:half@{derived.version}" and edge.kind == "input"

    up = client.lineage(f"half@{derived.version}", direction="up")
    assert not [n for n in up.nodes if n.kind == "run"]  # going up: parents only


def test_cli_lineage_json_includes_runs() -> None:
    c = Client()
    v = c.data.ingest(pd.DataFrame({"a": [1]}), "cli_src")
    with strata.start_run(experiment="lin-cli", client=c) as run:
        strata.log_input("cli_src@latest")
    out = CliRunner().invoke(
        app, ["data", "lineage", f"cli_src@{v.version}", "--direction", "down", "--json"]
    )
    assert out.exit_code == 0, out.output
    graph = json.loads(out.stdout)
    assert f"run:{run.run_id}" in {n["id"] for n in graph["nodes"]}
    c.close()
