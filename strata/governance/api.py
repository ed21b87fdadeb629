"""REST routes of the governance layer (``/api/v1/users|tokens|audit|whoami``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from strata.core.page import Page
from strata.governance.models import (
    AuditCheckpoint,
    AuditKeysRebuilt,
    AuditRecord,
    AuditVerification,
    Connection,
    NewToken,
    TokenInfo,
    User,
    WhoAmI,
)
from strata.governance.routing import ADMIN, READ, service
from strata.governance.service import GovernanceService

router = APIRouter(prefix="/api/v1", tags=["governance"])


def _svc(request: Request) -> GovernanceService:
    svc: GovernanceService = service(request, "governance", GovernanceService)
    return svc


class CreateUser(BaseModel):
    name: str
    role: str = "viewer"


class UpdateUser(BaseModel):
    role: str | None = None
    disabled: bool | None = None


class CreateToken(BaseModel):
    user: str
    name: str = ""
    expires_in_days: float | None = None
    scope: str | None = None
    """``predict``: a service token (it may only predict); none: the user's role."""


class CreateConnection(BaseModel):
    name: str
    url: str


@router.post("/connections", dependencies=ADMIN, status_code=201)
def create_connection(body: CreateConnection, request: Request) -> Connection:
    """Register a SQL connection; the response (like every listing) masks the password."""
    return _svc(request).create_connection(body.name, body.url)


@router.get("/connections", dependencies=ADMIN)
def list_connections(request: Request) -> dict[str, list[Connection]]:
    return {"connections": _svc(request).list_connections()}


@router.delete("/connections/{name}", dependencies=ADMIN, status_code=204)
def delete_connection(name: str, request: Request) -> Response:
    _svc(request).delete_connection(name)
    return Response(status_code=204)


@router.get("/whoami", dependencies=READ)
def whoami(request: Request) -> WhoAmI:
    return _svc(request).whoami()


@router.post("/users", dependencies=ADMIN, status_code=201)
def create_user(body: CreateUser, request: Request) -> User:
    return _svc(request).create_user(body.name, body.role)


@router.get("/users", dependencies=ADMIN)
def list_users(request: Request) -> dict[str, list[User]]:
    return {"users": _svc(request).list_users()}


@router.get("/users/{name}", dependencies=ADMIN)
def get_user(name: str, request: Request) -> User:
    return _svc(request).get_user(name)


@router.patch("/users/{name}", dependencies=ADMIN)
def update_user(name: str, body: UpdateUser, request: Request) -> User:
    return _svc(request).update_user(name, role=body.role, disabled=body.disabled)


@router.post("/tokens", dependencies=ADMIN, status_code=201)
def create_token(body: CreateToken, request: Request) -> NewToken:
    return _svc(request).create_token(
        body.user, name=body.name, expires_in_days=body.expires_in_days, scope=body.scope
    )


@router.get("/tokens", dependencies=ADMIN)
def list_tokens(request: Request, user: str | None = None) -> dict[str, list[TokenInfo]]:
    return {"tokens": _svc(request).list_tokens(user)}


@router.delete("/tokens/{token_id}", dependencies=ADMIN)
def revoke_token(token_id: str, request: Request) -> TokenInfo:
    return _svc(request).revoke_token(token_id)


@router.get("/audit", dependencies=ADMIN)
def list_audit(
    request: Request,
    actor: str | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(100, ge=1, le=10_000),
    page_token: str | None = None,
    after_seq: int = Query(
        0, ge=0, le=2**63 - 1, description="Older spelling of page_token; still honoured."
    ),
) -> dict[str, Any]:
    """Records oldest first, ``limit`` per page; ``next_page_token`` (when more records
    match) is the ``page_token`` of the next page."""
    page: Page[AuditRecord] = _svc(request).list_audit(
        actor=actor,
        action=action,
        resource_type=resource_type,
        since=since,
        until=until,
        limit=limit,
        page_token=page_token,
        after_seq=after_seq,
    )
    return {"records": page.items, "next_page_token": page.next_page_token}


@router.post("/audit/checkpoint", dependencies=ADMIN)
def checkpoint_audit(request: Request) -> AuditCheckpoint | None:
    """Sign the chain head into the artifact store; ``null`` when the log is empty."""
    return _svc(request).checkpoint_audit()


@router.post("/audit/keys/rebuild", dependencies=ADMIN)
def rebuild_audit_keys(request: Request) -> AuditKeysRebuilt:
    """Copy the records' lookup keys again from the records: the repair for a keys table
    that verify reports edited (audited; the records and their chain are not touched)."""
    return _svc(request).rebuild_audit_keys()


@router.get("/audit/verify", dependencies=ADMIN)
def verify_audit(request: Request) -> AuditVerification:
    return _svc(request).verify_audit()
