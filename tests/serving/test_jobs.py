"""Scoring jobs through the serving service on a live server: an editor starts a batch job
over REST / the remote client, a viewer lists and reads it (and may not start one), a cancel
stops a job (a rerun resumes it), the UI lists jobs — and a job spec cannot make the server
read a path, load a pickle, or reach a broker it is not configured with."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import LiveServer, start_server
from scoring_helpers import FEATURES, flights, register_flights_model

import strata.models as sm
from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import InvalidInput, PermissionDenied
from strata.core.principal import Role
from strata.serving.jobs import HOSTS_ENV
from strata.serving.models import ScoringJob

ROWS = 20_000
BIG = 200_000
OK = {"model": "flights-delay/1", "input": "flights", "output": "x"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(home=tmp_path_factory.mktemp("jobs-home"))
    setup = Client("", settings=settings)
    register_flights_model(setup, "flights-delay")
    setup.data.ingest(flights(ROWS, seed=5)[["id", *FEATURES]], "flights")
    setup.data.ingest(flights(BIG, seed=6)[["id", *FEATURES]], "flights_big")
    setup.close()
    yield from start_server(settings, auth=True)


def _wait(client: Client, job_id: str, timeout: float = 120) -> ScoringJob:
    deadline = time.monotonic() + timeout
    while True:
        job = client.serving.get_job(job_id)
        if job.state != "running":
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_an_editor_scores_a_dataset_and_a_viewer_reads_the_job(server: LiveServer) -> None:
    editor = server.client(server.token_for(Role.EDITOR, "job-editor"))
    viewer_token = server.token_for(Role.VIEWER)
    spec = {"model": "flights-delay/1", "input": "flights", "output": "scored_api"}
    spec |= {"chunk_rows": 5000, "executor": "inline", "keep": ["id"]}
    job = editor.serving.start_batch_job(spec)
    assert job.state == "running" and job.kind == "batch" and job.created_by == "job-editor"
    done = _wait(editor, job.id)
    assert done.state == "succeeded", done.error
    assert done.progress["rows_done"] == ROWS and done.result is not None
    out = server.embedded.data.read_pandas(done.result["output"])
    model = sm.load("models:/flights-delay/1", tracking=server.embedded.tracking)
    frame = server.embedded.data.read_pandas("flights", columns=FEATURES).astype("float64")
    assert np.array_equal(out["prediction"].to_numpy(), model.predict(frame))
    headers = {"authorization": f"Bearer {viewer_token}"}
    listed = httpx.get(f"{server.url}/api/v1/serving/jobs", headers=headers)
    assert listed.status_code == 200 and job.id in [j["id"] for j in listed.json()["items"]]
    one = httpx.get(f"{server.url}/api/v1/serving/jobs/{job.id}", headers=headers)
    assert one.json()["state"] == "succeeded"
    refused = httpx.post(f"{server.url}/api/v1/serving/jobs/batch", json=spec, headers=headers)
    assert refused.status_code == 403
    cancel = httpx.post(f"{server.url}/api/v1/serving/jobs/{job.id}/cancel", headers=headers)
    assert cancel.status_code == 403
    anonymous = httpx.get(f"{server.url}/api/v1/serving/jobs")
    assert anonymous.status_code == 401
    missing = httpx.get(f"{server.url}/api/v1/serving/jobs/{'0' * 32}", headers=headers)
    assert missing.status_code == 404
    traversal = httpx.get(f"{server.url}/api/v1/serving/jobs/..%2F..%2Fetc", headers=headers)
    assert traversal.status_code == 404
    audit = server.embedded.governance.list_audit(action="serving.start_job")
    assert any(r.resource_id == job.id for r in audit)


def test_cancel_stops_a_batch_job_and_a_rerun_resumes(server: LiveServer) -> None:
    editor = server.client(server.token_for(Role.EDITOR))
    spec = {"model": "flights-delay/1", "input": "flights_big", "output": "scored_cancel"}
    spec |= {"chunk_rows": 100, "executor": "inline"}  # 2,000 chunks: seconds of work
    job = editor.serving.start_batch_job(spec)
    asked = editor.serving.cancel_job(job.id)
    assert asked.state != "running" or asked.cancel_requested
    done = _wait(editor, job.id)
    assert done.state == "cancelled", done
    assert done.progress.get("rows_done", 0) < BIG
    again = _wait(editor, editor.serving.start_batch_job(spec).id)
    assert again.state == "succeeded" and again.result is not None
    assert again.result["rows"] == BIG
    assert again.result["resumed_chunks"] * 100 == done.progress["rows_done"]
    assert editor.serving.cancel_job(again.id).state == "succeeded"  # finished: unchanged


def test_a_finished_job_is_deleted_and_a_running_one_refused(server: LiveServer) -> None:
    editor = server.client(server.token_for(Role.EDITOR))
    spec = {"model": "flights-delay/1", "input": "flights_big", "output": "scored_delete"}
    job = editor.serving.start_batch_job(spec | {"chunk_rows": 100, "executor": "inline"})
    url = f"{server.url}/api/v1/serving/jobs/{job.id}"
    editor_h = {"authorization": f"Bearer {server.token_for(Role.EDITOR)}"}
    running = httpx.delete(url, headers=editor_h)
    assert running.status_code == 409 and "cancel it first" in running.json()["message"]
    editor.serving.cancel_job(job.id)
    assert _wait(editor, job.id).state == "cancelled"
    viewer_h = {"authorization": f"Bearer {server.token_for(Role.VIEWER)}"}
    assert httpx.delete(url, headers=viewer_h).status_code == 403
    assert httpx.delete(url).status_code == 401
    traversal = f"{server.url}/api/v1/serving/jobs/..%2F..%2Fpolicies%2Fx"
    assert httpx.delete(traversal, headers=editor_h).status_code == 404
    assert editor.serving.get_job(job.id).state == "cancelled"  # none of those removed it

    editor.serving.delete_job(job.id)  # the remote client: DELETE, 204
    assert httpx.get(url, headers=editor_h).status_code == 404
    assert job.id not in [j.id for j in editor.serving.list_jobs(max_results=1000)]
    assert httpx.delete(url, headers=editor_h).status_code == 404
    store = server.embedded.backends.artifacts
    assert not store.exists(f"serving/jobs/{job.id}.json")
    assert not store.exists(f"serving/jobs/{job.id}.cancel")
    audit = server.embedded.governance.list_audit(action="serving.delete_job")
    assert [r.resource_id for r in audit] == [job.id]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"model": "/etc", "input": "flights", "output": "x"}, "model"),
        ({"model": "./model", "input": "flights", "output": "x"}, "model"),
        ({"model": "runs:/abc/model", "input": "flights", "output": "x"}, "model"),
        ({"model": "flights-delay/1", "input": "../../etc/passwd", "output": "x"}, "input"),
        ({"model": "flights-delay/1", "input": "/etc/passwd", "output": "x"}, "input"),
        ({"model": "flights-delay/1", "input": "s3://bucket/key", "output": "x"}, "input"),
        ({"model": "flights-delay/1", "input": "flights", "output": "../x"}, "output"),
        (
            {"model": "flights-delay/1", "input": "flights", "output": "x", "trusted": True},
            "trusted",
        ),
        (
            {"model": "flights-delay/1", "input": "flights", "output": "x", "ray_address": "h:1"},
            "ray_address",
        ),
        (
            {"model": "flights-delay/1", "input": "flights", "output": "x", "workers": 10**6},
            "workers",
        ),
    ],
)
def test_a_batch_spec_names_registered_models_and_datasets_only(
    server: LiveServer, spec: dict[str, Any], field: str
) -> None:
    editor = server.client(server.token_for(Role.EDITOR))
    with pytest.raises(InvalidInput) as info:
        editor.serving.start_batch_job(spec)
    assert field in info.value.message, info.value.message
    r = httpx.post(
        f"{server.url}/api/v1/serving/jobs/batch",
        json=spec,
        headers={"authorization": f"Bearer {server.admin_token}"},
    )
    assert r.status_code == 400 and "Traceback" not in r.text


def test_a_stream_job_reaches_configured_brokers_only(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    editor = server.client(server.token_for(Role.EDITOR))
    base = {"model": "flights-delay/1", "sink": "kafka://127.0.0.1:9/out"}
    with pytest.raises(PermissionDenied) as info:
        editor.serving.start_stream_job({**base, "source": "kafka://169.254.169.254:80/in"})
    assert "not one this server is configured with" in info.value.message
    monkeypatch.setenv(HOSTS_ENV, "127.0.0.1:9")
    with pytest.raises(InvalidInput) as bad:  # librdkafka settings can name files, plugins
        editor.serving.start_stream_job(
            {**base, "source": "kafka://127.0.0.1:9/in?ssl.ca.location=/etc/shadow"}
        )
    assert "no client settings" in bad.value.message
    with pytest.raises(InvalidInput):
        editor.serving.start_stream_job({**base, "source": "file:///etc/passwd"})
    with pytest.raises(InvalidInput):
        editor.serving.start_stream_job({**base, "model": "/tmp/model", "source": base["sink"]})


def test_the_ui_lists_jobs(server: LiveServer) -> None:
    from ui.conftest import login

    editor = server.client(server.token_for(Role.EDITOR))
    job = _wait(
        editor,
        editor.serving.start_batch_job(
            {"model": "flights-delay/1", "input": "flights", "output": "scored_ui"}
        ).id,
    )
    with httpx.Client(base_url=server.url, timeout=30) as http:
        login(http, server.token_for(Role.VIEWER))
        page = http.get("/serving/jobs")
    assert page.status_code == 200
    assert job.id[:12] in page.text and "scored_ui" in page.text and "succeeded" in page.text


def test_the_cli_starts_follows_lists_and_cancels_jobs(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from strata.cli.main import app

    monkeypatch.setenv("STRATA_URI", server.url)
    monkeypatch.setenv("STRATA_TOKEN", server.token_for(Role.EDITOR))
    runner = CliRunner()
    args = ["serving", "jobs", "batch", "flights-delay/1", "-i", "flights", "-o", "scored_cli"]
    done = runner.invoke(app, [*args, "--wait", "--json"])
    assert done.exit_code == 0, done.output
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and job["result"]["output"].startswith("scored_cli@")
    listed = runner.invoke(app, ["serving", "jobs", "list", "--json"])
    assert job["id"] in [j["id"] for j in json.loads(listed.stdout)["jobs"]]
    shown = runner.invoke(app, ["serving", "jobs", "cancel", job["id"]])
    assert shown.exit_code == 0 and "succeeded" in shown.stdout
    deleted = runner.invoke(app, ["serving", "jobs", "delete", job["id"]])
    assert deleted.exit_code == 0 and f"Deleted scoring job {job['id']}" in deleted.stdout
    gone = runner.invoke(app, ["serving", "jobs", "show", job["id"]])
    assert gone.exit_code != 0 and "No scoring job" in str(gone.exception or gone.output)
    bad = runner.invoke(app, ["serving", "jobs", "batch", "/etc", "-i", "flights", "-o", "x"])
    assert bad.exit_code != 0 and "registered model" in str(bad.exception)


def test_the_serving_page_shows_the_live_request_rate(server: LiveServer) -> None:
    """Each report carries the requests per second since the worker's previous report."""
    from ui.conftest import login

    from strata.server.serving import _status_publisher
    from strata.serving.models import EndpointStatus

    stats: dict[str, dict[str, float]] = {"ratey": {"requests": 100.0}}
    publish = _status_publisher(server.embedded, stats)
    status = EndpointStatus(name="ratey", model="flights-delay/1", version="1", ready=True)
    publish([status])
    first = server.embedded.serving.get_endpoint("ratey").stats
    assert first["requests"] == 100 and "rate_rps" not in first  # one report: no rate yet
    time.sleep(0.5)
    stats["ratey"]["requests"] = 150.0
    publish([status])
    rate = server.embedded.serving.get_endpoint("ratey").stats["rate_rps"]
    assert 10 < rate <= 100, rate  # 50 requests in ~0.5 s
    with httpx.Client(base_url=server.url, timeout=30) as http:
        login(http, server.token_for(Role.VIEWER))
        page = http.get("/serving")
    assert f"{rate:.1f}/s" in page.text


