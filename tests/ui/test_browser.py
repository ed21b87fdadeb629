"""The UI in a real browser: Playwright driving the system chromium (Debian package).

Chromium comes from ``apt-get install chromium`` (.ci/run installs it when missing); browser
downloads do not work here, so Playwright launches that binary. Without it the tests skip
locally and fail on CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from strata.core.principal import Role
from ui.conftest import UiEnv, drawn_pixels, wait_js


@pytest.fixture
def page(browser: Any, ui_env: UiEnv) -> Iterator[Any]:
    context = browser.new_context(base_url=ui_env.url, viewport={"width": 1280, "height": 900})
    # Everything must load from the server itself: any other request fails the test.
    foreign: list[str] = []

    def guard(route: Any) -> None:
        if route.request.url.startswith(ui_env.url):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    errors: list[str] = []
    pg = context.new_page()
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(20_000)
    yield pg
    context.close()
    assert not foreign, f"requests left the server: {foreign}"
    assert not errors, f"script errors: {errors}"


def _login(page: Any, ui_env: UiEnv, role: Role, start: str = "/") -> None:
    page.goto(start)
    page.wait_for_url("**/login**")
    page.fill("input[name=token]", ui_env.tokens[role])
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_login_then_runs_table_with_filter(page: Any, ui_env: UiEnv) -> None:
    page.goto("/")
    page.wait_for_url("**/login?next=%2F")
    page.fill("input[name=token]", "strata_wrong")
    page.click("button[type=submit]")
    assert "invalid" in page.locator(".error").inner_text().lower()
    page.fill("input[name=token]", ui_env.tokens[Role.VIEWER])
    page.click("button[type=submit]")
    page.click("text=ui-exp")
    page.wait_for_url(f"**/experiments/{ui_env.experiment_id}")
    rows = page.locator("tr[data-run]")
    assert rows.count() == 5  # parent, three children, the long run
    page.fill("input[name=filter]", "params.alpha = '0.01' and metrics.auc > 0.5")
    page.press("input[name=filter]", "Enter")
    wait_js(page, "() => document.querySelectorAll('tr[data-run]').length === 1")
    assert "alpha-0.01" in rows.first.inner_text()
    assert "filter=params.alpha" in page.url  # htmx pushed the URL: the filter is shareable
    page.fill("input[name=filter]", "metrics.auc >> 1")
    page.press("input[name=filter]", "Enter")
    error = page.locator("#filter-error")
    error.wait_for()
    assert "position" in error.inner_text().lower()
    assert page.locator("tr[data-run]").count() == 0


def test_run_chart_draws_points_and_log_scale(page: Any, ui_env: UiEnv) -> None:
    _login(page, ui_env, Role.VIEWER, f"/runs/{ui_env.run_ids[0]}")
    chart = 'figure[data-title="loss"]'
    page.wait_for_selector(f'{chart}[data-state="ready"]')
    assert int(page.get_attribute(chart, "data-points")) == 50
    assert drawn_pixels(page, chart) > 200
    page.check("[data-ctl=log]")
    page.wait_for_selector(f"{chart} canvas")
    assert drawn_pixels(page, chart) > 200
    page.locator("[data-ctl=smooth]").fill("0.9")
    assert drawn_pixels(page, chart) > 200
    # A click on a file previews it; a child directory opens on demand.
    page.click("summary:has-text('notes/')")
    page.click("text=readme.txt")
    page.locator("#preview").get_by_text("hello artifacts").wait_for()
    page.click("summary:has-text('figures/')")
    page.click("text=roc.png")
    wait_js(
        page,
        "() => { const i = document.querySelector('#preview img');"
        " return i && i.complete && i.naturalWidth === 8; }",
    )


def test_long_metric_is_downsampled_and_zooms(page: Any, ui_env: UiEnv) -> None:
    _login(page, ui_env, Role.VIEWER, f"/runs/{ui_env.long_run_id}")
    chart = 'figure[data-title="loss"]'
    page.wait_for_selector(f'{chart}[data-state="ready"]')
    assert int(page.get_attribute(chart, "data-points")) == 1000
    assert "of 100000" in page.locator(f"{chart} .note").inner_text()
    box = page.locator(f"{chart} .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 5, y)
    page.mouse.down()
    page.mouse.move(box["x"] + 15, y, steps=4)
    page.mouse.up()
    # The server sends the zoomed range (a few thousand steps) at its own resolution.
    wait_js(
        page,
        f"() => {{ const f = document.querySelector('{chart}');"
        " const [lo, hi] = (f.dataset.range || '').split(':').map(Number);"
        " return f.dataset.state === 'ready' && lo > 0 && hi - lo < 10000; }",
    )
    assert drawn_pixels(page, chart) > 50
    page.dblclick(f"{chart} .u-over")
    wait_js(page, f"() => document.querySelector('{chart}').dataset.range === '0:99999'")


def test_compare_overlays_curves(page: Any, ui_env: UiEnv) -> None:
    _login(page, ui_env, Role.VIEWER, f"/experiments/{ui_env.experiment_id}")
    for run_id in ui_env.run_ids[:2]:
        page.check(f"tr[data-run='{run_id}'] input[type=checkbox]")
    page.click("button:has-text('Compare')")
    page.wait_for_url("**/compare?run=*")
    chart = 'figure[data-title="loss"]'
    page.wait_for_selector(f'{chart}[data-state="ready"]')
    assert page.locator(f"{chart} .u-legend .u-series").count() == 3  # step + two runs
    assert drawn_pixels(page, chart) > 200


def test_dataset_lineage_graph(page: Any, ui_env: UiEnv) -> None:
    name, version = ui_env.dataset_ref.split("@")
    _login(page, ui_env, Role.VIEWER, "/datasets")
    page.click(f"a[href='/datasets/{name}']")
    page.click(f"a[href='/datasets/{name}/versions/{version}']")
    assert page.locator("#trained-runs tbody tr").count() == 3
    assert page.locator("svg.hist rect").count() > 10
    page.click("#lineage-link")
    graph = page.locator("svg#lineage")
    graph.wait_for()
    assert graph.locator("g.node.root").count() == 1
    assert graph.locator("g[data-kind=run]").count() == 3
    assert graph.locator("path.edge").count() >= 4
    derived, _ = ui_env.derived_ref.split("@")
    graph.locator("g[data-kind=version]", has_text=derived).click()
    page.wait_for_url(f"**/datasets/{derived}/versions/*")


def test_viewer_sees_no_write_controls(page: Any, ui_env: UiEnv) -> None:
    _login(page, ui_env, Role.VIEWER, f"/runs/{ui_env.run_ids[0]}")
    assert page.locator("form.write").count() == 0
    assert page.get_by_role("button", name="Delete run").count() == 0
    assert page.get_by_role("link", name="Audit log").count() == 0


def test_editor_sets_a_tag(page: Any, ui_env: UiEnv) -> None:
    run_id = ui_env.run_ids[1]
    _login(page, ui_env, Role.EDITOR, f"/runs/{run_id}")
    assert page.locator("form.write").count() > 0
    page.fill("#tag-form input[name=key]", "reviewed")
    page.fill("#tag-form input[name=value]", "yes")
    page.click("#tag-form button")
    page.locator("td", has_text="reviewed").wait_for()
    assert ui_env.client.tracking.get_run(run_id).tags["reviewed"] == "yes"


def test_mlflow_links_land_on_pages(page: Any, ui_env: UiEnv) -> None:
    _login(page, ui_env, Role.VIEWER, "/datasets")
    run_id = ui_env.run_ids[0]

    def lands_on(path: str) -> Any:
        return lambda url: urlsplit(url).path == path and not urlsplit(url).fragment

    page.goto(f"/#/experiments/{ui_env.experiment_id}/runs/{run_id}")
    page.wait_for_url(lands_on(f"/runs/{run_id}"))
    assert page.locator("h1").inner_text().startswith("alpha-")
    page.goto(f"/#/experiments/{ui_env.experiment_id}")
    page.wait_for_url(lands_on(f"/experiments/{ui_env.experiment_id}"))
    page.goto("/")  # a fragment change alone (a link clicked on the home page) also moves
    page.evaluate(f"() => {{ window.location.hash = '#/experiments/{ui_env.experiment_id}'; }}")
    page.wait_for_url(lands_on(f"/experiments/{ui_env.experiment_id}"))


def test_docs_render_offline(page: Any, ui_env: UiEnv) -> None:
    page.goto("/docs")
    page.locator(".swagger-ui .opblock").first.wait_for()
    # Swagger UI renders only some operations of a large spec at a time (how many depends on
    # the viewport and on scrolling), so count what it loaded, not what it drew.
    loaded = page.evaluate("() => ui.specSelectors.operations().size")
    assert loaded > 100
    assert page.evaluate("() => ui.errSelectors.allErrors().size") == 0


def test_scoring_jobs_page_by_page(
    page: Any, ui_env: UiEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Scoring jobs page shows JOBS_PAGE jobs, newest first; Next page walks to the older
    ones and « Newest comes back."""
    from datetime import UTC, datetime, timedelta

    from strata.backends.artifacts import ArtifactStore
    from strata.serving.jobs import JobStore
    from strata.serving.models import ScoringJob

    jobs = JobStore(ArtifactStore(ui_env.client.settings.artifact_uri))
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    ids = []
    for i in range(3):  # finished jobs, oldest first, as the server records them
        job = ScoringJob(
            id=f"{i:02d}" + "ab" * 15,
            kind="batch",
            state="succeeded",
            spec={"model": "flights@production", "input": "flights", "output": f"paged_{i}"},
            created_by="editor-user",
            created_at=start + timedelta(minutes=i),
            finished_at=start + timedelta(minutes=i, seconds=30),
            progress={"rows_done": 10.0, "rows_total": 10.0},
            result={"output": f"paged_{i}@1"},
        )
        jobs.save(job)
        ids.append(job.id)
    monkeypatch.setattr("strata.ui.serving.JOBS_PAGE", 2)
    _login(page, ui_env, Role.VIEWER, "/serving/jobs")
    page.wait_for_selector("#jobs")

    def shown() -> list[str]:
        return page.eval_on_selector_all(
            "#jobs tbody code", "els => els.map(e => e.getAttribute('title'))"
        )

    assert shown() == [ids[2], ids[1]]  # newest first, two a page
    page.click("a[rel=next]")
    page.wait_for_url("**/serving/jobs?page=*")
    assert shown() == [ids[0]]
    assert page.locator("a[rel=next]").count() == 0  # the last page
    page.click("text=« Newest")
    page.wait_for_url("**/serving/jobs")
    assert shown() == [ids[2], ids[1]]
