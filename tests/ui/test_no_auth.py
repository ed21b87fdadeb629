"""The UI of a `strata server --no-auth` on loopback: no login, the local user's pages and
write controls, and the CSRF check still on every form (a no-auth server is exactly the one a
hostile page in the same browser would target)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import serve_in_thread

from strata.client import Client
from strata.core.config import Settings
from strata.server.app import create_app
from ui.conftest import csrf_of


@pytest.fixture(scope="module")
def no_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Client, str]]:
    settings = Settings(home=tmp_path_factory.mktemp("ui-noauth") / "home")
    client = Client("", settings=settings)
    eid = client.tracking.create_experiment("local-exp").experiment_id
    run_id = client.tracking.create_run(eid, run_name="local-run").run_id
    app = create_app(settings, client=client, auth=False)
    for url in serve_in_thread(app):
        yield url, client, run_id


def test_pages_open_without_login(no_auth: tuple[str, Client, str], tmp_path: Path) -> None:
    url, _, run_id = no_auth
    with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as http:
        home = http.get("/")
        assert home.status_code == 200 and "local-exp" in home.text
        assert http.get("/login").status_code == 303  # nothing to log in to
        run = http.get(f"/runs/{run_id}")
        assert run.status_code == 200 and f'action="/runs/{run_id}/tags"' in run.text
        assert http.get("/audit").status_code == 200  # the local user is the admin


def test_forms_still_need_csrf(no_auth: tuple[str, Client, str]) -> None:
    url, client, run_id = no_auth
    with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as http:
        forged = http.post(f"/runs/{run_id}/tags", data={"key": "forged", "value": "1"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        assert "forged" not in client.tracking.get_run(run_id).tags
        csrf = csrf_of(http.get(f"/runs/{run_id}").text)
        ok = http.post(f"/runs/{run_id}/tags", data={"key": "mine", "value": "1", "csrf": csrf})
        assert ok.status_code == 303
        assert client.tracking.get_run(run_id).tags["mine"] == "1"
