"""The monitoring REST API (``/api/v1/monitoring``): parse, call the interface, render.

Reads (drift reports, series, profiles) need ``read``; storing a profile needs ``write``, and
so does a drift report with ``store_as`` (checked by the service, embedded and remote alike)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from strata.governance.routing import (
    ADMIN,
    READ,
    WRITE,
    empty,
    file_response,
    json_response,
    run_blocking,
    service,
)
from strata.monitoring.models import (
    AlertRule,
    DriftOptions,
    FeedbackItem,
    LogQuery,
    PerformanceOptions,
)
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


class LogSettingsBody(_Body):
    sample_rate: float | None = Field(default=None, ge=0, le=1)
    retention_days: int | None = Field(default=None, ge=1, le=36_500)


def _log_query(
    model: str,
    version: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    request_id: str | None,
    entity_key: str | None,
    endpoint: str | None,
    path: str | None,
    limit: int,
) -> LogQuery:
    from strata.core.parse import parse_options

    fields = {
        "model": model,
        "version": version,
        "since": since,
        "until": until,
        "request_id": request_id,
        "entity_key": entity_key,
        "endpoint": endpoint,
        "path": path,
        "limit": limit,
    }
    return parse_options(LogQuery, None, **{k: v for k, v in fields.items() if v is not None})


class _LogParams:
    def __init__(
        self,
        model: str,
        version: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        request_id: str | None = None,
        entity_key: str | None = None,
        endpoint: str | None = None,
        path: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> None:
        self.query = _log_query(
            model, version, since, until, request_id, entity_key, endpoint, path, limit
        )


@router.get("/models/{model}/log", dependencies=READ)
async def query_log(request: Request, params: Annotated[_LogParams, Depends()]) -> Response:
    return json_response(await run_blocking(_svc(request).query_log_with, params.query))


@router.get("/models/{model}/log/stats", dependencies=READ)
async def log_stats(request: Request, params: Annotated[_LogParams, Depends()]) -> Response:
    return json_response(await run_blocking(_svc(request).log_stats_with, params.query))


@router.get("/models/{model}/log/export", dependencies=READ)
async def export_log(
    request: Request,
    params: Annotated[_LogParams, Depends()],
    format: Annotated[str, Query(pattern="^(parquet|csv|jsonl)$")] = "parquet",
) -> Response:
    """The selection as one file, written by the server into its own staging directory (the
    caller never names a server path) and streamed with its sha256."""
    import hashlib
    import shutil
    import tempfile
    from pathlib import Path

    svc = _svc(request)
    workdir = Path(tempfile.mkdtemp(prefix="strata-log-export-"))
    dest = workdir / f"{params.query.model}.{format}"
    try:
        await run_blocking(svc.export_log_with, params.query, dest, format)  # type: ignore[arg-type]
        digest = hashlib.sha256()
        with dest.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        reader = dest.open("rb")
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    dest.unlink()  # the open reader keeps the bytes until it is closed; then they are gone
    shutil.rmtree(workdir, ignore_errors=True)
    return file_response(
        reader,
        sha256=digest.hexdigest(),
        what=f"{params.query.model} log export",
        filename=dest.name,
    )


@router.get("/models/{model}/log/settings", dependencies=READ)
async def get_log_settings(request: Request, model: str) -> Response:
    return json_response(await run_blocking(_svc(request).get_log_settings, model))


@router.put("/models/{model}/log/settings", dependencies=ADMIN)
async def set_log_settings(request: Request, model: str, body: LogSettingsBody) -> Response:
    svc = _svc(request)
    fields = body.model_dump()
    return json_response(await run_blocking(lambda: svc.set_log_settings(model, **fields)))


@router.post("/models/{model}/log/retention", dependencies=ADMIN)
async def apply_retention(request: Request, model: str) -> Response:
    return json_response(await run_blocking(_svc(request).apply_retention, model))


class FeedbackBody(_Body):
    model: str = Field(min_length=1, max_length=128)
    items: list[FeedbackItem] = Field(max_length=100_000)


#: ``POST /feedback`` at the server's root: the short path label producers are given (the
#: issue's), the same handler, permission and body as ``/api/v1/monitoring/feedback``.
root_router = APIRouter(tags=["monitoring"])


@root_router.post("/feedback", dependencies=WRITE)
@router.post("/feedback", dependencies=WRITE)
async def feedback(request: Request, body: FeedbackBody) -> Response:
    """Ground-truth labels by request id (+ row) or entity key + time; unknown ones are
    counted and listed in the answer, never dropped."""
    svc = _svc(request)
    return json_response(await run_blocking(svc.feedback_with, body.model, body.items))


@router.post("/performance", dependencies=READ)
async def performance(request: Request, body: PerformanceOptions) -> Response:
    return json_response(await run_blocking(_svc(request).performance_with, body))


@router.get("/rules", dependencies=READ)
async def list_rules(request: Request, model: str | None = None) -> Response:
    return json_response(await run_blocking(_svc(request).list_rules, model))


@router.post("/rules/evaluate", dependencies=ADMIN)
async def evaluate_rules(request: Request, wait: bool = False) -> Response:
    """One pass now; retraining jobs are queued (``wait=true``: answer once they are done)."""
    return json_response(await run_blocking(_svc(request).evaluate_rules, wait))


@router.get("/rules/{name}", dependencies=READ)
async def get_rule(request: Request, name: str) -> Response:
    return json_response(await run_blocking(_svc(request).get_rule, name))


@router.put("/rules/{name}", dependencies=ADMIN)
async def save_rule(request: Request, name: str, body: AlertRule) -> Response:
    if body.name != name:
        from strata.core.errors import InvalidInput

        raise InvalidInput(
            f"the rule's name {body.name!r} differs from the path's {name!r}",
            details={"field": "name"},
        )
    return json_response(await run_blocking(_svc(request).save_rule_with, body))


@router.delete("/rules/{name}", dependencies=ADMIN)
async def delete_rule(request: Request, name: str) -> Response:
    await run_blocking(_svc(request).delete_rule, name)
    return empty()


@router.get("/alerts", dependencies=READ)
async def list_alert_events(
    request: Request, rule: str | None = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> Response:
    return json_response(await run_blocking(_svc(request).list_alert_events, rule, limit))


class HealthBody(_Body):
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    window: str = Field(default="1m", max_length=8)
    metrics_url: str | None = Field(default=None, max_length=2000)


@router.post("/models/{model}/health", dependencies=WRITE)
async def record_health(request: Request, model: str, body: HealthBody) -> Response:
    svc = _svc(request)
    fields = body.model_dump()
    return json_response(await run_blocking(lambda: svc.record_health(model, **fields)))


@router.get("/models/{model}/grafana", dependencies=READ)
async def grafana(request: Request, model: str) -> Response:
    """A Grafana dashboard (import it in Grafana) for the endpoint ``model``."""
    return json_response(_svc(request).grafana_dashboard(model), plain=True)
