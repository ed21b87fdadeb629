"""Scoring jobs against an attacker (the security review of the REST jobs): broker passwords
never reach viewers, the UI or the audit log; a redis URI carries no client settings; a job
runs as its caller and leaves no model copy behind; a job whose server died is not shown
running forever; bad specs are refused at once; a REST job cannot start a Ray cluster."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import LiveServer, start_server
from scoring_helpers import FEATURES, flights, register_flights_model

from strata.client import Client
from strata.core.config import Settings
from strata.core.principal import Role
from strata.serving.jobs import HOSTS_ENV
from strata.serving.models import ScoringJob

OK = {"model": "flights-delay/1", "input": "flights", "output": "x"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(home=tmp_path_factory.mktemp("jobs-security-home"))
    setup = Client("", settings=settings)
    register_flights_model(setup, "flights-delay")
    setup.data.ingest(flights(2000, seed=5)[["id", *FEATURES]], "flights")
    setup.close()
    yield from start_server(settings, auth=True)


def _wait(client: Client, job_id: str, timeout: float = 120) -> ScoringJob:
    deadline = time.monotonic() + timeout
    while (job := client.serving.get_job(job_id)).state == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


SECRET = "s3cretpw"


def test_broker_passwords_never_reach_viewers_the_ui_or_the_audit_log(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ui.conftest import login

    monkeypatch.setenv(HOSTS_ENV, "127.0.0.1:6379")
    editor = server.client(server.token_for(Role.EDITOR))
    spec = {
        "model": "flights-delay/1",
        "source": f"redis://:{SECRET}@127.0.0.1:6379/0?stream=jobs-secret-in",
        "sink": f"redis://user:{SECRET}@127.0.0.1:6379/0?stream=jobs-secret-out",
        "max_batches": 1,
        "idle_seconds": 0.5,
    }
    started = editor.serving.start_stream_job(spec)
    assert SECRET not in started.model_dump_json()
    assert started.spec["source"] == "redis://:***@127.0.0.1:6379/0?stream=jobs-secret-in"
    done = _wait(editor, started.id)  # the broker refuses the password: the error says so
    headers = {"authorization": f"Bearer {server.token_for(Role.VIEWER)}"}
    listed = httpx.get(f"{server.url}/api/v1/serving/jobs", headers=headers)
    one = httpx.get(f"{server.url}/api/v1/serving/jobs/{done.id}", headers=headers)
    assert listed.status_code == one.status_code == 200
    assert done.id in listed.text and SECRET not in listed.text + one.text
    with httpx.Client(base_url=server.url, timeout=30) as http:
        login(http, server.token_for(Role.VIEWER))
        page = http.get("/serving/jobs")
    assert page.status_code == 200 and done.id[:12] in page.text and SECRET not in page.text
    audit = list(server.embedded.governance.list_audit(limit=10_000))
    assert any(r.resource_id == done.id for r in audit)
    assert not [r for r in audit if SECRET in r.model_dump_json()]


@pytest.mark.parametrize(
    "query", ["ssl_certfile=/etc/passwd", "ssl_cert_reqs=none", "ssl_ca_certs=/etc/shadow"]
)
def test_a_redis_uri_takes_no_client_settings(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    monkeypatch.setenv(HOSTS_ENV, "127.0.0.1:6379")
    spec = {
        "model": "flights-delay/1",
        "source": f"rediss://127.0.0.1:6379/0?stream=x&{query}",
        "sink": "redis://127.0.0.1:6379/0?stream=y",
    }
    r = httpx.post(
        f"{server.url}/api/v1/serving/jobs/stream",
        json=spec,
        headers={"authorization": f"Bearer {server.token_for(Role.EDITOR)}"},
    )
    assert r.status_code == 400, r.text
    assert query.split("=")[0] in r.text and "source" in r.text


def test_a_job_runs_as_its_caller_and_leaves_no_model_copy(server: LiveServer) -> None:
    tmp = server.settings.home / "tmp"
    before = set(tmp.glob("model-*"))
    editor = server.client(server.token_for(Role.EDITOR, "job-caller"))
    spec = {"model": "flights-delay/1", "input": "flights", "output": "scored_as_caller"}
    done = _wait(editor, editor.serving.start_batch_job({**spec, "executor": "inline"}).id)
    assert done.state == "succeeded", done.error
    ingests = [
        r
        for r in server.embedded.governance.list_audit(action="data.ingest", limit=10_000)
        if "scored_as_caller" in r.resource_id
    ]
    assert ingests and all(r.actor == "job-caller" and r.request_id for r in ingests), ingests
    assert set(tmp.glob("model-*")) <= before  # the job's download of the model is gone


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_job_whose_server_died_is_failed_and_can_be_cancelled(server: LiveServer) -> None:
    import socket
    import uuid
    from datetime import UTC, datetime, timedelta

    from strata.serving.jobs import JobStore, orphaned

    store = JobStore(server.embedded.serving.backends.artifacts)  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    dead = ScoringJob(
        id=uuid.uuid4().hex,
        kind="batch",
        spec=OK,
        created_at=now,
        heartbeat_at=now,
        server=f"{socket.gethostname()}:{_dead_pid()}",
    )
    store.save(dead)
    viewer = server.client(server.token_for(Role.VIEWER))
    shown = viewer.serving.get_job(dead.id)
    assert shown.state == "failed" and "server stopped" in (shown.error or "")
    listed = {j.id: j for j in viewer.serving.list_jobs()}
    assert listed[dead.id].state == "failed"
    editor = server.client(server.token_for(Role.EDITOR))
    cancelled = editor.serving.cancel_job(dead.id)
    assert cancelled.state == "cancelled" and cancelled.finished_at is not None
    assert store.read(dead.id).state == "cancelled"  # recorded, not only shown
    assert store.cancelled(dead.id)  # and its marker, should the process live after all
    assert editor.serving.cancel_job(dead.id).state == "cancelled"  # a second cancel: same
    # Another host's job: judged by its heartbeat.
    old = now - timedelta(minutes=10)
    silent = dead.model_copy(
        update={"id": uuid.uuid4().hex, "server": "elsewhere:1", "state": "running"}
        | {"created_at": old, "heartbeat_at": old, "finished_at": None}
    )
    store.save(silent)
    assert viewer.serving.get_job(silent.id).state == "failed"
    elsewhere = dead.model_copy(update={"server": "elsewhere:1", "state": "running"})
    assert not orphaned(elsewhere, now=now + timedelta(seconds=30))
    assert orphaned(elsewhere, now=now + timedelta(minutes=10))
    alive = dead.model_copy(
        update={"server": f"{socket.gethostname()}:{__import__('os').getpid()}"}
    )
    assert not orphaned(alive.model_copy(update={"state": "running"}), now=now + timedelta(days=1))


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"model": "nosuch"}, 404, "nosuch"),
        ({"model": "flights-delay/99"}, 404, "99"),
        ({"input": "nosuch_dataset"}, 404, "nosuch_dataset"),
        ({"input": "flights@../../x"}, 404, "../../x"),
        ({"executor": "ray"}, 400, "executor"),
        ({"workers": (os.cpu_count() or 1) + 1}, 400, "workers"),
    ],
)
def test_a_bad_batch_spec_is_refused_at_once(
    server: LiveServer, change: dict[str, Any], status: int, field: str
) -> None:
    headers = {"authorization": f"Bearer {server.token_for(Role.EDITOR)}"}
    url = f"{server.url}/api/v1/serving/jobs"
    before = httpx.get(url, headers=headers).json()
    r = httpx.post(f"{url}/batch", json={**OK, **change}, headers=headers)
    assert r.status_code == status, r.text
    assert field in r.json()["message"] and "Traceback" not in r.text
    assert httpx.get(url, headers=headers).json() == before  # no job was created


def test_a_stream_job_names_a_registered_model_that_exists(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOSTS_ENV, "127.0.0.1:6379")
    uri = "redis://127.0.0.1:6379/0?stream=s"
    r = httpx.post(
        f"{server.url}/api/v1/serving/jobs/stream",
        json={"model": "nosuch@champion", "source": uri, "sink": uri},
        headers={"authorization": f"Bearer {server.token_for(Role.EDITOR)}"},
    )
    assert r.status_code == 404 and "nosuch" in r.text, r.text


def test_the_job_list_is_paged_newest_first(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ui.conftest import login

    from strata.core.page import iterate_pages

    editor = server.client(server.token_for(Role.EDITOR))
    for output in ("listed_a", "listed_b", "listed_c"):  # three of its own, whatever ran before
        _wait(editor, editor.serving.start_batch_job({**OK, "output": output}).id)
    two = editor.serving.list_jobs(max_results=2)
    assert [j.spec["output"] for j in two] == ["listed_c", "listed_b"]
    # a job started between two pages goes on the first page, not into the next one: the
    # next page starts after the last job shown (listed_b), nothing repeated or missed
    _wait(editor, editor.serving.start_batch_job({**OK, "output": "listed_d"}).id)
    after = editor.serving.list_jobs(max_results=2, page_token=two.next_page_token)
    assert after[0].spec["output"] == "listed_a", [j.spec["output"] for j in after]
    everything = editor.serving.list_jobs(max_results=1000)
    assert len(everything) >= 3 and everything.next_page_token is None
    # page by page, through the SDK (remote) and REST: every job once, in the same order
    paged = list(iterate_pages(lambda t: editor.serving.list_jobs(max_results=1, page_token=t)))
    assert [j.id for j in paged] == [j.id for j in everything]
    headers = {"authorization": f"Bearer {server.token_for(Role.VIEWER)}"}
    url = f"{server.url}/api/v1/serving/jobs"
    first = httpx.get(url, params={"max_results": 2}, headers=headers).json()
    token = first["next_page_token"]
    second = httpx.get(url, params={"max_results": 2, "page_token": token}, headers=headers)
    assert [j["id"] for j in first["items"] + second.json()["items"]] == [
        j.id for j in everything[:4]
    ]
    for bad in ("max_results=0", "page_token=nonsense", "page_token=eyJvZmZzZXQiOiAtMX0="):
        r = httpx.get(f"{url}?{bad}", headers=headers)
        assert r.status_code in (400, 422), (bad, r.text)
        assert bad.split("=")[0] in r.text and "Traceback" not in r.text
    # the web UI: a page of JOBS_PAGE, and a link to the next
    monkeypatch.setattr("strata.ui.serving.JOBS_PAGE", 1)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        login(http, server.token_for(Role.VIEWER))
        page = http.get("/serving/jobs")
        assert everything[0].id[:12] in page.text and everything[1].id[:12] not in page.text
        following = re.search(r'href="(/serving/jobs\?page=[^"]+)" rel="next"', page.text)
        assert following is not None, page.text
        nxt = http.get(following.group(1).replace("&amp;", "&"))
        assert everything[1].id[:12] in nxt.text and everything[0].id[:12] not in nxt.text


def test_the_cli_lists_the_newest_jobs(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from strata.cli.main import app

    monkeypatch.setenv("STRATA_URI", server.url)
    monkeypatch.setenv("STRATA_TOKEN", server.token_for(Role.VIEWER))
    listed = CliRunner().invoke(app, ["serving", "jobs", "list", "--max-results", "1", "--json"])
    assert listed.exit_code == 0, listed.output
    newest = server.embedded.serving.list_jobs(max_results=2)
    first = json.loads(listed.stdout)
    assert [j["id"] for j in first["jobs"]] == [newest[0].id]
    more = ["--max-results", "1", "--page-token", first["next_page_token"]]
    second = CliRunner().invoke(app, ["serving", "jobs", "list", *more])
    assert second.exit_code == 0, second.output
    assert newest[1].id in second.stdout and newest[0].id not in second.stdout
