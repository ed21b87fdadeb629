"""The lean SQLite path of the MLflow logging calls (tracking/mlflow_api/hot.py), as an
attacker and as a client would meet it: it serves only the plain success, every refusal is
the regular route's (same status, body and audit), and nothing gets around it."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest

from strata.backends.db import SQLITE_MMAP_BYTES, Database
from strata.core.config import Settings
from strata.core.principal import Role
from strata.tracking.hot_store import HotWriter

from .conftest import AppEnv, build_env

API = "/api/2.0/mlflow"


def _hot(env: AppEnv) -> HotWriter:
    writer: HotWriter = env.app.state.hot_writer
    return writer


def _metric(run_id: str, step: int = 0, **extra: Any) -> dict[str, Any]:
    return {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": step} | extra


def test_serves_the_logging_calls_with_the_same_rows_and_audit(env: AppEnv) -> None:
    editor = {**env.auth(Role.EDITOR), "X-Request-ID": "hot-1"}
    run_id = env.new_run()  # the token's first use is recorded by the regular path
    hot = _hot(env)
    served = hot.served
    url = f"{API}/runs/"
    calls = [
        ("log-metric", _metric(run_id, 1)),
        ("log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"}),
        ("log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"}),  # same value: ok
        ("set-tag", {"run_id": run_id, "key": "team", "value": "a"}),
        ("log-batch", {"run_id": run_id, "metrics": [_metric(run_id, 2)], "tags": []}),
    ]
    for route, body in calls:
        r = env.http.post(url + route, json=body, headers=editor)
        assert r.status_code == 200 and r.json() == {}, (route, r.text)
        assert r.headers["x-request-id"] == "hot-1"
    assert hot.served == served + len(calls)
    got = env.http.get(f"{API}/runs/get", params={"run_id": run_id}, headers=editor).json()
    data = got["run"]["data"]
    assert {p["key"]: p["value"] for p in data["params"]} == {"lr": "0.1"}
    assert {"key": "team", "value": "a"} in data["tags"]
    assert [m["value"] for m in data["metrics"] if m["key"] == "loss"] == [0.5]
    assert env.loss_steps(run_id) == [1, 2]
    records = [
        e
        for e in env.gov.list_audit(action="run.log_batch", limit=20).items
        if e.resource_id == run_id
    ]
    assert len(records) == len(calls)
    assert {(e.actor, e.request_id, e.outcome) for e in records} == {
        (env.users[Role.EDITOR], "hot-1", "ok")
    }
    assert env.gov.verify_audit().ok  # the chain holds across both paths


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "UNAUTHENTICATED"),
        ({"Authorization": "Bearer strata_" + "x" * 43}, 401, "UNAUTHENTICATED"),
        ({"Authorization": "Basic Og=="}, 401, "UNAUTHENTICATED"),
        ("viewer", 403, "PERMISSION_DENIED"),
    ],
)
def test_refused_callers_get_the_regular_answer_and_write_nothing(
    env: AppEnv, headers: Any, status: int, code: str
) -> None:
    run_id = env.new_run()
    if headers == "viewer":
        headers = env.auth(Role.VIEWER)
        # a read first, so the token's use is recorded and the lean path would take it
        env.http.get(f"{API}/runs/get", params={"run_id": run_id}, headers=headers)
    before = _hot(env).served
    r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=headers)
    assert r.status_code == status and r.json()["error_code"] == code, r.text
    assert _hot(env).served == before
    assert env.loss_steps(run_id) == []
    refused = [
        e for e in env.gov.list_audit(limit=20).items if e.action == f"POST {API}/runs/log-metric"
    ]
    assert refused, "the refusal is audited as on the regular path"


def test_of_two_authorization_headers_the_first_decides_as_on_the_regular_route(
    env: AppEnv,
) -> None:
    """The regular route reads the first ``Authorization`` header: the lean path must not
    take a later one (an editor's token behind a viewer's would write as the editor)."""
    run_id = env.new_run()
    viewer, editor = env.auth(Role.VIEWER), env.auth(Role.EDITOR)
    env.http.get(f"{API}/runs/get", params={"run_id": run_id}, headers=viewer)  # use recorded
    before = _hot(env).served
    both = [("Authorization", viewer["Authorization"]), ("Authorization", editor["Authorization"])]
    r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=both)
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text
    assert _hot(env).served == before
    assert env.loss_steps(run_id) == []


def test_a_service_token_writes_nothing_on_either_path(env: AppEnv) -> None:
    """A service token (scope ``predict``) of an admin may only predict: the lean path
    declines its writes and the regular route refuses them (403), even after its use is
    recorded (which otherwise lets the lean path serve a token)."""
    run_id = env.new_run()
    service = env.gov.create_token(env.users[Role.ADMIN], scope="predict").secret
    headers = {"Authorization": f"Bearer {service}"}
    before = _hot(env).served
    for _ in range(2):  # the second call comes after the token's use was recorded
        r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=headers)
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text
    assert (
        env.http.get(f"{API}/runs/get", params={"run_id": run_id}, headers=headers).status_code
        == 403
    )
    assert env.http.get("/api/v1/users", headers=headers).status_code == 403
    assert _hot(env).served == before
    assert env.loss_steps(run_id) == []


def test_a_revoked_token_or_disabled_user_stops_at_once(env: AppEnv) -> None:
    run_id = env.new_run()
    editor = env.auth(Role.EDITOR)
    assert env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=editor).is_success
    served = _hot(env).served
    assert env.http.post(
        f"{API}/runs/log-metric", json=_metric(run_id, 1), headers=editor
    ).is_success
    assert _hot(env).served == served + 1  # the lean path served it: no cache below
    env.gov.update_user(env.users[Role.EDITOR], disabled=True)
    r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id, 2), headers=editor)
    assert r.status_code == 401
    env.gov.update_user(env.users[Role.EDITOR], disabled=False)
    token_id = next(t.id for t in env.gov.list_tokens(env.users[Role.EDITOR]))
    env.gov.revoke_token(token_id)
    r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id, 3), headers=editor)
    assert r.status_code == 401
    assert env.loss_steps(run_id) == [0, 1]


def test_bad_bodies_and_runs_get_mlflows_words(env: AppEnv) -> None:
    run_id = env.new_run()
    editor = env.auth(Role.EDITOR)
    env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=editor)
    env.http.post(
        f"{API}/runs/log-parameter",
        json={"run_id": run_id, "key": "lr", "value": "1"},
        headers=editor,
    )
    deleted = env.new_run()
    env.http.post(f"{API}/runs/delete", json={"run_id": deleted}, headers=editor)
    missing_run = "f" * 32
    cases = [
        ("log-metric", {"key": "loss", "value": 1, "timestamp": 1}, 400, "parameter 'run_id'"),
        ("log-metric", _metric(run_id, value="abc"), 400, 'Invalid value "abc" for parameter'),
        ("log-metric", _metric(run_id, key="../x"), 400, "must not resolve to other names"),
        ("log-metric", _metric(missing_run), 404, f"Run with id={missing_run} not found"),
        ("log-metric", _metric(deleted), 400, "deleted"),
        ("log-parameter", {"run_id": run_id, "key": "lr", "value": "2"}, 400, "Changing param"),
        ("set-tag", {"run_id": run_id, "key": "t"}, 200, ""),
        ("log-batch", {"run_id": run_id, "metrics": [_metric(run_id)] * 1001}, 400, "at most"),
    ]
    served = _hot(env).served
    ok = 0
    for route, body, status, words in cases:
        r = env.http.post(f"{API}/runs/{route}", json=body, headers=editor)
        assert r.status_code == status, (route, body, r.text)
        if status == 200:
            ok += 1
            continue
        assert r.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")
        assert words in r.json()["message"], r.text
    assert _hot(env).served == served + ok
    failures = [
        e.outcome
        for e in env.gov.list_audit(action="run.log_batch", limit=50).items
        if e.resource_id in (missing_run, deleted)
    ]
    assert failures and all(o.startswith("error:") for o in failures)  # audited as failures


@pytest.mark.parametrize(
    "path",
    [
        "//api/2.0/mlflow/runs/log-metric",
        "/api/2.0/mlflow/runs/log-metric/",
        "/api/2.0/mlflow/runs%2Flog-metric",
        "/api/2.0/mlflow/runs/./log-metric",
        "/API/2.0/mlflow/runs/log-metric",
        "/api/2.0/mlflow/runs/log-metric;x",
    ],
)
def test_path_tricks_never_write_without_a_token(env: AppEnv, path: str) -> None:
    run_id = env.new_run()
    before = _hot(env).served
    r = env.http.post(path, json=_metric(run_id))
    assert r.status_code in (401, 404, 405), (path, r.status_code, r.text)
    assert _hot(env).served == before
    assert env.loss_steps(run_id) == []


def test_a_held_write_lock_sends_the_call_to_the_regular_path(env: AppEnv) -> None:
    run_id = env.new_run()
    editor = env.auth(Role.EDITOR)
    env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=editor)
    hot = _hot(env)
    other = sqlite3.connect(hot.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    declined, served = hot.declined, hot.served
    start = time.monotonic()
    release.start()
    try:
        r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id, 1), headers=editor)
    finally:
        release.join()
        other.close()
    assert r.status_code == 200, r.text
    assert time.monotonic() - start >= 0.4  # the regular path waited for the lock
    assert (hot.declined, hot.served) == (declined + 1, served)
    assert env.loss_steps(run_id) == [0, 1]


def test_oversized_and_non_json_bodies_are_refused_before_it(small_env: AppEnv) -> None:
    env = small_env
    run_id = env.new_run()
    editor = env.auth(Role.EDITOR)
    before = _hot(env).served
    big = _metric(run_id, key="k" * 2000)
    r = env.http.post(f"{API}/runs/log-metric", json=big, headers=editor)
    assert r.status_code == 413
    r = env.http.post(
        f"{API}/runs/log-metric",
        content=b'{"run_id": "x"}',
        headers={**editor, "Content-Type": "text/plain"},
    )
    assert r.status_code == 415
    nul = _metric(run_id, key="lo\u0000ss")
    r = env.http.post(f"{API}/runs/log-metric", json=nul, headers=editor)
    assert r.status_code == 400 and "NUL" in r.json()["message"]
    assert _hot(env).served == before
    assert env.loss_steps(run_id) == []


def test_the_plain_success_skips_the_middleware_stack(
    env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strata.server.middleware import RequestMiddleware

    run_id = env.new_run()
    editor = {**env.auth(Role.EDITOR), "X-Request-ID": "outer-1"}
    env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=editor)
    calls = [0]
    real = RequestMiddleware.__call__

    async def counting(self: Any, scope: Any, receive: Any, send: Any) -> None:
        calls[0] += 1
        await real(self, scope, receive, send)

    monkeypatch.setattr(RequestMiddleware, "__call__", counting)
    line = f'strata_http_requests_total{{method="POST",route="{API}/runs/log-metric",status="200"}}'

    def served_count() -> float:
        metrics = env.http.get("/metrics", headers=env.auth(Role.ADMIN)).text
        return float(next(m.split()[-1] for m in metrics.splitlines() if m.startswith(line)))

    before = served_count()
    r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id, 1), headers=editor)
    assert r.status_code == 200 and r.headers["x-request-id"] == "outer-1"
    assert calls[0] == 1  # answered ahead of the stack (the one call is the /metrics read)
    assert served_count() == before + 1  # counted as the stack counts
    r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id, 2, value="x"), headers=editor)
    assert r.status_code == 400 and calls[0] == 3  # refused: by the stack, as before


def test_the_wal_starts_over_under_a_stream_of_lean_commits(env: AppEnv) -> None:
    """A passive checkpoint racing the commits never let the WAL restart: it grew by every
    commit (133 MB after 3,000 calls)."""
    run_id = env.new_run()
    editor = env.auth(Role.EDITOR)
    for step in range(350):
        r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id, step), headers=editor)
        assert r.status_code == 200
    assert _hot(env).served >= 340
    time.sleep(0.5)  # the last checkpoint runs after its response
    with sqlite3.connect(_hot(env).path) as raw:
        frames = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    assert frames < 2000, frames  # ~7 frames a call: 350 calls without a restart = 2,450
    assert env.loss_steps(run_id) == list(range(350))


def test_a_call_during_the_workers_own_checkpoint_waits_for_it_on_the_lean_path(
    env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1 call in 100 arrived while the checkpoint after the previous one held the write
    lock, and went down the regular route (several times the CPU of a lean call)."""
    run_id = env.new_run()
    editor = env.auth(Role.EDITOR)
    assert env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=editor).is_success
    hot = _hot(env)
    holding, release = threading.Event(), threading.Event()
    real = hot.housekeeping

    def a_long_checkpoint(seq: int) -> None:  # holds the write lock as a checkpoint does
        with sqlite3.connect(hot.path, isolation_level=None) as raw:
            raw.execute("BEGIN IMMEDIATE")
            holding.set()
            release.wait(10)
            raw.execute("COMMIT")
        real(seq)

    due = iter([True])
    monkeypatch.setattr(hot, "housekeeping", a_long_checkpoint)
    monkeypatch.setattr(hot, "housekeeping_due", lambda seq: next(due, False))
    served = hot.served
    r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id, 1), headers=editor)
    assert r.status_code == 200 and holding.wait(10)
    answers: list[httpx.Response] = []
    second = threading.Thread(
        target=lambda: answers.append(
            env.http.post(f"{API}/runs/log-metric", json=_metric(run_id, 2), headers=editor)
        )
    )
    second.start()
    time.sleep(0.3)
    assert second.is_alive()  # waiting for the checkpoint
    release.set()
    second.join(10)
    assert [a.status_code for a in answers] == [200]
    assert hot.served == served + 2  # both lean: none went down the regular route
    assert env.loss_steps(run_id) == [0, 1, 2]


