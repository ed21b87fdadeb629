"""Strata's REST API for MLflow 3 LoggedModels (``/api/v1/logged-models``), the routes
:class:`strata.tracking.remote.RemoteTracking` calls. MLflow's own spelling of the same
operations is served by :mod:`strata.tracking.mlflow_api.models`.
"""

from __future__ import annotations

from typing import BinaryIO, cast

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from strata.governance.routing import (
    READ,
    WRITE,
    empty,
    file_response,
    json_response,
    run_blocking,
)
from strata.tracking.api import UPLOAD_DOC, BodyReader, _svc
from strata.tracking.models import DatasetRef, FileInfo, LoggedModel, ModelMetric, ModelOrder

router = APIRouter(prefix="/api/v1", tags=["tracking"])


class CreateLoggedModel(BaseModel):
    experiment_id: str
    name: str | None = None
    source_run_id: str | None = None
    model_type: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class OrderField(BaseModel):
    """An attribute, or ``metrics.<key>`` (each model's latest point; optionally only those
    logged against ``dataset_name``/``dataset_digest``)."""

    field: str
    ascending: bool = True
    dataset_name: str | None = None
    dataset_digest: str | None = None


class DatasetFilter(BaseModel):
    name: str
    digest: str | None = None


class SearchLoggedModels(BaseModel):
    experiment_ids: list[str]
    filter: str | None = None
    order_by: list[OrderField] = Field(default_factory=list)
    max_results: int = 100
    page_token: str | None = None
    datasets: list[DatasetFilter] = Field(default_factory=list)
    """Only metric points logged against one of these count (see the service)."""


class UpdateLoggedModel(BaseModel):
    status: str
    status_message: str | None = None


class LoggedModelTags(BaseModel):
    tags: dict[str, str]


class LoggedModelParams(BaseModel):
    params: dict[str, str]


class DeleteLoggedModelTag(BaseModel):
    key: str


class LogModelMetrics(BaseModel):
    metrics: list[ModelMetric]


class ModelRef(BaseModel):
    model_id: str
    step: int = 0


class LogRunModels(BaseModel):
    direction: str
    models: list[ModelRef]


@router.post("/logged-models", dependencies=WRITE, status_code=201, response_model=LoggedModel)
def create_logged_model(body: CreateLoggedModel, request: Request) -> Response:
    """A PENDING model in the experiment; 404 for an unknown experiment or source run."""
    model = _svc(request).create_logged_model(
        body.experiment_id,
        name=body.name,
        source_run_id=body.source_run_id,
        model_type=body.model_type,
        params=body.params,
        tags=body.tags,
    )
    return json_response(model, 201)


@router.post("/logged-models/search", dependencies=READ)
def search_logged_models(body: SearchLoggedModels, request: Request) -> Response:
    """Active models of the experiments matching ``filter``; ``next_page_token`` pages on."""
    page = _svc(request).search_logged_models(
        body.experiment_ids,
        filter=body.filter,
        order_by=[
            ModelOrder(o.field, o.ascending, o.dataset_name, o.dataset_digest)
            for o in body.order_by
        ],
        max_results=body.max_results,
        page_token=body.page_token,
        datasets=[DatasetRef(d.name, d.digest) for d in body.datasets],
    )
    return json_response({"models": page.items, "next_page_token": page.next_page_token})


@router.post("/logged-models/metrics", dependencies=WRITE, status_code=204)
def log_model_metrics(body: LogModelMetrics, request: Request) -> Response:
    """Metric points on their models, in one transaction (404 for an unknown model)."""
    _svc(request).log_model_metrics(body.metrics)
    return empty()


@router.get("/logged-models/run-links", dependencies=READ)
def list_run_models(request: Request, run_id: list[str] = Query(default=[])) -> Response:
    """The model inputs and outputs of each ``run_id`` (runs without any are absent)."""
    return json_response({"runs": _svc(request).list_run_models(run_id)})


