"""Who may do what over REST (editor, approver, viewer tokens against a live server), and
concurrent alias moves on PostgreSQL: no lost history."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LiveServer, start_server
from registry_helpers import exactly as _exactly
from registry_helpers import log_run

from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import PermissionDenied, StrataError
from strata.core.principal import Role


@pytest.fixture
def server(sqlite_settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    settings = sqlite_settings.model_copy(update={"artifact_uri": str(tmp_path / "art")})
    yield from start_server(settings)


def test_roles_over_rest(server: LiveServer) -> None:
    editor = server.client(server.token_for(Role.EDITOR, "eddie"))
    approver = server.client(server.token_for(Role.APPROVER, "ann"))
    viewer = server.client(server.token_for(Role.VIEWER, "vic"))
    try:
        run_id = log_run(editor)
        _exactly(PermissionDenied, viewer.registry.register, "m", run_id)
        mv = editor.registry.register("m", run_id)
        assert mv.created_by == "eddie" and editor.registry.get_model("m").owner == "eddie"
        editor.registry.set_alias("m", "canary", 1, reason="editors move canaries")
        _exactly(PermissionDenied, editor.registry.set_alias, "m", "production", 1)
        req = editor.registry.request_promotion("m", 1, alias="production", reason="ship")
        _exactly(PermissionDenied, editor.registry.approve, req.id)  # not an approver
        _exactly(PermissionDenied, viewer.registry.reject, req.id)
        done = approver.registry.approve(req.id, comment="looks good")
        assert (done.requested_by, done.decided_by) == ("eddie", "ann")
        move = approver.registry.alias_history("m", "production").items[0]
        assert (move.actor, move.to_version, move.request_id) == ("ann", 1, req.id)
        # An approver's own request needs another approver.
        editor.registry.register("m", log_run(editor, c=0.4))
        own = approver.registry.request_promotion("m", 2, alias="production", reason="mine")
        err = _exactly(PermissionDenied, approver.registry.approve, own.id)
        assert "another approver" in err.message
        _exactly(PermissionDenied, editor.registry.update_settings, {"allow_self_approval": True})
        _exactly(PermissionDenied, editor.registry.rollback, "m", "production")
        _exactly(PermissionDenied, editor.registry.delete_alias, "m", "production")
        # Card sections: the owner (eddie) may edit them, another editor may not.
        other = server.client(server.token_for(Role.EDITOR, "otto"))
        _exactly(PermissionDenied, other.registry.update_card, "m", 1, {"notes": "x"})
        editor.registry.update_card("m", 1, {"notes": "by the owner"})
        assert "by the owner" in viewer.registry.card("m", 1)
        other.close()
    finally:
        for c in (editor, approver, viewer):
            c.close()
    # Every change is in the audit log, denied ones included.
    records = server.embedded.governance.list_audit(limit=1000).items
    actions = {(r.action, r.outcome) for r in records}
    assert ("registry.approve", "ok") in actions
    assert ("registry.create_version", "ok") in actions
    assert any(a == "registry.approve" and o != "ok" for a, o in actions)


def test_concurrent_alias_moves_lose_no_history(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", db_uri=pg_url, artifact_uri=str(tmp_path / "a"))
    with Client("", settings=settings) as client:
        reg = client.registry
        run_id = log_run(client)
        for _ in range(3):
            reg.create_version("m", f"runs:/{run_id}/model")
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def mover(worker: int) -> None:
            try:
                barrier.wait()
                for i in range(6):
                    reg.set_alias("m", "canary", 1 + (worker + i) % 3, reason=f"w{worker}-{i}")
            except (StrataError, threading.BrokenBarrierError) as exc:
                errors.append(exc)

        threads = [threading.Thread(target=mover, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        moves = list(reversed(reg.alias_history("m", "canary", max_results=1000).items))
        assert len(moves) == 24
        assert moves[0].from_version is None
        for before, after in itertools.pairwise(moves):
            assert after.from_version == before.to_version, (before, after)
        assert reg.get_version_by_alias("m", "canary").version == moves[-1].to_version
