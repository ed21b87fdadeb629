"""Strata tracking objects as MLflow proto JSON (``Experiment``, ``Run``, ``LoggedModel``).

Proto JSON rules followed here: int64 fields as numbers (as MLflow's server sends them),
doubles NaN/±inf as strings, unset optional fields and empty lists left out, enums by name.
"""

from __future__ import annotations

from typing import Any

from strata.tracking.mlflow_api._common import num
from strata.tracking.models import (
    DatasetInput,
    Experiment,
    LoggedModel,
    MetricPoint,
    Run,
    RunInfo,
    RunModels,
)

NOTE_TAG = "mlflow.note.content"
RUN_NAME_TAG = "mlflow.runName"
PARENT_TAG = "mlflow.parentRunId"
USER_TAG = "mlflow.user"
CONTEXT_TAG = "mlflow.data.context"


def _kv(pairs: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in pairs.items()]


def experiment_json(exp: Experiment) -> dict[str, Any]:
    """The description is MLflow's ``mlflow.note.content`` tag."""
    tags = exp.tags
    if exp.description is not None and NOTE_TAG not in tags:
        tags = {**tags, NOTE_TAG: exp.description}
    out: dict[str, Any] = {
        "experiment_id": exp.experiment_id,
        "name": exp.name,
        "artifact_location": exp.artifact_location,
        "lifecycle_stage": exp.lifecycle_stage.value,
        "last_update_time": exp.last_update_time,
        "creation_time": exp.creation_time,
    }
    if tags:
        out["tags"] = _kv(tags)
    return out


def run_info_json(info: RunInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": info.run_id,
        "run_uuid": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "user_id": info.user_id,
        "status": info.status.value,
        "start_time": info.start_time,
        "artifact_uri": info.artifact_uri,
        "lifecycle_stage": info.lifecycle_stage.value,
    }
    if info.end_time is not None:
        out["end_time"] = info.end_time
    return out


def dataset_input_json(d: DatasetInput) -> dict[str, Any]:
    return dataset_json(
        d.name, d.digest, d.context, d.source_type, d.source, d.schema_, d.profile, d.tags
    )


def dataset_json(
    name: str,
    digest: str,
    context: str | None,
    source_type: str,
    source: str,
    schema: str | None,
    profile: str | None,
    tags: dict[str, str],
) -> dict[str, Any]:
    """A ``DatasetInput``: the context is MLflow's ``mlflow.data.context`` input tag."""
    tags = dict(tags)
    if context and CONTEXT_TAG not in tags:
        tags[CONTEXT_TAG] = context
    dataset: dict[str, Any] = {
        "name": name,
        "digest": digest,
        "source_type": source_type,
        "source": source,
    }
    if schema is not None:
        dataset["schema"] = schema
    if profile is not None:
        dataset["profile"] = profile
    out: dict[str, Any] = {"dataset": dataset}
    if tags:
        out["tags"] = _kv(tags)
    return out


def run_json(run: Run, models: RunModels | None = None) -> dict[str, Any]:
    """A run with MLflow's system tags (run name, parent) kept in step with its info."""
    info = run.info
    tags = dict(run.tags)
    tags[RUN_NAME_TAG] = info.run_name
    if info.parent_run_id and PARENT_TAG not in tags:
        tags[PARENT_TAG] = info.parent_run_id
    steps, stamps = run.metric_steps, run.metric_timestamps
    data: dict[str, Any] = {}
    if run.metrics:
        data["metrics"] = [
            {"key": k, "value": num(v), "timestamp": stamps.get(k, 0), "step": steps.get(k, 0)}
            for k, v in run.metrics.items()
        ]
    if run.params:
        data["params"] = _kv(run.params)
    data["tags"] = _kv(tags)
    inputs: dict[str, Any] = {}
    if run.inputs:
        inputs["dataset_inputs"] = [dataset_input_json(d) for d in run.inputs]
    out: dict[str, Any] = {"info": run_info_json(info), "data": data, "inputs": inputs}
    if models is not None:
        if models.inputs:
            inputs["model_inputs"] = [{"model_id": m} for m in models.inputs]
        if models.outputs:
            out["outputs"] = {
                "model_outputs": [{"model_id": m, "step": step} for m, step in models.outputs]
            }
    return out


def metric_points_json(points: list[MetricPoint], with_run: bool = False) -> list[dict[str, Any]]:
    """Metric JSON of history points (``v - v == 0`` is the cheap "finite" test)."""
    if with_run:
        return [
            {
                "key": k,
                "value": v if v - v == 0 else num(v),
                "timestamp": ts,
                "step": st,
                "run_id": rid,
            }
            for k, v, ts, st, rid in points
        ]
    return [
        {"key": k, "value": v if v - v == 0 else num(v), "timestamp": ts, "step": st}
        for k, v, ts, st, _ in points
    ]


def logged_model_json(model: LoggedModel) -> dict[str, Any]:
    info: dict[str, Any] = {
        "model_id": model.model_id,
        "experiment_id": model.experiment_id,
        "name": model.name,
        "creation_timestamp_ms": model.creation_time,
        "last_updated_timestamp_ms": model.last_update_time,
        "artifact_uri": model.artifact_location,
        "status": f"LOGGED_MODEL_{model.status.value}",
    }
    if model.model_type:
        info["model_type"] = model.model_type
    if model.source_run_id:
        info["source_run_id"] = model.source_run_id
    if model.status_message:
        info["status_message"] = model.status_message
    if model.tags:
        info["tags"] = _kv(model.tags)
    data: dict[str, Any] = {}
    if model.params:
        data["params"] = _kv(model.params)
    if model.metrics:
        data["metrics"] = [
            {
                k: v
                for k, v in {
                    "key": m.key,
                    "value": num(m.value),
                    "timestamp": m.timestamp,
                    "step": m.step,
                    "model_id": model.model_id,
                    "run_id": m.run_id,
                    "dataset_name": m.dataset_name,
                    "dataset_digest": m.dataset_digest,
                }.items()
                if v is not None
            }
            for m in model.metrics
        ]
    return {"info": info, "data": data}
