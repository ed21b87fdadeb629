"""The serving REST API (``/api/v1/serving``): published endpoints and their traffic
policies. Reading needs ``read``; changing a policy needs ``write`` (and is audited)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from strata.governance.routing import READ, WRITE, empty, json_response, run_blocking, service
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


@router.get("/jobs", dependencies=READ)
async def list_jobs(
    request: Request,
    max_results: int = Query(100, ge=1, le=1000),
    page_token: str | None = Query(None, max_length=200),
) -> Response:
    """Scoring jobs started through the API, newest first, with their progress:
    ``{"items": [...], "next_page_token": ...}``, ``max_results`` a page; pass the token back
    as ``page_token`` for the next page."""
    return json_response(await run_blocking(_svc(request).list_jobs, max_results, page_token))


@router.post("/jobs/batch", dependencies=WRITE, status_code=201)
async def start_batch_job(request: Request, spec: dict[str, Any] = Body(...)) -> Response:
    """Start a batch scoring job: a registered model over a dataset version into a new
    dataset version (fields of BatchJobSpec); audited. Answers the running job at once."""
    job = await run_blocking(_svc(request).start_batch_job, spec)
    return json_response(job, status_code=201)


@router.post("/jobs/stream", dependencies=WRITE, status_code=201)
async def start_stream_job(request: Request, spec: dict[str, Any] = Body(...)) -> Response:
    """Start a stream scorer on the server's configured brokers (fields of StreamJobSpec);
    audited."""
    job = await run_blocking(_svc(request).start_stream_job, spec)
    return json_response(job, status_code=201)


@router.get("/jobs/{job_id}", dependencies=READ)
async def get_job(request: Request, job_id: str) -> Response:
    return json_response(await run_blocking(_svc(request).get_job, job_id))


@router.post("/jobs/{job_id}/cancel", dependencies=WRITE)
async def cancel_job(request: Request, job_id: str) -> Response:
    """Ask a running job to stop (a batch job resumes when started again); audited."""
    return json_response(await run_blocking(_svc(request).cancel_job, job_id))


@router.delete("/jobs/{job_id}", dependencies=WRITE, status_code=204)
async def delete_job(request: Request, job_id: str) -> Response:
    """Remove a finished job's record (its output stays); 409 while it runs; audited."""
    await run_blocking(_svc(request).delete_job, job_id)
    return empty()
