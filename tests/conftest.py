"""Shared fixtures: isolated STRATA_HOME, SQLite/PostgreSQL metadata DBs, a live server.

Service-backed tests read ``STRATA_TEST_POSTGRES_URL`` (and friends). Without it they skip
with a message saying how to enable them — except on CI (``CI=true``), where a missing or
unreachable service is a failure, never a skip.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from strata.client import Client
from strata.core.config import Settings
from strata.core.principal import Role

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
S3_BUCKET = "strata-test"


def need_service(env_var: str, what: str) -> str:
    """The URL of a test service, or skip (fail on CI) when it is not configured."""
    url = os.environ.get(env_var, "")
    if not url:
        message = f"{what} tests need {env_var} (e.g. export it as .ci/run does)"
        if ON_CI:
            pytest.fail(f"{message}; on CI it must be set")
        pytest.skip(message)
    return url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in list(os.environ):
        if var.startswith("STRATA_") and not var.startswith("STRATA_TEST_"):
            monkeypatch.delenv(var, raising=False)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STRATA_HOME", str(tmp_path / "strata-home"))


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    return need_service("STRATA_TEST_POSTGRES_URL", "PostgreSQL")


def _pg_schema_url(base: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at STRATA_TEST_POSTGRES_URL is unreachable: {exc.orig}")
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}_optuna" CASCADE'))  # tune's
    admin.dispose()


@pytest.fixture
def pg_url(postgres_base_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    yield from _pg_schema_url(postgres_base_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each metadata backend in turn: SQLite in tmp_path, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        base = need_service("STRATA_TEST_POSTGRES_URL", "PostgreSQL")
        yield from _pg_schema_url(base)


@pytest.fixture
def settings(tmp_path: Path, db_uri: str) -> Settings:
    return Settings(
        home=tmp_path / "strata-home", db_uri=db_uri, artifact_uri=str(tmp_path / "artifacts")
    )


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Settings on the embedded default only (for tests not about the DB backend)."""
    return Settings(home=tmp_path / "strata-home")


@pytest.fixture
def embedded(settings: Settings) -> Iterator[Client]:
    client = Client("", settings=settings)
    yield client
    client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A real ``strata server`` (uvicorn) on a loopback port, in a thread of this process."""

    url: str
    admin_token: str
    settings: Settings
    embedded: Client

    def client(self, token: str | None = None) -> Client:
        return Client(
            self.url, token=self.admin_token if token is None else token, settings=self.settings
        )

    def token_for(self, role: Role | str, name: str | None = None) -> str:
        """Create a user with ``role`` and return a fresh token of theirs."""
        gov = self.embedded.governance
        user = name or f"u-{role}-{uuid.uuid4().hex[:6]}"
        gov.create_user(user, role)
        return gov.create_token(user).secret


def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn (as ``strata server`` does) on a free loopback port, in a
    thread of this process; yield its base URL; stop it afterwards."""
    import uvicorn

    from strata.server.run import NoDelayHttpToolsProtocol

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        http=NoDelayHttpToolsProtocol,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def start_server(settings: Settings, auth: bool = True) -> Iterator[LiveServer]:
    """A live server on ``settings``; with auth, an admin whose token the clients use."""
    from strata.governance.embedded import EmbeddedGovernance
    from strata.server.app import create_app

    embedded = Client("", settings=settings)
    token = ""
    if auth:
        new = EmbeddedGovernance(embedded.backends).bootstrap_admin()
        assert new is not None
        token = new.secret
    app = create_app(settings, client=embedded, auth=auth)
    for url in serve_in_thread(app):
        yield LiveServer(url=url, admin_token=token, settings=settings, embedded=embedded)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    yield from start_server(settings)


@pytest.fixture(params=["embedded", "remote"])
def client(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Client]:
    """The contract-test harness: the same test runs on an embedded and a remote client.

    Remote means a real server on a loopback port, called with an admin token.
    """
    if request.param == "embedded":
        c = Client("", settings=settings)
        yield c
        c.close()
    else:
        for live in start_server(settings):
            c = live.client()
            yield c
            c.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint URL of a moto S3 server with bucket ``S3_BUCKET``; dummy credentials in env."""
    import boto3
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(var, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
            yield endpoint
        finally:
            server.stop()
