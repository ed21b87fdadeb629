"""`make demo` keeps working: the training part on a fresh embedded store."""

from __future__ import annotations

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
    assert "Best run" in capsys.readouterr().out
