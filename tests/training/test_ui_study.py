"""The study page: trials table, best trial, optimization history chart data, importance."""

from __future__ import annotations

import html as htmllib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

import strata
from strata.client import Client
from strata.server.app import create_app
from strata.training.tune import tune

from .test_tune import tune_config


@pytest.fixture
def web(home_client: Client) -> Iterator[TestClient]:
    app = create_app(home_client.settings, client=home_client, auth=False)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        yield http


def test_study_page_shows_trials_best_history_and_importance(
    home_client: Client, flights: str, web: TestClient
) -> None:
    result = tune(tune_config(), trials=4, client=home_client)
    run_page = web.get(f"/runs/{result.parent_run_id}").text
    assert f'href="/studies/{result.parent_run_id}"' in run_page
    page = web.get(f"/studies/{result.parent_run_id}")
    assert page.status_code == 200
    text = htmllib.unescape(page.text)
    assert f"Study {result.study}" in text and "maximize cv_roc_auc_mean" in text
    assert text.count('<tr class="best">') == 1
    best = home_client.tracking.get_run(result.best_run_id)
    assert f'/runs/{result.best_run_id}">{best.info.run_name}</a> — cv_roc_auc_mean' in text
    for key in ("model.params.learning_rate", "model.params.num_leaves"):
        assert key in text
    assert "Parameter importance" in text
    assert text.count("<polyline") == 4  # parallel coordinates: one line per finished trial
    assert text.count('<line x1="') == 3  # two parameters and the objective
    doc = web.get(f"/studies/{result.parent_run_id}/history").json()
    assert doc["x"] == [0, 1, 2, 3]
    values, best_so_far = doc["series"][0]["y"], doc["series"][1]["y"]
    assert best_so_far[-1] == pytest.approx(result.best_value)
    assert all(b == pytest.approx(max(values[: i + 1])) for i, b in enumerate(best_so_far))


def test_a_plain_run_is_not_a_study(home_client: Client, web: TestClient) -> None:
    with strata.start_run(experiment="plain", client=home_client) as run:
        pass
    page = web.get(f"/studies/{run.run_id}")
    assert page.status_code == 400 and "is not a study" in htmllib.unescape(page.text)
    assert web.get("/studies/nope").status_code == 404


def test_importance_statistics() -> None:
    from strata.ui.studies import _ranks

    assert _ranks(__import__("numpy").array([3.0, 1.0, 1.0, 2.0])).tolist() == [3.0, 0.5, 0.5, 2.0]


def test_study_pages_need_a_login_when_auth_is_on(home_client: Client) -> None:
    app = create_app(home_client.settings, client=home_client, auth=True)
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as http:
        for path in ("/studies/abc", "/studies/abc/history"):
            r = http.get(path)
            assert r.status_code in (302, 303, 307) and r.headers["location"].startswith(
                "/login?next="
            ), (path, r.status_code)
