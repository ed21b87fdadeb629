"""The same job against a server: it runs here and tracks there (STRATA_URI mode), on SQLite
and PostgreSQL metadata."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from conftest import LiveServer

import strata
import strata.models as sm
from strata.client import Client
from strata.tracking import fluent
from strata.training.job import TAG_DATA

from .conftest import base_config


@pytest.fixture
def remote(live_server: LiveServer) -> Iterator[Client]:
    client = live_server.client()
    yield client
    while fluent.active_run() is not None:
        fluent.end_run()
    client.close()


def test_train_and_evaluate_through_a_server(
    remote: Client, live_server: LiveServer, flights_sample: pd.DataFrame
) -> None:
    ref = remote.data.ingest(flights_sample, "flights").ref
    assert ref is not None
    result = strata.train(base_config(cv={"folds": 2}, sensitive=["carrier"]), client=remote)
    # the server's own store holds everything: run, metrics, input, model, report
    server = live_server.embedded
    run = server.tracking.get_run(result.run_id)
    assert run.tags[TAG_DATA] == ref and run.metrics["test_roc_auc"] > 0.6
    assert [i.name for i in run.inputs] == ["flights"]
    paths = {f.path for f in server.tracking.list_artifacts(result.run_id, "evaluation")}
    assert "evaluation/report.html" in paths
    model = sm.load(result.model_uri, tracking=server.tracking)
    assert model.labels == [0, 1]
    report = strata.evaluate(
        result.model_uri,
        data=ref,
        target={"name": "late", "sql": "arr_delay > 15"},
        sensitive=["origin"],
        client=remote,
        shap_sample=20,
    )
    assert report.metrics["roc_auc"] > 0.6 and report.fairness[0].column == "origin"