def test_the_lean_connection_reads_through_the_same_memory_map(env: AppEnv) -> None:
    run_id = env.new_run()
    r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=env.auth(Role.EDITOR))
    assert r.status_code == 200 and _hot(env).served >= 1
    raw = _hot(env)._connection()
    assert raw.execute("PRAGMA mmap_size").fetchone()[0] == SQLITE_MMAP_BYTES


def test_an_expired_token_is_refused_on_the_next_call(env: AppEnv) -> None:
    run_id = env.new_run()
    editor = env.auth(Role.EDITOR)
    assert env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=editor).is_success
    token_id = next(t.id for t in env.gov.list_tokens(env.users[Role.EDITOR]))
    with sqlite3.connect(_hot(env).path) as raw:  # its expiry passes (as time would)
        raw.execute(
            "UPDATE gov_tokens SET expires_at = '2020-01-01 00:00:00.000000' WHERE id = ?",
            (token_id,),
        )
    served = _hot(env).served
    r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id, 1), headers=editor)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    assert _hot(env).served == served
    assert env.loss_steps(run_id) == [0]


def test_a_long_reader_never_stalls_writes_behind_the_checkpoint(env: AppEnv) -> None:
    """The checkpoint blocks writers while it waits for readers of older snapshots: only
    briefly (it gave up after 5 s before, and a call waited that long behind it)."""
    run_id = env.new_run()
    editor = env.auth(Role.EDITOR)
    env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=editor)
    reader = sqlite3.connect(_hot(env).path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM trk_runs").fetchone()  # holds its snapshot
    slowest = 0.0
    try:
        for step in range(1, 230):
            start = time.monotonic()
            r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id, step), headers=editor)
            slowest = max(slowest, time.monotonic() - start)
            assert r.status_code == 200, r.text
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert slowest < 1.0, slowest
    assert env.loss_steps(run_id) == list(range(230))


