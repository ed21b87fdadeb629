"""A training run's page shows its evaluation report: metrics, SHAP, fairness, plots."""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

import strata
from strata.client import Client
from strata.server.app import create_app

from .conftest import base_config


@pytest.fixture
def web(home_client: Client) -> Iterator[TestClient]:
    app = create_app(home_client.settings, client=home_client, auth=False)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        yield http


def test_run_page_shows_the_evaluation(home_client: Client, flights: str, web: TestClient) -> None:
    result = strata.train(base_config(sensitive=["carrier"], shap_sample=30), client=home_client)
    page = web.get(f"/runs/{result.run_id}")
    assert page.status_code == 200
    text = htmllib.unescape(page.text)
    assert 'id="evaluation"' in text and "Fairness by carrier" in text
    assert "SHAP importance (tree)" in text and "dep_delay" in text
    assert f"{result.metrics['test_roc_auc']:.4g}" in text
    plots = re.findall(r'src="(/runs/[^"]+/raw\?path=evaluation%2F[^"]+\.png)"', page.text)
    assert len(plots) >= 4
    image = web.get(plots[0])
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
    with strata.start_run(experiment="plain", client=home_client) as plain:
        pass
    assert 'id="evaluation"' not in web.get(f"/runs/{plain.run_id}").text


def test_an_unreadable_report_is_an_error_line(
    home_client: Client, flights: str, web: TestClient
) -> None:
    import io

    with strata.start_run(experiment="broken", client=home_client) as run:
        pass
    home_client.tracking.log_artifact_stream(
        run.run_id, "evaluation/report.json", io.BytesIO(b'{"metrics": "<script>x</script>"}')
    )
    text = web.get(f"/runs/{run.run_id}").text
    assert "Cannot read this run&#39;s evaluation/report.json" in text or (
        "Cannot read this run's evaluation/report.json" in text
    )
    assert "<script>x</script>" not in text
