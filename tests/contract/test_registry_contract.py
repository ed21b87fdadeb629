"""The registry contract: the same tests on the embedded and the remote client (SQLite and
PostgreSQL metadata). Models are small scikit-learn ones logged with ``strata.log_model``."""

from __future__ import annotations

import numpy as np
from registry_helpers import data as _data
from registry_helpers import exactly as _exactly
from registry_helpers import log_run

import strata
import strata.models as sm
from strata.client import Client
from strata.core.errors import (
    AlreadyExists,
    Conflict,
    DigestMismatch,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from strata.registry.models import VersionStatus


def test_register_pins_digests_and_reads_the_run(client: Client) -> None:
    reg = client.registry
    run_id = log_run(client)
    mv = reg.register("churn", run_id, description="first")
    assert (mv.name, mv.version, mv.status) == ("churn", 1, VersionStatus.READY)
    assert mv.run_id == run_id and mv.artifact_path == "model" and mv.format == "strata"
    assert mv.digest is not None and len(mv.digest) == 64
    assert mv.files["strata-model.yaml"] == mv.digest and len(mv.files) >= 2
    assert mv.metrics == {"acc": 0.9}
    assert mv.flavor == "sklearn" and mv.signature is not None
    assert mv.lineage.run_id == run_id
    model = reg.get_model("churn")
    assert model.latest_version == 1 and model.owner
    mv2 = reg.register("churn", log_run(client, c=0.5))
    assert mv2.version == 2
    assert [v.version for v in reg.search_versions("name = 'churn'")] == [2, 1]
    assert reg.get_version("churn", "2").run_id == mv2.run_id


def test_register_from_a_run_without_that_model_names_the_run_and_paths(client: Client) -> None:
    reg = client.registry
    run_id = log_run(client, path="clf")
    err = _exactly(NotFound, reg.register, "x", run_id)  # default path "model"
    assert run_id in err.message and "clf" in err.message
    assert err.details["model_paths"] == ["clf"]
    _exactly(NotFound, reg.get_model, "x")  # nothing half-written
    with strata.start_run(experiment="reg", client=client, capture_environment=False) as run:
        strata.log_metric("m", 1.0)
    err = _exactly(NotFound, reg.register, "x", run.run_id)
    assert "no logged model" in err.message
    _exactly(NotFound, reg.register, "x", "0" * 32)
    _exactly(InvalidInput, reg.register, "bad name!", run_id, "clf")
    _exactly(InvalidInput, reg.create_version, "x", "file:///etc/passwd")
    _exactly(InvalidInput, reg.create_version, "x", "runs:/abc/../../etc")


def test_unknown_model_version_alias_are_404_naming_them(client: Client) -> None:
    reg = client.registry
    err = _exactly(NotFound, reg.get_model, "nope")
    assert "'nope'" in err.message
    reg.register("m", log_run(client))
    err = _exactly(NotFound, reg.get_version, "m", 7)
    assert "no version 7" in err.message
    err = _exactly(NotFound, reg.get_version_by_alias, "m", "champion")
    assert "'champion'" in err.message
    _exactly(InvalidInput, reg.get_version, "m", "seven")
    _exactly(InvalidInput, reg.get_version, "m", 2**40)  # past the column's range: no 500
    from strata.core.page import encode_page_token

    huge = encode_page_token("offset", 2**62)
    _exactly(InvalidInput, reg.search_models, page_token=huge)
    _exactly(
        InvalidInput, reg.alias_history, "m", page_token=encode_page_token("before_seq", 2**62)
    )
    _exactly(NotFound, reg.alias_history, "nope")
    _exactly(NotFound, reg.get_request, "0" * 32)


def test_aliases_move_with_a_full_history(client: Client) -> None:
    reg = client.registry
    reg.register("m", log_run(client))
    reg.register("m", log_run(client, c=0.3))
    first = reg.set_alias("m", "staging", 1, reason="try it")
    assert (first.from_version, first.to_version, first.action) == (None, 1, "set")
    reg.set_alias("m", "staging", 2, reason="better")
    assert reg.get_version_by_alias("m", "staging").version == 2
    assert reg.get_model("m").aliases == {"staging": 2}
    assert reg.get_version("m", 2).aliases == ["staging"]
    history = reg.alias_history("m", "staging").items
    assert [(h.from_version, h.to_version, h.reason) for h in history] == [
        (1, 2, "better"),
        (None, 1, "try it"),
    ]
    assert all(h.actor for h in history)
    back = reg.rollback("m", "staging")
    assert (back.from_version, back.to_version, back.action) == (2, 1, "rollback")
    assert len(reg.alias_history("m", "staging").items) == 3
    page = reg.alias_history("m", "staging", max_results=2)
    assert len(page.items) == 2 and page.next_page_token
    rest = reg.alias_history("m", "staging", max_results=2, page_token=page.next_page_token)
    assert [h.seq for h in rest.items] == [history[-1].seq]
    gone = reg.delete_alias("m", "staging", reason="done")
    assert gone.to_version is None
    _exactly(NotFound, reg.get_version_by_alias, "m", "staging")
    _exactly(InvalidInput, reg.set_alias, "m", "Bad Alias", 1)
    _exactly(InvalidInput, reg.set_alias, "m", "latest", 1)
    _exactly(NotFound, reg.set_alias, "m", "canary", 9)


def test_alias_on_a_failed_version_is_409(client: Client) -> None:
    reg = client.registry
    run_id = log_run(client)
    client.tracking.delete_artifact(run_id, "model/input_example.json")
    mv = reg.register("m", run_id)
    assert mv.status == VersionStatus.FAILED and "input_example.json" in mv.status_message
    err = _exactly(Conflict, reg.set_alias, "m", "canary", 1)
    assert "failed" in err.message
    _exactly(Conflict, reg.request_promotion, "m", 1, alias="production", reason="x")


def test_production_moves_only_through_an_approved_request(client: Client) -> None:
    reg = client.registry
    reg.register("m", log_run(client))
    reg.register("m", log_run(client, c=0.2))
    _exactly(PermissionDenied, reg.set_alias, "m", "production", 1)
    _exactly(InvalidInput, reg.request_promotion, "m", 1, alias="production", reason=" ")
    req = reg.request_promotion("m", 1, alias="production", reason="best so far")
    assert req.status == "pending" and req.requested_by
    err = _exactly(PermissionDenied, reg.approve, req.id)  # the requester itself
    assert "may not approve" in err.message
    assert reg.get_settings().allow_self_approval is False
    reg.update_settings({"allow_self_approval": True})
    done = reg.approve(req.id, comment="ok")
    assert done.status == "approved" and done.decided_by == req.requested_by
    assert reg.get_version_by_alias("m", "production").version == 1
    _exactly(Conflict, reg.approve, req.id)  # decided already
    second = reg.request_promotion("m", 2, alias="production", reason="newer")
    assert reg.reject(second.id, comment="not yet").status == "rejected"
    third = reg.request_promotion("m", 2, alias="production", reason="now")
    reg.approve(third.id)
    moves = reg.alias_history("m", "production").items
    assert [(m.from_version, m.to_version, m.action, m.request_id) for m in moves] == [
        (1, 2, "promote", third.id),
        (None, 1, "promote", req.id),
    ]
    back = reg.rollback("m", "production", reason="incident")
    assert (back.from_version, back.to_version) == (2, 1)
    assert reg.get_version_by_alias("m", "production").version == 1
    assert [r.id for r in reg.list_requests(name="m", status="approved")] == [third.id, req.id]
    _exactly(Conflict, reg.delete_version, "m", 1)  # holds production
    _exactly(Conflict, reg.delete_model, "m")
    _exactly(InvalidInput, reg.list_requests, status="maybe")


def test_models_uri_loads_by_alias_and_version(client: Client) -> None:
    reg = client.registry
    x, _ = _data()
    reg.register("m", log_run(client))
    reg.set_alias("m", "canary", 1)
    by_alias = sm.load("models:/m@canary", tracking=client.tracking)
    by_version = sm.load("models:/m/1", tracking=client.tracking)
    latest = sm.load("models:/m/latest", tracking=client.tracking)
    expected = by_version.predict(x)
    assert np.array_equal(by_alias.predict(x), expected)
    assert np.array_equal(latest.predict(x), expected)
    err = _exactly(NotFound, sm.load, "models:/m@gone", tracking=client.tracking)
    assert "'gone'" in err.message
    _exactly(InvalidInput, sm.load, "models:/m", tracking=client.tracking)


def test_a_changed_model_is_refused_on_load(client: Client, tmp_path: object) -> None:
    reg = client.registry
    run_id = log_run(client)
    reg.register("m", run_id)
    # Replace the run's model with another one at the same path: the pinned digest differs.
    client.tracking.delete_artifact(run_id, "model")
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    sm.save(LogisticRegression(C=9.0).fit(x, y), tmp_path / "other", input_example=x[:5])  # type: ignore[operator]
    client.tracking.log_artifacts(run_id, tmp_path / "other", "model")  # type: ignore[operator]
    err = _exactly(DigestMismatch, sm.load, "models:/m/1", tracking=client.tracking)
    assert "changed since registration" in err.message


def test_search_models_by_prefix_tag_and_alias(client: Client) -> None:
    reg = client.registry
    run_id = log_run(client)
    for name, team in (("flights-a", "ops"), ("flights-b", "ml"), ("taxi", "ops")):
        reg.create_model(name, tags={"team": team}, description=f"{name} model")
        reg.create_version(name, f"runs:/{run_id}/model")
    reg.set_alias("flights-a", "canary", 1)
    _exactly(AlreadyExists, reg.create_model, "taxi")

    def names(f: str | None, **kw: object) -> list[str]:
        return [m.name for m in reg.search_models(f, **kw)]  # type: ignore[arg-type]

    assert names("name LIKE 'flights%'") == ["flights-a", "flights-b"]
    assert names("tags.team = 'ops'") == ["flights-a", "taxi"]
    assert names("name LIKE 'flights%' AND tags.team = 'ops' AND alias = 'canary'") == ["flights-a"]
    assert names(None, order_by=["name DESC"]) == ["taxi", "flights-b", "flights-a"]
    page = reg.search_models(max_results=2)
    assert len(page) == 2 and page.next_page_token
    assert [m.name for m in reg.search_models(page_token=page.next_page_token)] == ["taxi"]
    assert [v.name for v in reg.search_versions("alias = 'canary'")] == ["flights-a"]
    _exactly(InvalidInput, reg.search_models, "name = 'x' OR name = 'y'")
    _exactly(InvalidInput, reg.search_models, "metrics.acc > 1")
    _exactly(InvalidInput, reg.search_models, None, order_by=["name; DROP TABLE x"])
    _exactly(InvalidInput, reg.search_models, None, max_results=0)


def test_tags_updates_rename_and_delete(client: Client) -> None:
    reg = client.registry
    reg.register("m", log_run(client), tags={"k": "v"})
    reg.set_model_tag("m", "team", "ops")
    reg.set_version_tag("m", 1, "validated", "yes")
    assert reg.get_model("m").tags == {"team": "ops"}
    assert reg.get_version("m", 1).tags == {"k": "v", "validated": "yes"}
    reg.delete_version_tag("m", 1, "k")
    _exactly(NotFound, reg.delete_version_tag, "m", 1, "k")
    reg.delete_model_tag("m", "team")
    _exactly(NotFound, reg.delete_model_tag, "m", "team")
    assert reg.update_model("m", description="d", owner="alice").owner == "alice"
    assert reg.update_version("m", 1, description="v1").description == "v1"
    reg.set_alias("m", "canary", 1)
    renamed = reg.rename_model("m", "m2")
    assert renamed.aliases == {"canary": 1} and renamed.latest_version == 1
    assert reg.alias_history("m2", "canary").items[0].to_version == 1
    _exactly(NotFound, reg.get_model, "m")
    reg.delete_version("m2", 1)
    moves = reg.alias_history("m2", "canary").items
    assert (moves[0].from_version, moves[0].to_version) == (1, None)
    reg.delete_model("m2")
    _exactly(NotFound, reg.get_model, "m2")


def test_stages_map_onto_aliases(client: Client) -> None:
    reg = client.registry
    reg.register("m", log_run(client))
    assert reg.transition_stage("m", 1, "Staging").aliases == ["staging"]
    assert reg.transition_stage("m", 1, "Archived").aliases == []
    _exactly(PermissionDenied, reg.transition_stage, "m", 1, "Production")
    _exactly(InvalidInput, reg.transition_stage, "m", 1, "Prod")


def test_card_markdown_and_html(client: Client) -> None:
    reg = client.registry
    reg.register("m", log_run(client), description="v")
    text = reg.card("m", 1)
    assert text.startswith("# Model card: m v1") and "| acc | 0.9 |" in text
    assert "## Intended use" in text and "Not written yet" in text
    reg.update_card("m", 1, {"intended_use": "Scoring <b>churn</b>", "limitations": "small"})
    html = reg.card("m", 1, format="html")
    assert html.startswith("<!doctype html>") and "&lt;b&gt;churn&lt;/b&gt;" in html
    assert "<b>churn" not in html and "small" in html and "<link" not in html
    _exactly(InvalidInput, reg.card, "m", 1, format="pdf")
    _exactly(InvalidInput, reg.update_card, "m", 1, {"owner": "me"})
