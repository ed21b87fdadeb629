"""A run's page shows its logged models: flavors, signature, requirements, digests, ONNX
parity (HTTP and a real browser)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import strata
import strata.models as sm
from strata.core.principal import Role
from strata.tracking import fluent
from ui.conftest import UiEnv


@pytest.fixture(scope="module")
def model_run(ui_env: UiEnv) -> Iterator[str]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = LogisticRegression(max_iter=300).fit(X, y)
    with strata.start_run(experiment="ui-models", client=ui_env.client) as run:
        info = strata.log_model(clf, "model", input_example=X.head(3))
    sm.export_onnx(info.model_uri, tracking=ui_env.client.tracking)
    yield run.run_id
    while fluent.active_run() is not None:
        fluent.end_run()


def test_run_page_lists_the_model_over_http(ui_env: UiEnv, model_run: str) -> None:
    with ui_env.http(Role.VIEWER) as http:
        html = http.get(f"/runs/{model_run}").text
        assert 'id="models"' in html and "Models (1)" in html
        for expected in ("sklearn", "onnx", "skops", "sepal length (cm)", "probabilities"):
            assert expected in html, expected
        spec = sm.run_models(ui_env.client.tracking, model_run)[0].spec
        assert spec is not None
        assert spec.files["model.onnx"].sha256 in html  # the digests, in full
        assert any(r.startswith("scikit-learn==") for r in spec.requirements)
        assert spec.requirements[0] in html
        other = http.get(f"/runs/{ui_env.run_ids[0]}").text
        assert "No models logged." in other


def test_run_page_models_panel_in_the_browser(browser: Any, ui_env: UiEnv, model_run: str) -> None:
    context = browser.new_context(base_url=ui_env.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(f"/runs/{model_run}")
        page.wait_for_url("**/login**")
        page.fill("input[name=token]", ui_env.tokens[Role.VIEWER])
        page.click("button[type=submit]")
        page.wait_for_load_state()
        panel = page.locator("section.model[data-model=model]")
        assert panel.locator(".flavors .badge").all_inner_texts() == ["sklearn", "onnx"]
        parity = panel.locator("table.onnx-parity tbody tr").first.inner_text()
        assert "100.00%" in parity and "input example" in parity
        inputs = panel.locator("table.signature tbody tr").all_inner_texts()
        assert sum(row.startswith("input") for row in inputs) == 4
        digests = panel.locator("table.digests")
        assert not digests.is_visible()  # folded until asked for
        panel.locator("details.report summary").click()
        assert digests.is_visible() and "model.onnx" in digests.inner_text()
    finally:
        context.close()
