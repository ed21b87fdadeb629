"""First start: one admin and one token, once; STRATA_ADMIN_TOKEN honoured; authentication."""

from __future__ import annotations

import hashlib

import pytest

from strata.backends.context import Backends
from strata.backends.db import Database
from strata.core.errors import InvalidInput, Unauthenticated
from strata.core.principal import Role
from strata.governance.embedded import EmbeddedGovernance, token_digest


@pytest.fixture
def gov(gov_db: Database) -> EmbeddedGovernance:
    return EmbeddedGovernance(Backends.around(gov_db))


def test_first_start_creates_admin_and_token_once(gov: EmbeddedGovernance) -> None:
    assert not gov.has_admin()
    new = gov.bootstrap_admin()
    assert new is not None
    assert new.info.user == "admin" and new.info.name == "bootstrap"
    principal = gov.authenticate(new.secret)
    assert (principal.name, principal.role) == ("admin", Role.ADMIN)
    assert principal.token_id == new.info.id
    assert gov.has_admin()
    # second start: nothing new
    assert gov.bootstrap_admin() is None
    assert [u.name for u in gov.list_users()] == ["admin"]
    assert len(gov.list_tokens()) == 1
    actions = [r.action for r in gov.list_audit().items]
    assert actions == ["user.create", "token.create"]


def test_admin_token_from_settings_is_honoured(gov: EmbeddedGovernance) -> None:
    secret = "strata_" + "k" * 40
    new = gov.bootstrap_admin(secret=secret)
    assert new is not None and new.secret == secret
    assert gov.authenticate(secret).name == "admin"
    (info,) = gov.list_tokens("admin")
    assert info.prefix == secret[: len(info.prefix)]
    # a later start with another STRATA_ADMIN_TOKEN does not add it
    assert gov.bootstrap_admin(secret="strata_" + "z" * 40) is None
    with pytest.raises(Unauthenticated):
        gov.authenticate("strata_" + "z" * 40)


@pytest.mark.parametrize("bad", ["short", "strata_tooshort", "x" * 60, "strata" + "_" * 3])
def test_weak_admin_token_is_refused(gov: EmbeddedGovernance, bad: str) -> None:
    with pytest.raises(InvalidInput, match="STRATA_ADMIN_TOKEN") as info:
        gov.bootstrap_admin(secret=bad)
    assert bad not in info.value.message  # never echo a secret
    assert info.value.details == {"field": "admin_token"}


def test_existing_disabled_admin_is_restored(gov: EmbeddedGovernance) -> None:
    gov.create_user("admin", "viewer")
    gov.create_user("other", "editor")
    new = gov.bootstrap_admin()
    assert new is not None
    user = gov.get_user("admin")
    assert user.role is Role.ADMIN and not user.disabled
    gov.disable_user("admin")
    assert not gov.has_admin()  # a disabled admin does not count
    again = gov.bootstrap_admin()
    assert again is not None and again.secret != new.secret
    assert not gov.get_user("admin").disabled


def test_authenticate_rejects_everything_but_a_live_token(gov: EmbeddedGovernance) -> None:
    gov.create_user("kim", "editor")
    new = gov.create_token("kim")
    assert gov.authenticate(new.secret).role is Role.EDITOR
    messages = set()
    for bad in ("", "strata_", new.secret + "x", new.secret[:-1], "Bearer " + new.secret):
        with pytest.raises(Unauthenticated) as info:
            gov.authenticate(bad)
        messages.add(info.value.message)
    gov.revoke_token(new.info.id)
    with pytest.raises(Unauthenticated) as info:
        gov.authenticate(new.secret)
    messages.add(info.value.message)
    other = gov.create_token("kim")
    gov.disable_user("kim")
    with pytest.raises(Unauthenticated) as info:
        gov.authenticate(other.secret)
    messages.add(info.value.message)
    assert len(messages) == 1  # one answer for every failure: tokens cannot be probed


def test_token_digest_is_sha256_hex() -> None:
    digest = token_digest("strata_abc")
    assert digest == hashlib.sha256(b"strata_abc").hexdigest()
    assert token_digest("strata_abc") == digest
    assert token_digest("strata_abd") != digest


def test_last_used_is_recorded_at_most_once_a_minute(gov: EmbeddedGovernance) -> None:
    gov.create_user("carol", Role.VIEWER)
    new = gov.create_token("carol")
    assert gov.list_tokens("carol")[0].last_used_at is None
    gov.authenticate(new.secret)
    first = gov.list_tokens("carol")[0].last_used_at
    assert first is not None
    gov.authenticate(new.secret)  # within the minute: no new write
    assert gov.list_tokens("carol")[0].last_used_at == first
