"""Registry pages in the browser: models, a model's versions, aliases, history and requests
(approve/reject shown only to approvers other than the requester), the model card."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from registry_helpers import log_run

from strata.core.principal import Principal, Role, bind, local_principal
from ui.conftest import UiEnv
from ui.test_browser import _login


@pytest.fixture
def page(browser: Any, ui_env: UiEnv) -> Iterator[Any]:
    context = browser.new_context(base_url=ui_env.url, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


@pytest.fixture(scope="module")
def registered(ui_env: UiEnv) -> dict[str, str]:
    reg = ui_env.client.registry
    run_id = log_run(ui_env.client)
    bind(Principal(name="editor-user", role=Role.EDITOR))
    try:
        reg.register("ui-churn", run_id, description="churn scorer")
        reg.register("ui-churn", run_id)
        reg.set_alias("ui-churn", "canary", 2, reason="canary first")
        req = reg.request_promotion("ui-churn", 1, alias="production", reason="ship v1")
    finally:
        bind(local_principal())
    return {"request": req.id}


def test_viewer_sees_models_history_and_card_without_controls(
    page: Any, ui_env: UiEnv, registered: dict[str, str]
) -> None:
    _login(page, ui_env, Role.VIEWER, "/models")
    page.fill("input[name=q]", "ui-ch")
    page.press("input[name=q]", "Enter")
    page.click("text=ui-churn")
    page.wait_for_url("**/models/ui-churn")
    assert page.locator("#versions tbody tr").count() == 2
    assert "canary first" in page.locator("#alias-history").inner_text()
    row = page.locator(f"#request-{registered['request']}")
    assert "ship v1" in row.inner_text() and "pending" in row.inner_text()
    assert row.locator("button").count() == 0  # a viewer may not decide
    page.click("text=v1 >> nth=0")
    page.click("#card-link")
    assert "Model card: ui-churn v1" in page.locator("h1").inner_text()


def test_approver_approves_from_the_page(
    page: Any, ui_env: UiEnv, registered: dict[str, str]
) -> None:
    _login(page, ui_env, Role.APPROVER, "/models/ui-churn")
    row = page.locator(f"#request-{registered['request']}")
    row.locator("input[name=comment]").fill("looks right")
    row.locator("button", has_text="Approve").click()
    page.wait_for_url("**/models/ui-churn")
    row = page.locator(f"#request-{registered['request']}")
    assert "approved" in row.inner_text() and "looks right" in row.inner_text()
    assert row.locator("button").count() == 0
    history = page.locator("#alias-history tbody tr").first.inner_text()
    assert "production" in history and "promote" in history and "approver-user" in history
    assert ui_env.client.registry.get_version_by_alias("ui-churn", "production").version == 1
