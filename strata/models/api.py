"""REST: the model metadata of runs (``GET /api/v1/models/runs/{run_id}``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from strata.governance.routing import READ, json_response, service
from strata.models.models import RunModel
from strata.tracking.service import TrackingService

router = APIRouter(prefix="/api/v1", tags=["models"])


@router.get("/models/runs/{run_id}", dependencies=READ, response_model=list[RunModel])
def list_run_models(run_id: str, request: Request) -> Response:
    """The Strata models the run logged, by artifact path: LoggedModel id, status, URI and
    the parsed ``strata-model.yaml`` (flavors, signature, requirements, digests, ONNX
    parity); ``error`` instead of ``spec`` when the yaml cannot be read. 404 for an
    unknown run."""
    from strata.models.runs import run_models  # numpy and yaml load on first use, not at startup

    tracking: TrackingService = service(request, "tracking", TrackingService)
    return json_response(run_models(tracking, run_id))
