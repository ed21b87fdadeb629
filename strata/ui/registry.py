"""Registry pages: registered models, a model (versions, aliases, the alias history,
promotion requests with approve/reject for those allowed), a version with its model card."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from strata.core.principal import Permission
from strata.core.threads import run_blocking
from strata.ui.deps import client_of, page_viewer
from strata.ui.session import Viewer, check_write
from strata.ui.web import PAGE_HEADERS, PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE = 200


@router.get("/models")
def models(request: Request, q: str = "", who: Viewer = Depends(page_viewer)) -> Response:
    # Model names are letters, digits, '_', '.', '-': anything else cannot match a prefix.
    prefix = re.sub(r"[^A-Za-z0-9_.\-]", "", q.strip())[:128]
    filter = f"name LIKE '{prefix}%'" if prefix else None
    page = client_of(request).registry.search_models(filter, max_results=PAGE)
    return render(request, who, "models.html", models=page.items, q=prefix)


@router.get("/models/{name}")
def model(request: Request, name: str, who: Viewer = Depends(page_viewer)) -> Response:
    reg = client_of(request).registry
    found = reg.get_model(name)
    versions = reg.search_versions(f"name = '{found.name}'", max_results=PAGE).items
    history = reg.alias_history(found.name, max_results=PAGE).items
    requests = reg.list_requests(name=found.name, max_results=PAGE).items
    allow_self = reg.get_settings().allow_self_approval
    return render(
        request,
        who,
        "model.html",
        model=found,
        versions=versions,
        history=history,
        requests=requests,
        can_approve=who.principal.can(Permission.APPROVE),
        allow_self=allow_self,
    )


@router.get("/models/{name}/versions/{version}")
def version(
    request: Request, name: str, version: str, who: Viewer = Depends(page_viewer)
) -> Response:
    reg = client_of(request).registry
    mv = reg.get_version(name, version)
    return render(request, who, "model_version.html", version=mv, model=reg.get_model(name))


@router.get("/models/{name}/versions/{version}/card")
def card(request: Request, name: str, version: str, who: Viewer = Depends(page_viewer)) -> Response:
    """The self-contained HTML model card (user text escaped; the plot is a data URI)."""
    html = client_of(request).registry.card(name, version, format="html")
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.post("/models/requests/{request_id}/{decision}")
async def decide(
    request: Request, request_id: str, decision: str, who: Viewer = Depends(page_viewer)
) -> Response:
    form = dict(await request.form())
    await check_write(request, who, form, Permission.APPROVE)
    reg = client_of(request).registry
    comment = str(form.get("comment") or "")
    if decision == "approve":
        done = await run_blocking(reg.approve, request_id, comment=comment)
    elif decision == "reject":
        done = await run_blocking(reg.reject, request_id, comment=comment)
    else:
        from strata.core.errors import NotFound

        raise NotFound(f"No decision {decision!r}: approve or reject")
    return RedirectResponse(f"/models/{done.name}", status_code=303)
