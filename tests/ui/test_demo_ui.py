"""The issue's "done": after ``make demo``, the printed URLs show the demo's runs with curves,
the flights dataset with its profile and lineage, and the runs trained on it."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from conftest import serve_in_thread

import strata
from strata import demo
from strata.governance.embedded import EmbeddedGovernance
from strata.server.app import create_app
from ui.conftest import drawn_pixels, login, wait_js


@pytest.mark.slow
def test_demo_results_are_in_the_ui(capsys: pytest.CaptureFixture[str], browser: Any) -> None:
    assert demo.main(["--no-serve", "--port", "8080"]) == 0
    out = capsys.readouterr().out
    printed = dict(
        re.findall(
            r"^\s+(runs and curves|best run|flights dataset|lineage|monitoring)\s+(\S+)", out, re.M
        )
    )
    assert set(printed) == {
        "runs and curves",
        "best run",
        "flights dataset",
        "lineage",
        "monitoring",
    }
    assert "open http://127.0.0.1:8080/ and log in" in out, out
    paths = {k: v.removeprefix("http://127.0.0.1:8080") for k, v in printed.items()}

    client = strata.Client()
    gov = client.governance
    assert isinstance(gov, EmbeddedGovernance)
    admin = gov.bootstrap_admin()
    assert admin is not None
    app = create_app(client.settings, client=client, auth=True)
    for url in serve_in_thread(app):
        with httpx.Client(base_url=url, timeout=60) as http:
            login(http, admin.secret)
            runs = http.get(paths["runs and curves"])
            assert runs.status_code == 200
            # the sweep, its three runs and the LightGBM job (strata.train)
            assert runs.text.count('data-run="') == 5
            best = http.get(paths["best run"]).text
            assert 'data-title="test_auc"' in best and 'data-title="test_logloss"' in best
            assert 'href="/datasets/flights/versions/' in best  # its input, linked
            version = http.get(paths["flights dataset"]).text
            assert version.count('<svg class="hist"') >= 10  # profile histograms
            assert re.search(r"Runs trained on it \(4\)", version)  # 3 sweep runs + the job
            lineage = http.get(paths["lineage"]).text
            assert lineage.count('data-kind="run"') == 4
            monitoring = http.get(paths["monitoring"])
            assert monitoring.status_code == 200
            # the drift series of October-December, one line per watched input
            for column in demo.WATCHED:
                assert f"?feature={column}" in monitoring.text, column

        context = browser.new_context(base_url=url)
        try:
            page = context.new_page()
            page.goto(paths["best run"])
            page.fill("input[name=token]", admin.secret)
            page.click("button[type=submit]")
            chart = 'figure[data-title="test_auc"]'
            page.wait_for_selector(f'{chart}[data-state="ready"]', timeout=30_000)
            assert page.get_attribute(chart, "data-points") == "5"  # five epochs
            assert drawn_pixels(page, chart) > 100
            page.goto(paths["lineage"])
            wait_js(page, "() => document.querySelectorAll('g[data-kind=run]').length === 4")
        finally:
            context.close()
    client.close()
