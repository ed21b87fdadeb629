"""The serving REST API (``/api/v1/serving``): published endpoints and their traffic
policies. Reading needs ``read``; changing a policy needs ``write`` (and is audited)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from strata.governance.routing import READ, WRITE, json_response, run_blocking, service
from strata.serving.service import ServingService

router = APIRouter(prefix="/api/v1/serving", tags=["serving"])


def _svc(request: Request) -> ServingService:
    svc: ServingService = service(request, "serving", ServingService)
    return svc


@router.get("/endpoints", dependencies=READ)
async def list_endpoints(request: Request) -> Response:
    """Endpoints published by running inference servers (version, readiness, policy)."""
    return json_response(await run_blocking(_svc(request).list_endpoints))


@router.get("/endpoints/{name}", dependencies=READ)
async def get_endpoint(request: Request, name: str) -> Response:
    return json_response(await run_blocking(_svc(request).get_endpoint, name))


@router.get("/endpoints/{name}/policy", dependencies=READ)
async def get_policy(request: Request, name: str) -> Response:
    """The endpoint's traffic policy (the one set at runtime, else its configured one)."""
    return json_response(await run_blocking(_svc(request).get_traffic_policy, name))


@router.put("/endpoints/{name}/policy", dependencies=WRITE)
async def set_policy(request: Request, name: str, policy: dict[str, Any] = Body(...)) -> Response:
    """Set the endpoint's traffic policy (canary, shadow, fallback, cache); audited."""
    return json_response(await run_blocking(_svc(request).set_traffic_policy, name, policy))
