"""Dependencies of UI routes: the viewer of a page and the client whose services it reads."""

from __future__ import annotations

from fastapi import Request

from strata.client import Client
from strata.core.errors import PermissionDenied
from strata.ui.session import Viewer, viewer


async def page_viewer(request: Request) -> Viewer:
    """The logged-in viewer (Unauthenticated, hence a login redirect, when there is none)."""
    who = await viewer(request)
    assert who is not None
    return who


async def admin_viewer(request: Request) -> Viewer:
    who = await page_viewer(request)
    if not who.is_admin:
        raise PermissionDenied(
            f"User {who.principal.name!r} (role {who.principal.role.value}) may not see this "
            "page: it needs the 'admin' permission",
            details={"needed": "admin", "role": who.principal.role.value},
        )
    return who


def client_of(request: Request) -> Client:
    """The server's client: its services are the ones the REST API calls."""
    client: Client = request.app.state.client
    return client
