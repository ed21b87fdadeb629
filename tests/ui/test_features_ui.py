"""Feature-store pages in the browser: the catalog, a view with its statistics and a link to
its source version, an on-demand view, and the online lookup form (htmx)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from features.conftest import FLIGHT_DEFS, planes, weather

from strata.core.principal import Role
from ui.conftest import UiEnv
from ui.test_browser import _login

DEFS = {
    **FLIGHT_DEFS,
    "feature_views": [
        {**FLIGHT_DEFS["feature_views"][0], "ttl": None, "owner": "weather-team"},
        FLIGHT_DEFS["feature_views"][1],
    ],
    "on_demand_views": [
        {
            "name": "delay",
            "sources": ["weather:temp"],
            "request": {"dep_delay": "float64"},
            "features": {"delay_hours": {"dtype": "float64", "sql": "dep_delay / 60.0"}},
        }
    ],
}


@pytest.fixture(scope="module")
def applied(ui_env: UiEnv) -> None:
    client = ui_env.client
    client.data.ingest(weather, "ui_weather_src")
    client.data.ingest(planes, "ui_planes_src")
    defs = {
        **DEFS,
        "feature_views": [
            {**DEFS["feature_views"][0], "source": "ui_weather_src@latest"},
            {**DEFS["feature_views"][1], "source": "ui_planes_src"},
        ],
    }
    client.features.apply(defs)
    client.features.materialize(None, datetime.now(UTC))


@pytest.fixture
def page(browser: Any, ui_env: UiEnv) -> Iterator[Any]:
    context = browser.new_context(base_url=ui_env.url, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def test_catalog_view_statistics_and_lookup(page: Any, ui_env: UiEnv, applied: None) -> None:
    _login(page, ui_env, Role.VIEWER, "/features")
    assert page.locator("#views tbody tr").count() == 2
    assert "delay" in page.locator("#on-demand").inner_text()
    page.fill("input[name=q]", "humid")
    page.press("input[name=q]", "Enter")
    assert page.locator("#found tbody tr").inner_text().startswith("weather:humid")

    page.goto("/features/views/weather")
    stats = page.locator("#statistics").inner_text()
    for column in ("origin", "time_hour", "temp", "visib"):
        assert column in stats
    assert page.locator("#statistics svg.hist").count() >= 7  # a histogram per numeric column
    page.click("text=ui_weather_src@")
    page.wait_for_url("**/datasets/ui_weather_src/versions/**")

    page.goto("/features/views/weather")
    page.fill("input[name=origin]", "JFK")
    page.click("#lookup button")
    page.wait_for_selector("#lookup-values")
    values = page.locator("#lookup-values").inner_text()
    assert "weather:temp" in values and "present" in values

    page.goto("/features/on-demand/delay")
    assert "dep_delay / 60.0" in page.locator("#odv-features").inner_text()
    page.fill("input[name=origin]", "EWR")
    page.fill("input[name=dep_delay]", "90")
    page.click("#lookup button")
    page.wait_for_selector("#lookup-values")
    assert "1.5" in page.locator("#lookup-values").inner_text()


def test_unknown_view_is_a_404_page(page: Any, ui_env: UiEnv, applied: None) -> None:
    _login(page, ui_env, Role.VIEWER, "/features")
    response = page.goto("/features/views/nope")
    assert response.status == 404
    assert "weather" in page.content()  # the message names what is registered