def test_a_job_deleted_while_the_list_is_read_is_left_out(tmp_path: Any) -> None:
    """The store listed a job's file, then it was deleted before it was read: the list goes
    on without it (not a 404 for the whole list)."""
    from datetime import UTC, datetime

    from strata.backends.artifacts import ArtifactStore
    from strata.serving.jobs import JobStore

    store = ArtifactStore(str(tmp_path / "artifacts"))
    jobs = JobStore(store)
    for n in range(3):
        jobs.save(
            ScoringJob(
                id=f"{n:032x}",
                kind="batch",
                state="succeeded",
                spec={"output": f"out{n}"},
                created_at=datetime(2026, 12, 2, 12, n, tzinfo=UTC),
            )
        )
    listing = store.list

    def list_then_delete(prefix: str) -> Any:
        found = listing(prefix)
        store.delete(jobs.path(f"{1:032x}"))  # gone between the listing and the reads
        return found

    store.list = list_then_delete  # type: ignore[method-assign]
    assert [j.id for j in jobs.list()] == [f"{2:032x}", f"{0:032x}"]


def test_an_empty_job_list_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from strata.cli.main import app

    monkeypatch.delenv("STRATA_URI", raising=False)
    monkeypatch.setenv("STRATA_HOME", str(tmp_path / "home"))
    listed = CliRunner().invoke(app, ["serving", "jobs", "list"])
    assert listed.exit_code == 0, listed.output
    said = " ".join(listed.stdout.split())
    assert said.startswith("No scoring jobs yet. Start one with: strata serving jobs batch")
    assert "strata serving jobs stream MODEL_REF --from URI --to URI" in said