def _parse_spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the items handed to ``parse_metrics`` (by the lean path and the regular route)."""
    from strata.tracking.mlflow_api import runs

    parsed: list[int] = []
    real = runs.parse_metrics

    def spy(items: object, field: str) -> Any:
        parsed.append(len(items) if isinstance(items, list) else 0)
        return real(items, field)

    monkeypatch.setattr(runs, "parse_metrics", spy)
    return parsed


def test_a_flood_batch_is_refused_before_any_item_is_parsed(
    env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: a body far past MLflow's batch limits (here 30,000 metrics, 2.6 MB; in the
    review 1.7 million, 63 MB, which held the event loop 5 s before its 401). Without a token,
    with a viewer's, with an editor's: the refusal comes without one metric parsed."""
    from strata.tracking.mlflow_api.hot import MAX_LEAN_BODY

    run_id = env.new_run()
    viewer = env.auth(Role.VIEWER)
    env.http.get(f"{API}/runs/get", params={"run_id": run_id}, headers=viewer)  # use recorded
    flood = {"run_id": run_id, "metrics": [_metric(run_id, i) for i in range(30_000)]}
    small = {"run_id": run_id, "metrics": [_metric(run_id, i) for i in range(1001)]}
    parsed = _parse_spy(monkeypatch)
    url = f"{API}/runs/log-batch"
    for body in (flood, small):
        for headers, status in (({}, 401), (viewer, 403), (env.auth(Role.EDITOR), 400)):
            r = env.http.post(url, json=body, headers=headers)
            assert r.status_code == status, r.text
        n = len(body["metrics"])
        assert r.json()["message"] == (  # MLflow's words
            f"A batch logging request can contain at most 1000 metrics. Got {n} metrics. "
            "Please split up metrics across multiple requests and try again."
        )
    assert parsed == []
    assert len(r.request.content) < MAX_LEAN_BODY < len(orjson.dumps(flood))
    assert env.loss_steps(run_id) == []
    # the lean path still parses (once) what it may serve
    r = env.http.post(url, json={**small, "metrics": small["metrics"][:2]}, headers=viewer)
    assert r.status_code == 403
    r = env.http.post(
        url, json={**small, "metrics": small["metrics"][:3]}, headers=env.auth(Role.EDITOR)
    )
    assert r.status_code == 200, r.text
    assert parsed == [2, 3]  # the viewer's once (its token is looked up only once parsed)


