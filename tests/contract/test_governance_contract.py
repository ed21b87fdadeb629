"""The governance contract: the same tests on the embedded and the remote client.

``client`` runs each test embedded (in-process) and remote (a real server on loopback, called
with an admin token), each on SQLite and PostgreSQL. Errors must arrive as the same class.
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import LiveServer

from strata.backends.context import Backends
from strata.backends.db import Database
from strata.client import Client
from strata.core.clock import utcnow
from strata.core.config import Settings
from strata.core.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    StrataError,
    Unauthenticated,
)
from strata.core.principal import Permission, Principal, Role
from strata.governance.embedded import EmbeddedGovernance
from strata.governance.models import AuditCheckpoint, AuditKeysRebuilt, User
from strata.governance.tables import TokenRow

INVALID_NAMES = [
    "",
    "a b",
    "-lead",
    ".dot",
    "_under",
    "x" * 65,
    "semi;colon",
    "slash/name",
    "quote'",
    "tab\tname",
    "new\nline",
    "ümlaut",
]


def _raises_exactly(cls: type[StrataError], fn: object, *args: object, **kw: object) -> StrataError:
    """Call ``fn`` and return the error, which must be exactly ``cls`` (not a subclass)."""
    assert callable(fn)
    with pytest.raises(StrataError) as info:
        fn(*args, **kw)
    assert type(info.value) is cls, f"expected {cls.__name__}, got {info.value!r}"
    assert info.value.message  # a sentence, never empty
    return info.value


@pytest.fixture
def db(settings: Settings) -> Database:
    """Direct access to the metadata database the client works on (to inspect rows)."""
    database = Database(settings.db_uri)
    database.upgrade()
    return database


def test_whoami_and_user_lifecycle(client: Client) -> None:
    gov = client.governance
    me = gov.whoami()
    assert me.role is Role.ADMIN
    if client.is_remote:
        assert me.name == "admin" and me.user_id
    else:
        assert me.name and me.user_id is None  # the local OS user, not a stored user

    before = utcnow() - timedelta(seconds=5)
    alice = gov.create_user("alice", "editor")
    assert isinstance(alice, User)
    assert (alice.name, alice.role, alice.disabled) == ("alice", Role.EDITOR, False)
    assert alice.created_by == gov.whoami().name
    assert before <= alice.created_at <= utcnow() + timedelta(seconds=5)
    assert alice.created_at.utcoffset() == timedelta(0)
    assert gov.get_user("alice") == alice

    gov.create_user("bob@example.org", Role.VIEWER)
    gov.create_user("carol.c_d-e", "admin")
    gov.create_user("A" * 64)  # default role, longest name
    names = [u.name for u in gov.list_users()]
    assert names == sorted(names)
    assert {"alice", "bob@example.org", "carol.c_d-e", "A" * 64} <= set(names)
    assert gov.get_user("A" * 64).role is Role.VIEWER

    promoted = gov.update_user("alice", role=Role.APPROVER)
    assert promoted.role is Role.APPROVER and promoted.id == alice.id
    disabled = gov.disable_user("alice")
    assert disabled.disabled and disabled.role is Role.APPROVER
    assert gov.get_user("alice").disabled
    enabled = gov.update_user("alice", disabled=False, role="viewer")
    assert not enabled.disabled and enabled.role is Role.VIEWER
    unchanged = gov.update_user("alice")
    assert unchanged == enabled


def test_invalid_names_and_roles(client: Client) -> None:
    gov = client.governance
    for name in INVALID_NAMES:
        err = _raises_exactly(InvalidInput, gov.create_user, name, "viewer")
        assert err.details.get("field") == "name", name
    assert [u.name for u in gov.list_users() if u.name != "admin"] == []
    for role in ("superuser", "", "Admin ", "root"):
        err = _raises_exactly(InvalidInput, gov.create_user, "dave", role)
        assert err.details.get("field") == "role"
        assert "viewer, editor, approver, admin" in err.message
    gov.create_user("dave")
    err = _raises_exactly(InvalidInput, gov.update_user, "dave", role="owner")
    assert "'owner'" in err.message
    assert gov.get_user("dave").role is Role.VIEWER


def test_duplicates_and_missing(client: Client) -> None:
    gov = client.governance
    gov.create_user("erin", "editor")
    err = _raises_exactly(AlreadyExists, gov.create_user, "erin", "viewer")
    assert "erin" in err.message
    assert gov.get_user("erin").role is Role.EDITOR  # the failed call changed nothing

    for call, args, kw in [
        (gov.get_user, ("nobody",), {}),
        (gov.update_user, ("nobody",), {"role": "editor"}),
        (gov.disable_user, ("nobody",), {}),
        (gov.create_token, ("nobody",), {}),
        (gov.list_tokens, ("nobody",), {}),
        (gov.revoke_token, ("0" * 32,), {}),
    ]:
        err = _raises_exactly(NotFound, call, *args, **kw)
        assert "nobody" in err.message or "0" * 32 in err.message

    failed = gov.list_audit(action="user.create", limit=10_000).items
    assert [r.outcome for r in failed if r.resource_id == "erin"] == [
        "ok",
        "error:RESOURCE_ALREADY_EXISTS",
    ]


def test_tokens_shown_once_and_stored_as_digests(client: Client, db: Database) -> None:
    gov = client.governance
    gov.create_user("frank", "editor")
    new = gov.create_token("frank", name="laptop")
    secret = new.secret
    assert secret.startswith("strata_") and len(secret) >= 40
    info = new.info
    assert (info.user, info.name, info.revoked_at, info.expires_at) == (
        "frank",
        "laptop",
        None,
        None,
    )
    assert info.prefix == secret[: len(info.prefix)] and len(info.prefix) < 16
    assert info.active

    second = gov.create_token("frank")
    assert second.secret != secret

    listed = gov.list_tokens("frank")
    assert [t.id for t in listed] == [info.id, second.info.id]
    assert all(secret not in t.model_dump_json() for t in listed)
    assert all(second.secret not in t.model_dump_json() for t in gov.list_tokens())
    assert not hasattr(listed[0], "secret")

    with db.read() as session:
        row = session.get(TokenRow, info.id)
        assert row is not None
        stored = [str(v) for v in (row.digest, row.prefix, row.name)]
        assert row.digest != secret
        assert row.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in v for v in stored)
    audit_text = " ".join(r.model_dump_json() for r in gov.list_audit(limit=10_000).items)
    assert secret not in audit_text

    revoked = gov.revoke_token(info.id)
    assert revoked.revoked_at is not None and not revoked.active
    again = gov.revoke_token(info.id)  # idempotent: the first revocation time stays
    assert again.revoked_at == revoked.revoked_at
    by_id = {t.id: t for t in gov.list_tokens("frank")}
    assert by_id[info.id].revoked_at is not None
    assert by_id[second.info.id].active

    auth = EmbeddedGovernance(Backends.around(db))
    with pytest.raises(Unauthenticated):
        auth.authenticate(secret)
    assert auth.authenticate(second.secret).name == "frank"


def test_service_tokens_may_only_predict(client: Client, db: Database) -> None:
    """``scope="predict"``: a service token, whatever its user's role, carries the predict
    permission only (its principal's role reads as the least, viewer)."""
    gov = client.governance
    gov.create_user("svc-owner", "admin")
    new = gov.create_token("svc-owner", name="app", scope="predict")
    assert new.info.scope == "predict"
    assert [t.scope for t in gov.list_tokens("svc-owner")] == ["predict"]
    plain = gov.create_token("svc-owner")
    assert plain.info.scope is None
    with pytest.raises(InvalidInput, match="scope"):
        gov.create_token("svc-owner", scope="admin")
    auth = EmbeddedGovernance(Backends.around(db))
    service = auth.authenticate(new.secret)
    assert service.can(Permission.PREDICT)
    assert not any(service.can(p) for p in (Permission.READ, Permission.WRITE, Permission.ADMIN))
    assert service.role is Role.VIEWER and service.name == "svc-owner"
    assert auth.authenticate(plain.secret).can(Permission.ADMIN)
    created = gov.list_audit(action="token.create", limit=10).items
    assert any(r.details.get("scope") == "predict" for r in created)
    # a scope this release does not know (a newer one wrote it) grants nothing
    unknown = Principal("svc-owner", Role.ADMIN, scope="train")
    assert not any(unknown.can(p) for p in Permission)


def test_token_expiry(client: Client, db: Database) -> None:
    gov = client.governance
    gov.create_user("gina", "viewer")
    for bad in (0, -1.5, 1e308, 1e-300):
        err = _raises_exactly(InvalidInput, gov.create_token, "gina", expires_in_days=bad)
        assert err.details.get("field") == "expires_in_days"
    _raises_exactly(InvalidInput, gov.create_token, "gina", name="n" * 129)

    new = gov.create_token("gina", expires_in_days=2)
    assert new.info.expires_at is not None
    lifetime = new.info.expires_at - new.info.created_at
    assert abs(lifetime - timedelta(days=2)) < timedelta(seconds=1)
    assert new.info.active

    auth = EmbeddedGovernance(Backends.around(db))
    assert auth.authenticate(new.secret).name == "gina"
    if client.is_remote:
        assert client.uri is not None
        with Client(client.uri, token=new.secret) as as_gina:
            assert as_gina.governance.whoami().name == "gina"

    with db.write() as session:  # let the token run out without waiting two days
        row = session.get(TokenRow, new.info.id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    with pytest.raises(Unauthenticated):
        auth.authenticate(new.secret)
    (listed,) = gov.list_tokens("gina")
    assert not listed.active and listed.revoked_at is None
    if client.is_remote:
        assert client.uri is not None
        with Client(client.uri, token=new.secret) as as_gina:
            _raises_exactly(Unauthenticated, as_gina.governance.whoami)


def test_audit_records_filters_and_verify(client: Client) -> None:
    gov = client.governance
    me = gov.whoami().name
    gov.create_user("hank", "editor")
    gov.create_user("ivy", "viewer")
    time.sleep(0.02)
    since = utcnow()
    time.sleep(0.02)
    token = gov.create_token("hank", name="ci")
    gov.disable_user("ivy")
    time.sleep(0.02)
    before_revoke = utcnow()
    time.sleep(0.02)
    gov.revoke_token(token.info.id)

    everything = gov.list_audit(limit=10_000).items
    seqs = [r.seq for r in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    mine = gov.list_audit(actor=me, limit=10_000).items
    actions = [r.action for r in mine]
    assert actions[-5:] == [
        "user.create",
        "user.create",
        "token.create",
        "user.disable",
        "token.revoke",
    ]
    assert gov.list_audit(actor="nobody-at-all").items == []

    created = gov.list_audit(action="user.create").items
    assert {r.resource_id for r in created} >= {"hank", "ivy"}
    assert all(r.action == "user.create" and r.resource_type == "user" for r in created)
    assert {r.action for r in gov.list_audit(action="token.*").items} == {
        "token.create",
        "token.revoke",
    }
    recent = gov.list_audit(since=since).items
    assert [r.action for r in recent] == ["token.create", "user.disable", "token.revoke"]
    assert all(r.ts >= since - timedelta(milliseconds=1) for r in recent)
    assert gov.list_audit(since=utcnow() + timedelta(hours=1)).items == []
    window = gov.list_audit(since=since, until=before_revoke).items
    assert [r.action for r in window] == ["token.create", "user.disable"]
    assert all(since <= r.ts <= before_revoke for r in window)
    assert gov.list_audit(until=since - timedelta(hours=1)).items == []
    tokens = gov.list_audit(resource_type="token", since=since).items
    assert [r.action for r in tokens] == ["token.create", "token.revoke"]

    first_two = gov.list_audit(limit=2).items
    assert [r.seq for r in first_two] == seqs[:2]
    assert [r.seq for r in gov.list_audit(after_seq=seqs[-2]).items] == [seqs[-1]]
    paged, cursor = [], None  # pages of 3 with their tokens walk the whole log once
    while True:
        page = gov.list_audit(limit=3, page_token=cursor)
        assert len(page.items) <= 3
        paged += [r.seq for r in page.items]
        cursor = page.next_page_token
        if cursor is None:
            break
    assert paged == seqs
    last = gov.list_audit(limit=len(seqs))
    assert last.next_page_token is None and len(last.items) == len(seqs)
    _raises_exactly(InvalidInput, gov.list_audit, page_token="not-a-token")
    _raises_exactly(InvalidInput, gov.list_audit, limit=0)

    (tok_create,) = [r for r in recent if r.action == "token.create"]
    assert tok_create.resource_id == token.info.id
    assert tok_create.details == {"user": "hank"}
    assert tok_create.outcome == "ok"
    assert tok_create.actor == me
    by_seq = {r.seq: r for r in gov.list_audit(limit=10_000).items}
    assert tok_create.prev_hash == by_seq[tok_create.seq - 1].hash, "records link by hash"
    assert all(by_seq[s].prev_hash == by_seq[s - 1].hash for s in by_seq if s - 1 in by_seq)
    assert len({r.hash for r in by_seq.values()}) == len(by_seq)
    if client.is_remote:
        assert all(r.request_id for r in recent), "REST calls carry their request id"

    result = gov.verify_audit()
    assert result.ok, result.reason
    assert result.checked == len(everything)
    assert result.first_broken_seq is None


def test_token_expiry_edge_values_over_raw_http_are_400(live_server: LiveServer) -> None:
    """1e308 overflowed timedelta (500); "NaN" too; 1e-300 made a token that never expired."""
    import httpx

    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    live_server.embedded.governance.create_user("hank", "viewer")
    with httpx.Client(base_url=live_server.url, headers=headers) as http:
        for bad in ("1e308", '"NaN"', "1e-300", '"Infinity"'):
            body = f'{{"user": "hank", "expires_in_days": {bad}}}'
            r = http.post(
                "/api/v1/tokens", content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["details"]["field"] == "expires_in_days"


def test_audit_checkpoint_is_a_typed_signed_head(client: Client) -> None:
    """checkpoint_audit returns the same model embedded and remote: the head it signed."""
    gov = client.governance
    gov.create_user("kim", "viewer")
    head = gov.list_audit(limit=10_000).items[-1]
    done = gov.checkpoint_audit()
    assert isinstance(done, AuditCheckpoint)
    assert (done.seq, done.hash) == (head.seq, head.hash)
    assert done.path == f"audit/checkpoints/{head.seq:016d}.json"
    assert len(done.mac) == 64 and done.ts_ms > 0
    assert gov.verify_audit().ok


def test_rebuilding_the_audit_keys_is_typed_audited_and_keeps_the_chain(
    client: Client, db: Database
) -> None:
    """rebuild_audit_keys, embedded and remote: the keys copied again from the records (the
    repair for a keys table verify reports edited), itself audited, the chain intact."""
    gov = client.governance
    gov.create_user("lee", "viewer")
    with db.write() as session:  # a key edited outside Strata (every record copied first)
        session.execute(
            sa.text("INSERT INTO gov_audit_keys SELECT seq, ts_ms, actor, action FROM gov_audit")
        )
        session.execute(sa.text("UPDATE gov_audit_keys SET actor = 'nobody'"))
    assert not gov.verify_audit().ok
    done = gov.rebuild_audit_keys()
    assert isinstance(done, AuditKeysRebuilt)
    assert done.keys_copied == done.copied_through_seq == 0  # fewer records than one copy
    assert gov.verify_audit().ok
    last = gov.list_audit(limit=10_000).items[-1]
    assert (last.action, last.details) == (
        "audit.rebuild_keys",
        {"keys_copied": 0, "copied_through_seq": 0},
    )
    assert [r.resource_id for r in gov.list_audit(action="user.create").items][-1] == "lee"
