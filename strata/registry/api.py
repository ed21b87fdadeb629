"""The registry REST API (``/api/v1/registry``): parse, call the interface, render.

Writes need the ``write`` permission; approving or rejecting a promotion request needs
``approve``, the settings ``admin``. Finer rules (protected aliases, self-approval, card
owners) are the service's, so they hold embedded and remote alike.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from strata.core.principal import Permission
from strata.governance.deps import require
from strata.governance.routing import (
    ADMIN,
    READ,
    WRITE,
    empty,
    json_response,
    run_blocking,
    service,
)
from strata.registry.models import CardSections, Gate, RegistrySettings
from strata.registry.service import RegistryService

router = APIRouter(prefix="/api/v1/registry", tags=["registry"])
APPROVE = [Depends(require(Permission.APPROVE))]


def _svc(request: Request) -> RegistryService:
    svc: RegistryService = service(request, "registry", RegistryService)
    return svc


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewModel(_Body):
    name: str = Field(max_length=128)
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict, max_length=1000)
    owner: str | None = Field(default=None, max_length=256)


class ModelUpdate(_Body):
    description: str | None = None
    owner: str | None = None


class Rename(_Body):
    new_name: str = Field(max_length=128)


class Tag(_Body):
    key: str = Field(max_length=250)
    value: str = Field(max_length=5000)


class GateBody(_Body):
    gate: Gate | None


class NewVersion(_Body):
    source: str = Field(max_length=2000)
    run_id: str | None = Field(default=None, max_length=64)
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict, max_length=1000)
    model_id: str | None = Field(default=None, max_length=64)


class VersionUpdate(_Body):
    description: str | None = None


class AliasBody(_Body):
    version: int | str
    reason: str = ""


class Reason(_Body):
    reason: str = ""


class PromotionBody(_Body):
    name: str = Field(max_length=128)
    version: int | str
    alias: str = "production"
    reason: str


class Decision(_Body):
    comment: str = ""


class StageBody(_Body):
    stage: str = Field(max_length=32)
    archive_existing: bool = False


# -- models ---------------------------------------------------------------------------------
@router.post("/models", dependencies=WRITE, status_code=201)
async def create_model(request: Request, body: NewModel) -> Response:
    svc = _svc(request)
    model = await run_blocking(
        svc.create_model, body.name, description=body.description, tags=body.tags, owner=body.owner
    )
    return json_response(model, 201)


@router.get("/models", dependencies=READ)
async def search_models(
    request: Request,
    filter: str | None = Query(None, max_length=5000),
    order_by: list[str] | None = Query(None),
    max_results: int = 100,
    page_token: str | None = None,
) -> Response:
    svc = _svc(request)
    page = await run_blocking(
        svc.search_models,
        filter,
        order_by=order_by,
        max_results=max_results,
        page_token=page_token,
    )
    return json_response(page)


@router.get("/models/{name}", dependencies=READ)
async def get_model(request: Request, name: str) -> Response:
    return json_response(await run_blocking(_svc(request).get_model, name))


@router.patch("/models/{name}", dependencies=WRITE)
async def update_model(request: Request, name: str, body: ModelUpdate) -> Response:
    svc = _svc(request)
    model = await run_blocking(
        svc.update_model, name, description=body.description, owner=body.owner
    )
    return json_response(model)


@router.post("/models/{name}/rename", dependencies=WRITE)
async def rename_model(request: Request, name: str, body: Rename) -> Response:
    return json_response(await run_blocking(_svc(request).rename_model, name, body.new_name))


@router.delete("/models/{name}", dependencies=WRITE)
async def delete_model(request: Request, name: str) -> Response:
    await run_blocking(_svc(request).delete_model, name)
    return empty()


@router.put("/models/{name}/tags", dependencies=WRITE)
async def set_model_tag(request: Request, name: str, body: Tag) -> Response:
    await run_blocking(_svc(request).set_model_tag, name, body.key, body.value)
    return empty()


@router.delete("/models/{name}/tags/{key}", dependencies=WRITE)
async def delete_model_tag(request: Request, name: str, key: str) -> Response:
    await run_blocking(_svc(request).delete_model_tag, name, key)
    return empty()


@router.put("/models/{name}/gate", dependencies=WRITE)
async def set_gate(request: Request, name: str, body: GateBody) -> Response:
    return json_response(await run_blocking(_svc(request).set_gate, name, body.gate))


# -- versions -------------------------------------------------------------------------------
@router.post("/models/{name}/versions", dependencies=WRITE, status_code=201)
async def create_version(request: Request, name: str, body: NewVersion) -> Response:
    svc = _svc(request)
    mv = await run_blocking(
        svc.create_version,
        name,
        body.source,
        run_id=body.run_id,
        description=body.description,
        tags=body.tags,
        model_id=body.model_id,
    )
    return json_response(mv, 201)


@router.get("/versions", dependencies=READ)
async def search_versions(
    request: Request,
    filter: str | None = Query(None, max_length=5000),
    order_by: list[str] | None = Query(None),
    max_results: int = 100,
    page_token: str | None = None,
) -> Response:
    svc = _svc(request)
    page = await run_blocking(
        svc.search_versions,
        filter,
        order_by=order_by,
        max_results=max_results,
        page_token=page_token,
    )
    return json_response(page)


@router.get("/models/{name}/versions/{version}", dependencies=READ)
async def get_version(request: Request, name: str, version: str) -> Response:
    return json_response(await run_blocking(_svc(request).get_version, name, version))


@router.patch("/models/{name}/versions/{version}", dependencies=WRITE)
async def update_version(
    request: Request, name: str, version: str, body: VersionUpdate
) -> Response:
    svc = _svc(request)
    return json_response(
        await run_blocking(svc.update_version, name, version, description=body.description)
    )


@router.delete("/models/{name}/versions/{version}", dependencies=WRITE)
async def delete_version(request: Request, name: str, version: str) -> Response:
    await run_blocking(_svc(request).delete_version, name, version)
    return empty()


@router.put("/models/{name}/versions/{version}/tags", dependencies=WRITE)
async def set_version_tag(request: Request, name: str, version: str, body: Tag) -> Response:
    await run_blocking(_svc(request).set_version_tag, name, version, body.key, body.value)
    return empty()


@router.delete("/models/{name}/versions/{version}/tags/{key}", dependencies=WRITE)
async def delete_version_tag(request: Request, name: str, version: str, key: str) -> Response:
    await run_blocking(_svc(request).delete_version_tag, name, version, key)
    return empty()


@router.get("/models/{name}/versions/{version}/card", dependencies=READ)
async def get_card(request: Request, name: str, version: str, format: str = "markdown") -> Response:
    text = await run_blocking(_svc(request).card, name, version, format=format)
    return json_response({"format": format, "card": text}, plain=True)


@router.patch("/models/{name}/versions/{version}/card", dependencies=WRITE)
async def update_card(request: Request, name: str, version: str, body: CardSections) -> Response:
    return json_response(await run_blocking(_svc(request).update_card, name, version, body))


@router.post("/models/{name}/versions/{version}/stage", dependencies=WRITE)
async def transition_stage(request: Request, name: str, version: str, body: StageBody) -> Response:
    svc = _svc(request)
    mv = await run_blocking(
        svc.transition_stage, name, version, body.stage, archive_existing=body.archive_existing
    )
    return json_response(mv)


# -- aliases --------------------------------------------------------------------------------
@router.get("/models/{name}/aliases/{alias}", dependencies=READ)
async def get_by_alias(request: Request, name: str, alias: str) -> Response:
    return json_response(await run_blocking(_svc(request).get_version_by_alias, name, alias))


@router.put("/models/{name}/aliases/{alias}", dependencies=WRITE)
async def set_alias(request: Request, name: str, alias: str, body: AliasBody) -> Response:
    svc = _svc(request)
    return json_response(
        await run_blocking(svc.set_alias, name, alias, body.version, reason=body.reason)
    )


@router.delete("/models/{name}/aliases/{alias}", dependencies=WRITE)
async def delete_alias(
    request: Request, name: str, alias: str, reason: str = Query("", max_length=20_000)
) -> Response:
    return json_response(await run_blocking(_svc(request).delete_alias, name, alias, reason=reason))


@router.post("/models/{name}/aliases/{alias}/rollback", dependencies=WRITE)
async def rollback(request: Request, name: str, alias: str, body: Reason) -> Response:
    return json_response(
        await run_blocking(_svc(request).rollback, name, alias, reason=body.reason)
    )


@router.get("/models/{name}/alias-history", dependencies=READ)
async def alias_history(
    request: Request,
    name: str,
    alias: str | None = None,
    max_results: int = 100,
    page_token: str | None = None,
) -> Response:
    svc = _svc(request)
    page = await run_blocking(
        svc.alias_history, name, alias, max_results=max_results, page_token=page_token
    )
    return json_response(page)


# -- approvals ------------------------------------------------------------------------------
@router.post("/requests", dependencies=WRITE, status_code=201)
async def request_promotion(request: Request, body: PromotionBody) -> Response:
    svc = _svc(request)
    req = await run_blocking(
        svc.request_promotion, body.name, body.version, alias=body.alias, reason=body.reason
    )
    return json_response(req, 201)


@router.get("/requests", dependencies=READ)
async def list_requests(
    request: Request,
    name: str | None = None,
    status: str | None = None,
    max_results: int = 100,
    page_token: str | None = None,
) -> Response:
    svc = _svc(request)
    page = await run_blocking(
        svc.list_requests,
        name=name,
        status=status,
        max_results=max_results,
        page_token=page_token,
    )
    return json_response(page)


@router.get("/requests/{request_id}", dependencies=READ)
async def get_request(request: Request, request_id: str) -> Response:
    return json_response(await run_blocking(_svc(request).get_request, request_id))


@router.post("/requests/{request_id}/approve", dependencies=APPROVE)
async def approve(request: Request, request_id: str, body: Decision) -> Response:
    return json_response(
        await run_blocking(_svc(request).approve, request_id, comment=body.comment)
    )


@router.post("/requests/{request_id}/reject", dependencies=APPROVE)
async def reject(request: Request, request_id: str, body: Decision) -> Response:
    return json_response(await run_blocking(_svc(request).reject, request_id, comment=body.comment))


@router.get("/settings", dependencies=READ)
async def get_settings(request: Request) -> Response:
    return json_response(await run_blocking(_svc(request).get_settings))


@router.put("/settings", dependencies=ADMIN)
async def update_settings(request: Request, body: RegistrySettings) -> Response:
    return json_response(await run_blocking(_svc(request).update_settings, body))
