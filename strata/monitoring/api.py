"""The monitoring REST API (``/api/v1/monitoring``): parse, call the interface, render.

Reads (drift reports, series, profiles) need ``read``; storing a profile needs ``write``, and
so does a drift report with ``store_as`` (checked by the service, embedded and remote alike)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from strata.governance.routing import READ, WRITE, json_response, run_blocking, service
from strata.monitoring.models import DriftOptions
from strata.monitoring.service import MonitoringService

router = APIRouter(prefix="/api/v1/monitoring", tags=["monitoring"])


def _svc(request: Request) -> MonitoringService:
    svc: MonitoringService = service(request, "monitoring", MonitoringService)
    return svc


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DriftBody(_Body):
    reference: str = Field(min_length=1, max_length=2000)
    current: str = Field(min_length=1, max_length=2000)
    options: DriftOptions = Field(default_factory=DriftOptions)


class ProfileBody(_Body):
    ref: str = Field(min_length=1, max_length=2000)
    columns: list[str] | None = Field(default=None, max_length=10_000)


@router.post("/drift", dependencies=READ)
async def drift(request: Request, body: DriftBody) -> Response:
    svc = _svc(request)
    report = await run_blocking(svc.drift_with, body.reference, body.current, body.options)
    return json_response(report)


@router.post("/drift/html", dependencies=READ, response_class=HTMLResponse)
async def drift_html(request: Request, body: DriftBody) -> Response:
    svc = _svc(request)
    if body.options.store_as:
        from strata.core.errors import InvalidInput

        raise InvalidInput("store_as is for POST /drift", details={"field": "options.store_as"})
    page = await run_blocking(svc.drift_html, body.reference, body.current, body.options)
    return HTMLResponse(page)


@router.get("/profiles", dependencies=READ)
async def list_profiles(request: Request) -> Response:
    return json_response(await run_blocking(_svc(request).list_profiles))


@router.put("/profiles/{name}", dependencies=WRITE)
async def save_profile(request: Request, name: str, body: ProfileBody) -> Response:
    svc = _svc(request)
    return json_response(await run_blocking(svc.save_profile, name, body.ref, columns=body.columns))


@router.get("/models/{model}/series", dependencies=READ)
async def list_series(request: Request, model: str) -> Response:
    return json_response(await run_blocking(_svc(request).list_series, model))


@router.get("/models/{model}/series/{series}", dependencies=READ)
async def get_series(
    request: Request,
    model: str,
    series: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    svc = _svc(request)
    points = await run_blocking(svc.get_series, model, series, since, until, limit)
    return json_response(points)
