"""Issue 7, item 7: refused ingests, failed transforms (sandbox refusals) and 401/403s are in
the audit log, and a flood of refusals is rate-limited instead of flooding it."""

from __future__ import annotations

import pytest

from strata.core.principal import Role
from strata.governance.events import EventLimiter
from strata.governance.models import AuditRecord

from .conftest import AppEnv


def _records(env: AppEnv, action: str) -> list[AuditRecord]:
    return [r for r in env.gov.list_audit(limit=10_000).items if r.action == action]


def _seed(env: AppEnv) -> None:
    r = env.http.post(
        "/api/v1/data/datasets/t/rows", json=[{"a": 1}], headers=env.auth(Role.EDITOR)
    )
    assert r.status_code == 201, r.text


def test_a_refused_ingest_is_audited_with_who_and_the_masked_source(env: AppEnv) -> None:
    ed = env.auth(Role.EDITOR)
    # refused by the router before the service runs: a local path, a raw database URL
    r = env.http.post("/api/v1/data/datasets/x/ingest", json={"source": "/etc/passwd"}, headers=ed)
    assert r.status_code == 400
    r = env.http.post(
        "/api/v1/data/datasets/y/ingest",
        json={"source": "SELECT 1", "sql_url": "postgresql://u:hunter2@127.0.0.1/db"},
        headers=ed,
    )
    assert r.status_code == 400
    # refused by request validation (no source at all)
    r = env.http.post("/api/v1/data/datasets/z/ingest", json={}, headers=ed)
    assert r.status_code == 400
    # refused by the service: rows that are not a JSON array of objects
    r = env.http.post("/api/v1/data/datasets/w/rows", json=[1, 2], headers=ed)
    assert r.status_code == 400
    failed = [r for r in _records(env, "data.ingest") if r.outcome != "ok"]
    by_name = {r.resource_id: r for r in failed}
    assert set(by_name) == {"x", "y", "z", "w"}, failed
    for rec in failed:
        assert rec.actor == env.users[Role.EDITOR]
        assert rec.outcome.startswith("error:")
    assert by_name["z"].details["fields"] == ["source"]
    assert "hunter2" not in str([r.details for r in failed])
    assert env.gov.verify_audit().ok


def test_every_sandbox_refusal_of_a_transform_is_audited(env: AppEnv) -> None:
    _seed(env)
    attempts = [
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "SELECT * FROM t; DROP TABLE t",
        "ATTACH '/tmp/evil.db' AS e",
        "SELECT * FROM read_csv('/etc/passwd')",
    ]
    for sql in attempts:
        r = env.http.post(
            "/api/v1/data/transforms",
            json={"inputs": ["t"], "output": "o", "sql": sql},
            headers=env.auth(Role.EDITOR),
        )
        assert r.status_code == 400, (sql, r.text)
    failed = _records(env, "data.transform")
    assert len(failed) == len(attempts), failed
    import hashlib

    assert [r.details["sql_sha256"] for r in failed] == [
        hashlib.sha256(sql.encode()).hexdigest() for sql in attempts
    ]
    assert all(r.outcome.startswith("error:") and r.resource_id == "o" for r in failed)
    assert all(r.details["inputs"] == ["t"] for r in failed)


def test_401_and_403_are_security_events_one_per_caller_and_route(env: AppEnv) -> None:
    for _ in range(50):  # a flood: one record, the rest counted
        assert env.http.get("/api/v1/users").status_code == 401
        r = env.http.get("/api/v1/users", headers={"Authorization": "Bearer strata_nope"})
        assert r.status_code == 401
        assert env.http.get("/api/v1/users", headers=env.auth(Role.VIEWER)).status_code == 403
    unauth = [r for r in env.gov.list_audit(limit=10_000).items if r.outcome == "unauthenticated"]
    assert len(unauth) == 1, unauth  # both anonymous callers share the peer address
    assert unauth[0].actor == "anonymous@127.0.0.1"
    assert unauth[0].action == "GET /api/v1/users"
    denied = [r for r in env.gov.list_audit(limit=10_000).items if r.outcome == "denied"]
    assert len(denied) == 1, denied
    assert denied[0].actor == env.users[Role.VIEWER]
    assert denied[0].details["needed"] == "admin"
    # a different route is a different key
    assert env.http.get("/api/v1/runs/nope").status_code == 401
    unauth = [r for r in env.gov.list_audit(limit=10_000).items if r.outcome == "unauthenticated"]
    assert len(unauth) == 2


def test_the_next_window_carries_the_count_of_what_was_suppressed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("strata.governance.events.time.monotonic", lambda: clock[0])
    limiter = EventLimiter(window=60.0, burst=2)
    key = ("mallory", "GET /x")
    assert [limiter.admit(key) for _ in range(5)] == [0, 0, None, None, None]
    assert limiter.admit(("alice", "GET /x")) == 0
    clock[0] += 61
    assert limiter.admit(key) == 3  # the next record says 3 were not written
    assert limiter.admit(key) == 0
    assert limiter.admit(key) is None