@router.get("/logged-models/{model_id}", dependencies=READ, response_model=LoggedModel)
def get_logged_model(model_id: str, request: Request, allow_deleted: bool = False) -> Response:
    return json_response(_svc(request).get_logged_model(model_id, allow_deleted=allow_deleted))


@router.patch("/logged-models/{model_id}", dependencies=WRITE, response_model=LoggedModel)
def update_logged_model(model_id: str, body: UpdateLoggedModel, request: Request) -> Response:
    """Set the status (``PENDING``, ``READY``, ``UPLOAD_FAILED``)."""
    model = _svc(request).update_logged_model(
        model_id, status=body.status, status_message=body.status_message
    )
    return json_response(model)


@router.delete("/logged-models/{model_id}", dependencies=WRITE, status_code=204)
def delete_logged_model(model_id: str, request: Request) -> Response:
    _svc(request).delete_logged_model(model_id)
    return empty()


@router.post("/logged-models/{model_id}/tags", dependencies=WRITE, status_code=204)
def set_logged_model_tags(model_id: str, body: LoggedModelTags, request: Request) -> Response:
    _svc(request).set_logged_model_tags(model_id, body.tags)
    return empty()


@router.post("/logged-models/{model_id}/delete-tag", dependencies=WRITE, status_code=204)
def delete_logged_model_tag(
    model_id: str, body: DeleteLoggedModelTag, request: Request
) -> Response:
    _svc(request).delete_logged_model_tag(model_id, body.key)
    return empty()


@router.post("/logged-models/{model_id}/params", dependencies=WRITE, status_code=204)
def log_model_params(model_id: str, body: LoggedModelParams, request: Request) -> Response:
    """Params are immutable: 409 naming both values for a different value."""
    _svc(request).log_model_params(model_id, body.params)
    return empty()


@router.post("/runs/{run_id}/models", dependencies=WRITE, status_code=204)
def log_run_models(run_id: str, body: LogRunModels, request: Request) -> Response:
    """Models the run used (``input``) or produced (``output``, with a step)."""
    models = [(m.model_id, m.step) for m in body.models]
    _svc(request).log_run_models(run_id, body.direction, models)
    return empty()


@router.put(
    "/artifacts/logged-models/{model_id}/{path:path}",
    dependencies=WRITE,
    status_code=201,
    response_model=FileInfo,
    openapi_extra=UPLOAD_DOC,
)
async def upload_model_artifact(model_id: str, path: str, request: Request) -> Response:
    """Stream the body below the model's artifact root at ``path`` (written atomically)."""
    svc = _svc(request)
    reader = BodyReader(request.stream().__aiter__(), f"{path!r} to logged model {model_id}")
    info = await run_blocking(svc.log_model_artifact_stream, model_id, path, cast(BinaryIO, reader))
    return json_response(info, 201)


@router.get("/logged-models/{model_id}/artifacts", dependencies=READ)
def list_model_artifacts(model_id: str, request: Request, path: str = "") -> Response:
    """Immediate children of ``path`` (default: the model's artifact root), sorted by path."""
    return json_response({"files": _svc(request).list_model_artifacts(model_id, path)})


@router.get(
    "/artifacts/logged-models/{model_id}/{path:path}",
    dependencies=READ,
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_model_artifact(model_id: str, path: str, request: Request) -> StreamingResponse:
    """Stream one file of the model's artifacts with its recorded ``X-Strata-Sha256``."""
    info, sha256, reader = _svc(request).open_model_artifact(model_id, path)
    return file_response(
        reader,
        sha256=sha256,
        what=f"artifact {path!r} of logged model {model_id}",
        filename=info.path.rsplit("/", 1)[-1],
    )


@router.delete(
    "/artifacts/logged-models/{model_id}/{path:path}", dependencies=WRITE, status_code=204
)
def delete_model_artifact(model_id: str, path: str, request: Request) -> Response:
    _svc(request).delete_model_artifact(model_id, path)
    return empty()