def test_a_tokenless_call_is_left_to_the_regular_route_unparsed(
    env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = env.new_run()
    parsed = _parse_spy(monkeypatch)
    body = {"run_id": run_id, "metrics": [_metric(run_id, i) for i in range(10)]}
    for headers in ({}, {"Authorization": "Bearer not-a-strata-token"}):
        r = env.http.post(f"{API}/runs/log-batch", json=body, headers=headers)
        assert r.status_code == 401, r.text
    assert parsed == []


def test_a_body_past_any_valid_call_goes_to_the_regular_route(env: AppEnv) -> None:
    from strata.tracking.mlflow_api.hot import MAX_LEAN_BODY

    run_id = env.new_run()
    editor = env.auth(Role.EDITOR)
    hot = _hot(env)
    assert 1_500_000 < MAX_LEAN_BODY < 3_000_000
    # valid JSON, just padded: the regular route serves it, the lean path never decodes it
    padded = orjson.dumps({"run_id": run_id, "metrics": [_metric(run_id, 7)]})
    padded = padded[:-1] + b" " * MAX_LEAN_BODY + b"}"
    served = hot.served
    r = env.http.post(
        f"{API}/runs/log-batch",
        content=padded,
        headers={**editor, "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert hot.served == served
    assert env.loss_steps(run_id) == [7]


def test_a_sqlite_uri_query_is_never_part_of_the_file_name(tmp_path: Path) -> None:
    db_file = tmp_path / "db" / "meta.db"
    settings = Settings(home=tmp_path / "home", db_uri=f"sqlite:///{db_file}?timeout=30")
    for env in build_env(settings):
        hot = _hot(env)
        assert hot.path == str(db_file) and hot.available
        run_id = env.new_run()
        editor = env.auth(Role.EDITOR)
        served = hot.served
        for step in (1, 2):
            r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id, step), headers=editor)
            assert r.status_code == 200, r.text
        assert hot.served > served  # the lean path serves (it declined every call before)
        assert env.loss_steps(run_id) == [1, 2]
    assert [p.name for p in db_file.parent.iterdir() if "?" in p.name] == []


@pytest.mark.parametrize(
    "uri",
    ["sqlite://", "sqlite:///:memory:", "sqlite:///{f}?mode=ro&uri=true"],
)
def test_no_lean_path_where_it_cannot_honour_the_uri(tmp_path: Path, uri: str) -> None:
    writer = HotWriter(Database(uri.format(f=tmp_path / "m.db")), cast(Any, None))
    assert not writer.available


def test_a_failure_in_the_lean_path_is_a_500_with_the_request_id(
    env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = env.new_run()
    editor = {**env.auth(Role.EDITOR), "X-Request-ID": "boom-1"}

    def failing(*_: Any) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(HotWriter, "log", failing)
    r = env.http.post(f"{API}/runs/log-metric", json=_metric(run_id), headers=editor)
    assert r.status_code == 500 and r.json()["error_code"] == "INTERNAL_ERROR"
    assert r.headers["x-request-id"] == "boom-1" and "boom-1" in r.json()["message"]
    assert "disk on fire" not in r.text


def _traced(env: AppEnv, route: str, body: dict[str, Any], headers: dict[str, str]) -> list[str]:
    """The statements the lean connection runs while serving one call."""
    seen: list[str] = []
    raw = _hot(env)._connection()
    raw.set_trace_callback(seen.append)
    try:
        r = env.http.post(f"{API}/runs/{route}", json=body, headers=headers)
    finally:
        raw.set_trace_callback(None)
    assert r.status_code == 200, r.text
    return seen


def test_one_select_reads_the_caller_the_run_and_the_audit_head(env: AppEnv) -> None:
    """BEGIN, one read (the token's row, the run's stage, the chain's head), the metric's two
    rows, the audit record and head, COMMIT: three reads were two statements more a call."""
    run_id = env.new_run()
    served = _hot(env).served
    seen = _traced(env, "log-metric", _metric(run_id, 7), env.auth(Role.EDITOR))
    assert _hot(env).served == served + 1
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1, seen
    assert all(table in reads[0] for table in ("gov_tokens", "trk_runs", "gov_audit_head"))
    assert (seen[0], seen[-1], len(seen)) == ("BEGIN IMMEDIATE", "COMMIT", 7), seen
    assert env.loss_steps(run_id) == [7]
    assert env.gov.verify_audit().ok


@pytest.fixture
def open_env(sqlite_settings: Settings) -> Any:
    yield from build_env(sqlite_settings, auth=False)


def test_without_authentication_the_lean_path_reads_the_run_and_head_alike(
    open_env: AppEnv,
) -> None:
    env = open_env
    r = env.http.post(f"{API}/runs/create", json={"experiment_id": "0"})
    run_id = r.json()["run"]["info"]["run_id"]
    served = _hot(env).served
    seen = _traced(env, "log-metric", _metric(run_id, 3), {})
    assert _hot(env).served == served + 1
    assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 1, seen
    missing = "f" * 32  # an unknown run: declined, answered by the regular route
    r = env.http.post(f"{API}/runs/log-metric", json=_metric(missing))
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert _hot(env).served == served + 1
    assert env.loss_steps(run_id) == [3]
    records = [e for e in env.gov.list_audit(action="run.log_batch").items]
    assert [e.resource_id for e in records].count(run_id) == 1
    assert env.gov.verify_audit().ok
