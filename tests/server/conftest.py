"""Fixtures for server tests: the app served by a real uvicorn on loopback, a token per role.

(starlette's TestClient is not used: it is deprecated with the httpx we ship, and a real
server on a socket is the thing we serve anyway.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import free_port, serve_in_thread  # noqa: F401 - re-exported for tests here
from fastapi import FastAPI

from strata.client import Client
from strata.core.config import Settings
from strata.core.principal import Role
from strata.governance.embedded import EmbeddedGovernance
from strata.server.app import create_app

MLFLOW_API = "/api/2.0/mlflow"


@dataclass
class AppEnv:
    """An app, an HTTP client on it, the governance behind it and one token per role."""

    app: FastAPI
    http: httpx.Client
    gov: EmbeddedGovernance
    settings: Settings
    tokens: dict[Role, str]
    users: dict[Role, str]

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def new_run(self) -> str:
        """A run created over MLflow's REST API by the editor (its token's first use)."""
        r = self.http.post(
            f"{MLFLOW_API}/runs/create",
            json={"experiment_id": "0"},
            headers=self.auth(Role.EDITOR),
        )
        assert r.status_code == 200, r.text
        return str(r.json()["run"]["info"]["run_id"])

    def loss_steps(self, run_id: str) -> list[int]:
        """The steps of the run's ``loss`` history, as MLflow's REST API gives them."""
        r = self.http.get(
            f"{MLFLOW_API}/metrics/get-history",
            params={"run_id": run_id, "metric_key": "loss"},
            headers=self.auth(Role.VIEWER),
        )
        return [m["step"] for m in r.json().get("metrics", [])]


def build_env(settings: Settings, *, auth: bool = True) -> Iterator[AppEnv]:
    embedded = Client("", settings=settings)
    gov = embedded.governance
    assert isinstance(gov, EmbeddedGovernance)
    tokens: dict[Role, str] = {}
    users: dict[Role, str] = {}
    for role in Role:
        name = f"{role.value}-user"
        gov.create_user(name, role)
        tokens[role] = gov.create_token(name).secret
        users[role] = name
    app = create_app(settings, client=embedded, auth=auth)
    for url in serve_in_thread(app):
        with httpx.Client(base_url=url, timeout=30) as http:
            yield AppEnv(app, http, gov, settings, tokens, users)


@pytest.fixture
def env(sqlite_settings: Settings) -> Iterator[AppEnv]:
    yield from build_env(sqlite_settings)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo what ``configure_logging`` (called by `strata server`) does to the strata logger."""
    logger = logging.getLogger("strata")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    try:
        yield
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in saved[0]:
            logger.addHandler(handler)
        logger.propagate, logger.level = saved[1], saved[2]


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppEnv]:
    """One app for a module's tests that leave no state others could see (saves start-ups)."""
    yield from build_env(Settings(home=tmp_path_factory.mktemp("shared") / "strata-home"))


@pytest.fixture
def small_env(tmp_path: Path) -> Iterator[AppEnv]:
    """An app whose JSON request bodies are limited to 1000 bytes."""
    yield from build_env(Settings(home=tmp_path / "small-home", max_request_bytes=1000))
