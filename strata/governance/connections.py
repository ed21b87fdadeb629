"""Registered SQL connections: the only databases a server runs ingestion queries on.

An admin registers ``NAME → URL`` (``strata connections add``); over REST, SQL ingestion names
the connection and never carries a URL, so an editor cannot point the server at a database
on its own machine. The URL is stored encrypted with AES-256-GCM under the key from
:class:`strata.backends.keys.KeyRing` (outside the database), with the connection's name as
associated data, so a ciphertext moved to another name does not decrypt. Listing shows the
URL with its password masked; the URL itself never leaves the process.
"""

from __future__ import annotations

import os
import re

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.exc import IntegrityError

from strata.backends.db import Database
from strata.core.clock import utcnow
from strata.core.config import redact_uri
from strata.core.errors import AlreadyExists, InvalidInput, NotFound, Unavailable
from strata.core.principal import current
from strata.governance import audit
from strata.governance.models import Connection
from strata.governance.tables import ConnectionRow

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidInput(
            f"Connection name {name!r} is invalid: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            details={"field": "name"},
        )


def check_url(url: str) -> str:
    """The driver scheme of a SQLAlchemy URL (``postgresql``, ``mysql``...); InvalidInput for
    anything that is not a database URL."""
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if not scheme or not re.fullmatch(r"[a-z][a-z0-9]*", scheme):
        raise InvalidInput(
            "A connection URL is a SQLAlchemy URL such as "
            "postgresql+psycopg://user:password@host:5432/db",
            details={"field": "url"},
        )
    return scheme


def _cipher(db: Database) -> AESGCM:
    return AESGCM(db.keys.secret)


def create(db: Database, name: str, url: str) -> Connection:
    """Register ``name``; AlreadyExists if taken. Audited (the masked URL only)."""
    _check_name(name)
    scheme = check_url(url)
    nonce = os.urandom(12)
    sealed = nonce + _cipher(db).encrypt(nonce, url.encode(), name.encode())
    shown = redact_uri(url)
    row = ConnectionRow(
        name=name,
        driver=scheme,
        url_masked=shown[:512],
        secret=sealed,
        created_by=current().principal.name[:64],
        created_at=utcnow(),
    )
    try:
        with audit.audited(
            db, "connection.create", "connection", name, details={"url": shown}
        ) as scope:
            scope.session.add(row)
            scope.session.flush()
    except IntegrityError:
        raise AlreadyExists(
            f"Connection {name!r} already exists; remove it first to replace it",
            details={"name": name},
        ) from None
    return _model(row)


def _model(row: ConnectionRow) -> Connection:
    return Connection(
        name=row.name,
        driver=row.driver,
        url=row.url_masked,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def list_all(db: Database) -> list[Connection]:
    with db.read() as s:
        rows = s.scalars(sa.select(ConnectionRow).order_by(ConnectionRow.name)).all()
        return [_model(r) for r in rows]


def delete(db: Database, name: str) -> None:
    """Remove ``name``; NotFound if absent. Audited."""
    with audit.audited(db, "connection.delete", "connection", name) as scope:
        row = scope.session.get(ConnectionRow, name)
        if row is None:
            raise NotFound(f"Connection {name!r} does not exist", details={"name": name})
        scope.session.delete(row)


def resolve(db: Database, name: str) -> str:
    """The decrypted URL of ``name`` (for the process's own use; never returned over REST).

    NotFound lists what is registered; Unavailable when the key changed since it was stored.
    """
    with db.read() as s:
        row = s.get(ConnectionRow, name)
        if row is None:
            known = s.scalars(sa.select(ConnectionRow.name).order_by(ConnectionRow.name)).all()
            raise NotFound(
                f"Connection {name!r} is not registered; registered: "
                f"{', '.join(known) or 'none'}. An admin adds one with "
                "`strata connections add NAME URL`",
                details={"field": "connection", "connection": name},
            )
        sealed = bytes(row.secret)
    try:
        return _cipher(db).decrypt(sealed[:12], sealed[12:], name.encode()).decode()
    except InvalidTag:
        raise Unavailable(
            f"Connection {name!r} cannot be decrypted: the secret key (STRATA_SECRET_KEY or "
            "secret.key in STRATA_HOME) is not the one it was stored with; register it again",
            details={"connection": name},
        ) from None
