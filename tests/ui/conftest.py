"""A populated Strata behind a real server for the UI tests: an experiment with a parent run
and child runs (params, metric curves, tags, artifacts of each previewable kind, dataset
inputs), a dataset with two versions, a derived dataset, a quarantine, a validation report;
one user and token per role."""

from __future__ import annotations

import io
import os
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd
import pytest
from conftest import ON_CI, serve_in_thread

from strata.client import Client
from strata.core.config import Settings
from strata.core.principal import Role
from strata.governance.embedded import EmbeddedGovernance
from strata.server.app import create_app
from strata.tracking.models import DatasetInput, Metric, Param, RunTag

LONG_STEPS = 100_000


def png_bytes(width: int = 8, height: int = 4) -> bytes:
    """A real (tiny, red) PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@dataclass
class UiEnv:
    url: str
    client: Client
    tokens: dict[Role, str]
    experiment_id: str
    parent_id: str
    run_ids: list[str]
    long_run_id: str
    dataset_ref: str
    derived_ref: str
    extra: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def http(self, role: Role | None = None) -> Iterator[httpx.Client]:
        """An HTTP client, logged in as ``role`` through the login form when given."""
        with httpx.Client(base_url=self.url, timeout=30, follow_redirects=False) as http:
            if role is not None:
                login(http, self.tokens[role])
            yield http


def csrf_of(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def login(http: httpx.Client, token: str) -> httpx.Response:
    page = http.get("/login")
    assert page.status_code == 200
    response = http.post(
        "/login", data={"token": token, "csrf": csrf_of(page.text), "next": "/experiments"}
    )
    assert response.status_code == 303, response.text
    return response


def populate(client: Client) -> dict[str, object]:
    tracking, data = client.tracking, client.data
    frame = pd.DataFrame(
        {
            "carrier": ["UA", "AA", "B6", "DL"] * 25,
            "distance": [float(i * 10) for i in range(100)],
            "delay": [i % 7 - 2 for i in range(100)],
        }
    )
    first = data.ingest(frame.iloc[:60], "flights-mini")
    suite = {
        "name": "basic",
        "expectations": [
            {"expect_column_values_to_be_between": {"column": "delay", "min_value": -1}}
        ],
    }
    second = data.ingest(frame, "flights-mini", suite=suite, on_fail="quarantine")
    assert second.ref is not None and first.ref is not None
    derived = data.transform(
        {"src": second.ref}, output="flights-long", sql="SELECT * FROM src WHERE distance > 100"
    )
    assert derived.ref is not None
    version = data.get_version(second.ref)
    exp = tracking.create_experiment("ui-exp", description="UI test experiment")
    eid = exp.experiment_id
    parent = tracking.create_run(eid, run_name="sweep")
    run_ids = []
    for i, alpha in enumerate((0.1, 0.01, 0.001)):
        run = tracking.create_run(eid, run_name=f"alpha-{alpha}", parent_run_id=parent.run_id)
        rid = run.run_id
        metrics = [Metric("loss", 1.0 / (s + 1) + i * 0.1, 1000 + s, s) for s in range(50)]
        metrics += [Metric("auc", 0.6 + 0.1 * i, 2000, 0)]
        tracking.log_batch(
            rid,
            metrics=metrics,
            params=[Param("alpha", str(alpha)), Param("model", "sgd")],
            tags=[RunTag("team", "ml" if i else "data"), RunTag("strata.python.version", "3.11")],
        )
        tracking.log_inputs(
            rid,
            [
                DatasetInput(
                    name=version.dataset,
                    digest=version.digest,
                    source=f"strata:{version.ref}",
                    source_type="strata",
                    context="train",
                )
            ],
        )
        tracking.end_run(rid)
        run_ids.append(rid)
    first_run = run_ids[0]
    tracking.log_artifact_stream(first_run, "notes/readme.txt", io.BytesIO(b"hello artifacts"))
    tracking.log_artifact_stream(first_run, "model/coef.json", io.BytesIO(b'{"coef": [1, 2]}'))
    tracking.log_artifact_stream(first_run, "eval/preds.csv", io.BytesIO(b"y,p\n1,0.9\n0,0.2\n"))
    buf = io.BytesIO()
    frame.head(5).to_parquet(buf, index=False)
    buf.seek(0)
    tracking.log_artifact_stream(first_run, "eval/sample.parquet", buf)
    tracking.log_artifact_stream(first_run, "figures/roc.png", io.BytesIO(png_bytes()))
    tracking.log_artifact_stream(
        first_run, "page.html", io.BytesIO(b"<script>alert(document.cookie)</script>")
    )
    tracking.end_run(parent.run_id)
    long_run = tracking.create_run(eid, run_name="long-curve")
    points = [Metric("loss", 1.0 / (s + 1), 1, s) for s in range(LONG_STEPS)]
    for start in range(0, LONG_STEPS, 1000):
        tracking.log_batch(long_run.run_id, metrics=points[start : start + 1000])
    return {
        "experiment_id": eid,
        "parent_id": parent.run_id,
        "run_ids": run_ids,
        "long_run_id": long_run.run_id,
        "dataset_ref": second.ref,
        "derived_ref": derived.ref,
    }


@pytest.fixture(scope="package")
def ui_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiEnv]:
    settings = Settings(home=tmp_path_factory.mktemp("ui") / "strata-home")
    client = Client("", settings=settings)
    gov = client.governance
    assert isinstance(gov, EmbeddedGovernance)
    tokens = {}
    for role in Role:
        gov.create_user(f"{role.value}-user", role)
        tokens[role] = gov.create_token(f"{role.value}-user").secret
    made = populate(client)
    app = create_app(settings, client=client, auth=True)
    for url in serve_in_thread(app):
        yield UiEnv(url=url, client=client, tokens=tokens, **made)  # type: ignore[arg-type]


# -- the browser (Playwright on the system chromium) -------------------------------------
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = os.environ.get("STRATA_TEST_CHROMIUM") or shutil.which("chromium") or ""
    if not path:
        message = "browser tests need chromium (apt-get install -y chromium)"
        if ON_CI:
            pytest.fail(f"{message}; .ci/run installs it")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def wait_js(page: Any, function: str, timeout_s: float = 20) -> None:
    """Poll a JS function until it returns true (page.wait_for_function compiles its
    predicate with eval, which the UI's Content-Security-Policy forbids, as it should)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(function):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {function}")
        time.sleep(0.05)


def drawn_pixels(page: Any, selector: str) -> int:
    return int(
        page.evaluate(
            """(sel) => {
              const canvas = document.querySelector(sel + ' canvas');
              const ctx = canvas.getContext('2d');
              const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
              let n = 0;
              for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
              return n;
            }""",
            selector,
        )
    )
