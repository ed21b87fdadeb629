"""MLflow-compatible REST API of the tracking server.

Unmodified code using the official ``mlflow`` client works against ``strata server`` with
``MLFLOW_TRACKING_URI=http://host:port`` (and ``MLFLOW_TRACKING_TOKEN=<strata token>``): the
tracking routes under ``/api/2.0/mlflow`` (and ``/ajax-api/2.0/mlflow``), MLflow 3's
LoggedModels, and the artifact proxy under ``/api/2.0/mlflow-artifacts``. Runs and
experiments are Strata's own, so the same runs are visible through Strata's SDK.
"""

from __future__ import annotations

from fastapi import APIRouter

from strata.tracking.mlflow_api import (
    artifacts,
    experiments,
    graphql_api,
    metrics,
    models,
    multipart,
    runs,
)

router = APIRouter()
# Matched in this order: run logging (the hot path of training scripts) first.
for _module in (runs, experiments, metrics, models, artifacts, multipart, graphql_api):
    router.include_router(_module.router)

__all__ = ["router"]
