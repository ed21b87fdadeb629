"""Registered SQL connections (issue 7, item 1): admin-only, audited, stored encrypted, never
returned; over REST, SQL ingestion names one and a raw database URL is refused."""

from __future__ import annotations

import os
import stat

import httpx
import pytest
import sqlalchemy as sa
from conftest import LiveServer

from strata.client import Client
from strata.core.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    PermissionDenied,
    StrataError,
    Unavailable,
)

PASSWORD = "pgHunter2secret"


def _exactly(cls: type[StrataError], fn: object, *args: object, **kw: object) -> StrataError:
    assert callable(fn)
    with pytest.raises(StrataError) as info:
        fn(*args, **kw)
    assert type(info.value) is cls, f"expected {cls.__name__}, got {info.value!r}"
    return info.value


def _with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def test_register_list_remove(client: Client, postgres_base_url: str) -> None:
    gov = client.governance
    made = gov.create_connection("warehouse", _with_password(postgres_base_url))
    assert made.name == "warehouse" and made.driver == "postgresql"
    assert PASSWORD not in made.model_dump_json() and ":***@" in made.url
    listed = gov.list_connections()
    assert [c.name for c in listed] == ["warehouse"]
    assert PASSWORD not in str([c.model_dump_json() for c in listed])
    _exactly(AlreadyExists, gov.create_connection, "warehouse", postgres_base_url)
    _exactly(InvalidInput, gov.create_connection, "../etc", postgres_base_url)
    _exactly(InvalidInput, gov.create_connection, "x", "not a url")
    records = gov.list_audit(action="connection.*").items
    assert [r.outcome for r in records] == ["ok", "error"]  # the duplicate is recorded too
    assert records[0].details == {"url": made.url}
    assert PASSWORD not in str([r.model_dump_json() for r in records])
    gov.delete_connection("warehouse")
    _exactly(NotFound, gov.delete_connection, "warehouse")
    assert gov.list_connections() == []


def test_connections_are_admin_only(live_server: LiveServer, postgres_base_url: str) -> None:
    editor = live_server.client(live_server.token_for("editor")).governance
    _exactly(PermissionDenied, editor.create_connection, "mine", postgres_base_url)
    _exactly(PermissionDenied, editor.list_connections)
    _exactly(PermissionDenied, editor.delete_connection, "mine")


def test_rest_sql_ingest_names_a_connection_never_a_url(
    live_server: LiveServer, postgres_base_url: str
) -> None:
    editor_token = live_server.token_for("editor")
    headers = {"Authorization": f"Bearer {editor_token}"}
    with httpx.Client(base_url=live_server.url, headers=headers) as http:
        # The attack: the server's own PostgreSQL, as its superuser.
        for url in (
            postgres_base_url,
            "postgresql+psycopg://postgres@/postgres?host=/var/run/postgresql",
        ):
            r = http.post(
                "/api/v1/data/datasets/stolen/ingest",
                json={"source": "SELECT rolname FROM pg_roles", "sql_url": url},
            )
            assert r.status_code == 400, r.text
            assert r.json()["details"]["field"] == "sql_url"
            assert "connection" in r.json()["message"]
        r = http.post(
            "/api/v1/data/datasets/x/ingest",
            json={"source": "SELECT 1 AS one", "connection": "nope"},
        )
        assert r.status_code == 404 and "not registered" in r.json()["message"]
    live_server.client().governance.create_connection("wh", _with_password(postgres_base_url))
    editor = live_server.client(editor_token).data
    result = editor.ingest("SELECT 1 AS one, 'a' AS two", "fromsql", connection="wh")
    assert result.rows == 1
    source = editor.get_version("fromsql").source
    assert source.get("connection") == "wh" and PASSWORD not in str(source)
    _exactly(InvalidInput, editor.ingest, "SELECT 1", "raw", sql_url=postgres_base_url)


def test_stored_url_is_encrypted_and_key_file_is_private(
    embedded: Client, postgres_base_url: str
) -> None:
    gov = embedded.governance
    gov.create_connection("enc", _with_password(postgres_base_url))
    db = embedded.backends.db
    with db.read() as s:
        blob = s.execute(sa.text("SELECT secret FROM gov_connections")).scalar_one()
    assert PASSWORD.encode() not in bytes(blob) and b"postgres" not in bytes(blob)
    key_file = embedded.backends.settings.home / "secret.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    # Embedded: a connection name works like sql_url.
    assert embedded.data.ingest("SELECT 2 AS two", "viaconn", connection="enc").rows == 1
    # Another key cannot decrypt it: a clear error, not garbage.
    from pydantic import SecretStr

    from strata.backends.keys import KeyRing

    db.keys = KeyRing(embedded.backends.settings.home, None, SecretStr("another key"))
    _exactly(Unavailable, embedded.data.ingest, "SELECT 1", "other", connection="enc")


def test_a_world_readable_key_file_is_refused(embedded: Client) -> None:
    from strata.backends.keys import KeyRing

    home = embedded.backends.settings.home
    home.mkdir(parents=True, exist_ok=True)
    (home / "secret.key").write_text("00" * 32)
    os.chmod(home / "secret.key", 0o644)
    with pytest.raises(Unavailable, match="chmod 600"):
        _ = KeyRing(home, None, None).secret
