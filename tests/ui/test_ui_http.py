"""The UI over plain HTTP: login, cookies, CSRF, permissions, pages, chart data, artifacts."""

from __future__ import annotations

import re
from html import unescape

import httpx

from strata.core.principal import Role
from ui.conftest import LONG_STEPS, UiEnv, csrf_of


def _cookie_headers(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def test_pages_redirect_to_login_and_back(ui_env: UiEnv) -> None:
    with ui_env.http() as http:
        r = http.get(f"/experiments/{ui_env.experiment_id}?filter=x")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=%2Fexperiments%2F")
        page = http.get("/login")
        r = http.post(
            "/login",
            data={
                "token": ui_env.tokens[Role.VIEWER],
                "csrf": csrf_of(page.text),
                "next": f"/experiments/{ui_env.experiment_id}",
            },
        )
        assert r.status_code == 303
        assert r.headers["location"] == f"/experiments/{ui_env.experiment_id}"
        session = [c for c in _cookie_headers(r) if c.startswith("strata_session=")]
        assert session, _cookie_headers(r)
        lowered = session[0].lower()
        assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
        assert http.get(f"/experiments/{ui_env.experiment_id}").status_code == 200


def test_login_refuses_bad_token_missing_csrf_and_foreign_next(ui_env: UiEnv) -> None:
    with ui_env.http() as http:
        page = http.get("/login")
        csrf = csrf_of(page.text)
        bad = http.post("/login", data={"token": "strata_nope", "csrf": csrf})
        assert bad.status_code == 401 and "strata_session" not in bad.headers.get("set-cookie", "")
        assert "token" in bad.text.lower() and "Traceback" not in bad.text
        no_csrf = http.post("/login", data={"token": ui_env.tokens[Role.ADMIN]})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
        assert "strata_session" not in no_csrf.headers.get("set-cookie", "")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        with ui_env.http() as http:
            csrf = csrf_of(http.get("/login").text)
            r = http.post(
                "/login",
                data={"token": ui_env.tokens[Role.ADMIN], "csrf": csrf, "next": target},
            )
            assert r.status_code == 303 and r.headers["location"] == "/", target


def test_a_service_token_cannot_log_in_nor_ride_a_session_cookie(ui_env: UiEnv) -> None:
    """A predict-only token of an admin: the login form refuses it, and set as the session
    cookie by hand it opens no page (it may only call models on inference servers)."""
    users = ui_env.client.governance.list_users()
    admin = next(u.name for u in users if u.role is Role.ADMIN)
    service = ui_env.client.governance.create_token(admin, scope="predict").secret
    with ui_env.http() as http:
        csrf = csrf_of(http.get("/login").text)
        r = http.post("/login", data={"token": service, "csrf": csrf})
        assert r.status_code == 401 and "service token" in r.text
        assert "strata_session" not in r.headers.get("set-cookie", "")
    with ui_env.http() as http:
        http.cookies.set("strata_session", service)
        for page in ("/experiments", f"/runs/{ui_env.run_ids[0]}", "/serving"):
            r = http.get(page)
            assert r.status_code in (302, 303, 401), (page, r.status_code)
            assert ui_env.run_ids[0] not in r.text or page.startswith("/runs")


def test_rest_api_ignores_the_session_cookie(ui_env: UiEnv) -> None:
    with ui_env.http(Role.ADMIN) as http:
        assert http.cookies.get("strata_session")
        r = http.get("/api/v1/experiments")
        assert r.status_code == 401


def test_editor_form_needs_csrf_of_this_session(ui_env: UiEnv) -> None:
    run_id = ui_env.run_ids[1]
    with ui_env.http(Role.EDITOR) as http, ui_env.http(Role.EDITOR) as other:
        page = http.get(f"/runs/{run_id}")
        assert 'id="tag-form"' in page.text
        csrf = csrf_of(page.text)
        missing = http.post(f"/runs/{run_id}/tags", data={"key": "k1", "value": "v"})
        assert missing.status_code == 403
        foreign = http.post(
            f"/runs/{run_id}/tags",
            data={"key": "k1", "value": "v", "csrf": csrf_of(other.get(f"/runs/{run_id}").text)},
        )
        assert foreign.status_code == 403
        assert "k1" not in ui_env.client.tracking.get_run(run_id).tags
        ok = http.post(f"/runs/{run_id}/tags", data={"key": "k1", "value": "v", "csrf": csrf})
        assert ok.status_code == 303
        assert ui_env.client.tracking.get_run(run_id).tags["k1"] == "v"
        deleted = http.post(f"/runs/{run_id}/tags/delete", data={"key": "k1", "csrf": csrf})
        assert deleted.status_code == 303
        assert "k1" not in ui_env.client.tracking.get_run(run_id).tags
        empty = http.post(f"/runs/{run_id}/tags", data={"key": " ", "csrf": csrf})
        assert empty.status_code == 400 and "tag key is required" in empty.text


def test_viewer_sees_no_write_controls_and_is_refused(ui_env: UiEnv) -> None:
    run_id = ui_env.run_ids[2]
    version_path = "/datasets/" + ui_env.dataset_ref.replace("@", "/versions/")
    with ui_env.http(Role.VIEWER) as http:
        page = http.get(f"/runs/{run_id}")
        assert page.status_code == 200
        assert 'class="inline write"' not in page.text and "Set tag" not in page.text
        assert "Delete run" not in page.text
        assert "Tag this version" not in http.get(version_path).text
        assert "Audit log" not in page.text
        csrf = csrf_of(page.text)  # the logout form's value: a valid CSRF for this session
        r = http.post(f"/runs/{run_id}/tags", data={"key": "sneaky", "value": "1", "csrf": csrf})
        assert r.status_code == 403 and "needs the 'write' permission" in unescape(r.text)
        r = http.post(f"/runs/{run_id}/lifecycle", data={"action": "delete", "csrf": csrf})
        assert r.status_code == 403
        r = http.post(f"{version_path}/tag", data={"tag": "prod", "csrf": csrf})
        assert r.status_code == 403
        assert http.get("/audit").status_code == 403
    run = ui_env.client.tracking.get_run(run_id)
    assert "sneaky" not in run.tags and run.info.lifecycle_stage.value == "active"
    denied = ui_env.client.governance.list_audit(actor="viewer-user", limit=1000).items
    assert any(rec.outcome == "denied" and rec.resource_type == "ui" for rec in denied)


def test_editor_deletes_and_restores_a_run(ui_env: UiEnv) -> None:
    run_id = ui_env.run_ids[2]
    with ui_env.http(Role.EDITOR) as http:
        csrf = csrf_of(http.get(f"/runs/{run_id}").text)
        r = http.post(f"/runs/{run_id}/lifecycle", data={"action": "delete", "csrf": csrf})
        assert r.status_code == 303
        assert ui_env.client.tracking.get_run(run_id).info.lifecycle_stage.value == "deleted"
        assert "Restore run" in http.get(f"/runs/{run_id}").text
        http.post(f"/runs/{run_id}/lifecycle", data={"action": "restore", "csrf": csrf})
        assert ui_env.client.tracking.get_run(run_id).info.lifecycle_stage.value == "active"
        bad = http.post(f"/runs/{run_id}/lifecycle", data={"action": "explode", "csrf": csrf})
        assert bad.status_code == 400 and "expected 'delete' or 'restore'" in unescape(bad.text)


def test_runs_table_filter_sort_columns_and_errors(ui_env: UiEnv) -> None:
    base = f"/experiments/{ui_env.experiment_id}"
    with ui_env.http(Role.VIEWER) as http:
        page = http.get(base, params={"filter": "params.alpha = '0.01'"})
        assert page.status_code == 200
        assert page.text.count('data-run="') == 1 and "alpha-0.01" in page.text
        page = http.get(base, params={"order": "metrics.auc DESC", "col": ["metrics.auc"]})
        order = [page.text.index(f"alpha-{a}<") for a in ("0.001", "0.01", "0.1")]
        assert order == sorted(order)
        assert 'title="metrics.auc"' in page.text and 'title="params.model"' not in page.text
        bad = http.get(base, params={"filter": "metrics.auc >> 1"})
        assert bad.status_code == 400
        assert 'id="filter-error"' in bad.text and "position" in bad.text.lower()
        partial = http.get(
            base,
            params={"filter": "nonsense ="},
            headers={"HX-Request": "true", "HX-Target": "runs"},
        )
        assert partial.status_code == 400 and partial.text.lstrip().startswith('<div id="runs">')
        col = http.get(base, params={"col": "weird"})
        assert col.status_code == 400 and "Unknown column" in col.text
        paged = http.get(base, params={"size": "25", "filter": "attributes.run_name LIKE 'alpha%'"})
        assert paged.text.count('data-run="') == 3 and 'rel="next"' not in paged.text


def test_runs_table_pages_forward_and_back(ui_env: UiEnv) -> None:
    """Next pushes the page's token, Previous pops it: walking back shows the same runs."""
    tracking = ui_env.client.tracking
    eid = tracking.create_experiment("ui-paging").experiment_id
    for i in range(60):
        tracking.create_run(eid, run_name=f"p-{i:02d}")
    base = f"/experiments/{eid}"
    href = re.compile(r'<a href="([^"]+)" rel="(next|prev)"')

    def page(url: str) -> tuple[list[str], dict[str, str]]:
        text = http.get(url.replace("&amp;", "&")).text
        return re.findall(r'data-run="([^"]+)"', text), {r: u for u, r in href.findall(text)}

    with ui_env.http(Role.VIEWER) as http:
        first, links = page(f"{base}?size=25&order=attributes.run_name ASC")
        assert len(first) == 25 and "prev" not in links
        second, links = page(links["next"])
        third, links = page(links["next"])
        assert len(second) == 25 and len(third) == 10 and "next" not in links
        assert not set(first) & set(second) and not set(second) & set(third)
        back_second, links = page(links["prev"])
        assert back_second == second
        back_first, links = page(links["prev"])
        assert back_first == first and "prev" not in links


def test_run_page_sections(ui_env: UiEnv) -> None:
    run_id = ui_env.run_ids[0]
    with ui_env.http(Role.VIEWER) as http:
        text = http.get(f"/runs/{run_id}").text
        assert 'data-chart="/runs/' in text and "key=loss" in text
        assert "Python" in text and "3.11" in text  # captured context
        name, version = ui_env.dataset_ref.split("@")
        assert f'href="/datasets/{name}/versions/{version}"' in text
        assert f'href="/runs/{ui_env.parent_id}"' in text  # parent link
        parent = http.get(f"/runs/{ui_env.parent_id}").text
        assert all(f'href="/runs/{r}"' in parent for r in ui_env.run_ids)  # children
        missing = http.get("/runs/nope")
        assert missing.status_code == 404 and "nope" in missing.text and "<html" in missing.text


def test_metric_chart_data_is_downsampled_and_zoomable(ui_env: UiEnv) -> None:
    with ui_env.http(Role.VIEWER) as http:
        data = http.get(f"/runs/{ui_env.long_run_id}/metric", params={"key": "loss"}).json()
        assert data["total"] == LONG_STEPS and data["shown"] == len(data["x"]) == 1000
        assert data["x"][0] == 0 and data["x"][-1] == LONG_STEPS - 1
        zoom = http.get(
            f"/runs/{ui_env.long_run_id}/metric", params={"key": "loss", "lo": 100, "hi": 599}
        ).json()
        assert zoom["x"] == list(range(100, 600))  # a narrow zoom is at full resolution
        bad = http.get(f"/runs/{ui_env.long_run_id}/metric", params={"key": "loss", "points": 1})
        assert bad.status_code == 400
        missing = http.get(f"/runs/{ui_env.long_run_id}/metric", params={"key": "x"})
        assert missing.status_code == 404
        runs = [("run", r) for r in ui_env.run_ids[:2]]
        overlay = http.get("/compare/metric", params=[("key", "loss"), *runs]).json()
        assert len(overlay["series"]) == 2 and len(overlay["x"]) == 50
        page = http.get("/compare", params=runs)
        assert page.status_code == 200 and "Curves" in page.text and "differs" in page.text


def test_artifact_previews_and_downloads(ui_env: UiEnv) -> None:
    run_id = ui_env.run_ids[0]
    with ui_env.http(Role.VIEWER) as http:
        listing = http.get(f"/runs/{run_id}/artifacts", params={"path": "eval"}).text
        assert "preds.csv" in listing and "sample.parquet" in listing

        def preview(path: str) -> str:
            r = http.get(f"/runs/{run_id}/preview", params={"path": path})
            assert r.status_code == 200, r.text
            return r.text

        assert "<td>0.9</td>" in preview("eval/preds.csv")
        parquet = preview("eval/sample.parquet")
        assert "<th>carrier</th>" in parquet and "of 5" in parquet
        assert "&#34;coef&#34;: [\n    1," in preview("model/coef.json")
        assert "hello artifacts" in preview("notes/readme.txt")
        assert "<img" in preview("figures/roc.png")
        image = http.get(f"/runs/{run_id}/raw", params={"path": "figures/roc.png"})
        assert image.headers["content-type"] == "image/png"
        assert image.content.startswith(b"\x89PNG")
        html = http.get(f"/runs/{run_id}/raw", params={"path": "page.html"})
        assert html.headers["content-type"] == "application/octet-stream"
        assert html.headers["content-disposition"].startswith("attachment")
        assert "&lt;script&gt;" in preview("page.html")
        traversal = http.get(f"/runs/{run_id}/preview", params={"path": "../../etc/passwd"})
        assert traversal.status_code == 400
        assert http.get(f"/runs/{run_id}/preview", params={"path": "nope.txt"}).status_code == 404


def test_dataset_pages(ui_env: UiEnv) -> None:
    name, version = ui_env.dataset_ref.split("@")
    with ui_env.http(Role.VIEWER) as http:
        assert name in http.get("/datasets").text
        listing = http.get(f"/datasets/{name}").text
        assert listing.count(f'href="/datasets/{name}/versions/') == 2
        page = http.get(f"/datasets/{name}/versions/{version}").text
        assert '<svg class="hist"' in page  # profile histograms
        assert "expect_column_values_to_be_between" in page  # validation report
        assert 'id="quarantine"' in page and "not in [-1" in page  # quarantined rows
        assert page.count('href="/runs/') >= 3  # runs trained on it
        versions = ui_env.client.data.list_versions(name)
        diff = http.get(f"/datasets/{name}/diff", params={"a": versions[0].id, "b": versions[1].id})
        assert diff.status_code == 200 and "60 → 85" in diff.text
        assert 'id="diff-columns"' in diff.text and "<td>distance</td>" in diff.text
        assert http.get(f"/datasets/{name}/diff", params={"a": version}).status_code == 400
        lineage = http.get(f"/datasets/{name}/versions/{version}/lineage").text
        derived_name, derived_version = ui_env.derived_ref.split("@")
        assert f'href="/datasets/{derived_name}/versions/{derived_version}"' in lineage
        assert lineage.count('data-kind="run"') == 3
        assert http.get("/datasets/nope").status_code == 404


def test_audit_page_for_admins(ui_env: UiEnv) -> None:
    with ui_env.http(Role.ADMIN) as http:
        page = http.get("/audit", params={"action": "tracking.*"})
        assert page.status_code == 200 and "Hash chain verified" in page.text
        bad = http.get("/audit", params={"since": "yesterday"})
        assert bad.status_code == 400 and "since must be a date" in bad.text
        none = http.get("/audit", params={"actor": "nobody-at-all"})
        assert "No records match" in none.text
        early = http.get("/audit", params={"until": "2000-01-01T00:00"})
        assert early.status_code == 200 and "No records match" in early.text
        bad_until = http.get("/audit", params={"until": "soon"})
        assert bad_until.status_code == 400 and "until must be a date" in bad_until.text


def test_docs_and_assets_are_served_locally(ui_env: UiEnv) -> None:
    with ui_env.http() as http:
        docs = http.get("/docs").text
        assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs
        assert "cdn" not in docs.lower() and "https://" not in docs
        for path in (
            "/static/vendor/swagger-ui/swagger-ui-bundle.js",
            "/static/vendor/swagger-ui/swagger-ui.css",
            "/static/vendor/htmx/htmx.min.js",
            "/static/vendor/uplot/uPlot.iife.min.js",
            "/static/vendor/uplot/LICENSE",
            "/static/strata.js",
        ):
            assert http.get(path).status_code == 200, path
        login_page = http.get("/login")
        assert "script-src 'self'" in login_page.headers["content-security-policy"]
        assert login_page.headers["x-frame-options"] == "DENY"


def test_logout_ends_the_session(ui_env: UiEnv) -> None:
    with ui_env.http(Role.VIEWER) as http:
        csrf = csrf_of(http.get("/experiments").text)
        r = http.post("/logout", data={"csrf": csrf})
        assert r.status_code == 303 and 'strata_session=""' in r.headers["set-cookie"]
        assert http.get("/experiments").status_code == 303
