"""Attacks from a browser on a server (issue 7, item 6): CSRF with text/plain, a cross-site
Origin, DNS rebinding through the Host header, and a no-auth app reached off loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import serve_in_thread

from strata.core.config import Settings
from strata.server.app import create_app


@pytest.fixture
def no_auth_url(tmp_path: Path) -> Iterator[str]:
    app = create_app(Settings(home=tmp_path / "home"), auth=False)
    yield from serve_in_thread(app)


def test_csrf_with_text_plain_is_refused(no_auth_url: str) -> None:
    with httpx.Client(base_url=no_auth_url) as http:
        r = http.post(
            "/api/v1/users",
            content=b'{"name": "csrf-made", "role": "admin"}',
            headers={"content-type": "text/plain"},
        )
        assert r.status_code == 415, r.text
        r = http.post(
            "/ajax-api/2.0/mlflow/experiments/create",
            content=b"name=x",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 415, r.text
        assert "csrf-made" not in http.get("/api/v1/users").text
        # JSON still works, and so do NDJSON rows.
        assert http.post("/api/v1/users", json={"name": "local"}).status_code == 201
        r = http.post(
            "/api/v1/data/datasets/nd/rows",
            content=b'{"a": 1}\n',
            headers={"content-type": "application/x-ndjson"},
        )
        assert r.status_code == 201, r.text


def test_cross_origin_writes_are_refused(no_auth_url: str) -> None:
    with httpx.Client(base_url=no_auth_url) as http:
        evil = {"origin": "http://evil.example"}
        r = http.post("/api/v1/users", json={"name": "from-evil"}, headers=evil)
        assert r.status_code == 403 and "Origin" in r.json()["message"]
        same = {"origin": no_auth_url}
        assert http.post("/api/v1/users", json={"name": "same"}, headers=same).status_code == 201
        assert http.get("/api/v1/whoami", headers=evil).status_code == 200  # reads carry no CSRF


def test_dns_rebinding_host_is_refused(no_auth_url: str) -> None:
    port = no_auth_url.rsplit(":", 1)[1]
    with httpx.Client(base_url=no_auth_url) as http:
        r = http.get("/api/v1/users", headers={"host": f"rebind.evil.example:{port}"})
        assert r.status_code == 400 and "Host" in r.json()["message"]
        assert http.get("/api/v1/users", headers={"host": f"localhost:{port}"}).status_code == 200


def _public_v4() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("203.0.113.1", 9))
        except OSError:
            (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(
                "no non-loopback IPv4 address on this machine"
            )
        return str(s.getsockname()[0])


def test_no_auth_app_answers_loopback_callers_only(tmp_path: Path) -> None:
    """`STRATA_AUTH=false uvicorn --host <public>` served admin with no auth: the factory
    itself must refuse callers that are not on loopback."""
    import uvicorn

    host = _public_v4()
    app = create_app(Settings(home=tmp_path / "home", auth=False))
    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://{host}:{port}") as http:
            r = http.get("/api/v1/users", headers={"host": f"localhost:{port}"})
            assert r.status_code == 403, r.text
            assert "loopback callers only" in r.json()["message"]
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_auth_on_server_checks_host_only_when_configured(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", allowed_hosts="strata.example")
    for url in serve_in_thread(create_app(settings, auth=True)):
        with httpx.Client(base_url=url) as http:
            assert http.get("/healthz").status_code == 400
            r = http.get("/healthz", headers={"host": "strata.example"})
            assert r.status_code == 200
