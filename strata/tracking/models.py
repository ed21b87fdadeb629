"""Tracking domain objects: experiments, runs, params, metrics, tags, dataset inputs, and
MLflow 3's LoggedModels.

Times are epoch milliseconds (UTC), as in MLflow, so values cross the MLflow REST API
unchanged. Metric points are plain named tuples: a training loop creates many of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from strata.core.page import Page as Page  # re-exported: tracking lists return it

#: Artifact URIs of runs and experiments; the path after it is the artifact-store path.
ARTIFACT_SCHEME = "mlflow-artifacts:/"
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"

# Limits (documented in docs/tracking.md). Values are MLflow's or larger.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_MODEL_NAME_LENGTH = 500
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_TOTAL = 1000


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class LifecycleStage(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


class ViewType(StrEnum):
    """Which lifecycle stages a search returns."""

    ACTIVE_ONLY = "ACTIVE_ONLY"
    DELETED_ONLY = "DELETED_ONLY"
    ALL = "ALL"


class Metric(NamedTuple):
    """One metric point. ``timestamp`` in epoch ms; ``value`` may be NaN or ±inf."""

    key: str
    value: float
    timestamp: int
    step: int = 0


class Param(NamedTuple):
    key: str
    value: str


class RunTag(NamedTuple):
    key: str
    value: str


class MetricPoint(NamedTuple):
    """A metric point as returned by history queries (``run_id`` set by bulk queries).

    A named tuple, not a model: histories hold 100k+ points and must load in milliseconds.
    """

    key: str
    value: float
    timestamp: int
    step: int
    run_id: str | None = None


class Experiment(BaseModel):
    model_config = ConfigDict(frozen=True)

    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: LifecycleStage
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    creation_time: int
    last_update_time: int


class DatasetInput(BaseModel):
    """A dataset a run used: a reference (name + digest + source) and the context it served.

    ``context`` is ``train``, ``validation``, ``test`` or any label (MLflow's
    ``mlflow.data.context`` input tag).
    """

    name: str
    digest: str
    source_type: str = ""
    source: str = ""
    schema_: str | None = Field(None, alias="schema")
    profile: str | None = None
    context: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    model_config = ConfigDict(populate_by_name=True)


class RunInfo(BaseModel):
    run_id: str
    run_name: str
    experiment_id: str
    user_id: str
    status: RunStatus
    start_time: int
    end_time: int | None = None
    lifecycle_stage: LifecycleStage
    artifact_uri: str
    parent_run_id: str | None = None


#: At most this many experiments per search_datasets call, and this many summaries back (MLflow).
MAX_DATASET_SEARCH_EXPERIMENTS = 20
MAX_DATASET_SUMMARIES = 1000


class DatasetSummary(BaseModel):
    """A dataset some run of ``experiment_id`` logged as an input, in ``context`` (MLflow's
    ``experiments/search-datasets``; ``context`` is empty when the input had none)."""

    experiment_id: str
    name: str
    digest: str
    context: str = ""


class InputUse(BaseModel):
    """A run that logged the dataset ``name`` with ``digest`` as an input, in ``context``."""

    name: str
    digest: str
    context: str = ""
    run: RunInfo


class Run(BaseModel):
    """A run with its params, tags and the latest value of each metric."""

    info: RunInfo
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    metric_steps: dict[str, int] = Field(default_factory=dict)
    metric_timestamps: dict[str, int] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    inputs: list[DatasetInput] = Field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.info.run_id


class FileInfo(BaseModel):
    """An artifact: ``path`` is relative to the run's artifact root."""

    path: str
    is_dir: bool
    file_size: int | None = None


# -- LoggedModels (MLflow 3) -----------------------------------------------------------------
class LoggedModelStatus(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    UPLOAD_FAILED = "UPLOAD_FAILED"


class ModelDirection(StrEnum):
    """How a run relates to a LoggedModel: it used the model, or it produced it."""

    INPUT = "input"
    OUTPUT = "output"


class ModelOrder(NamedTuple):
    """One key of a logged-model search's order: an attribute (``name``,
    ``creation_time``...) or ``metrics.<key>`` (each model's latest point of it, optionally
    only those logged against ``dataset_name``/``dataset_digest``). A plain
    ``(field, ascending)`` pair is one too."""

    field: str
    ascending: bool = True
    dataset_name: str | None = None
    dataset_digest: str | None = None


class DatasetRef(NamedTuple):
    """A dataset a logged-model search is limited to (its metrics logged against it); no
    digest: any version of the named dataset."""

    name: str
    digest: str | None = None


class ModelMetric(BaseModel):
    """One metric point recorded on a LoggedModel (``timestamp`` in epoch ms; the value may be
    NaN or ±inf), optionally with the run and the dataset it was measured with."""

    model_id: str
    key: str
    value: float
    timestamp: int
    step: int = 0
    run_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


class LoggedModel(BaseModel):
    """A model logged by a run (or on its own) with params, tags, metrics and an artifact
    root of its own, ``{experiment artifact location}/models/{model_id}/artifacts``."""

    model_id: str
    experiment_id: str
    name: str
    artifact_location: str
    status: LoggedModelStatus
    status_message: str | None = None
    model_type: str | None = None
    source_run_id: str | None = None
    creator: str
    lifecycle_stage: LifecycleStage
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    metrics: list[ModelMetric] = Field(default_factory=list)


class RunModels(BaseModel):
    """A run's model inputs (ids) and outputs (id, step), ordered by model id."""

    inputs: list[str] = Field(default_factory=list)
    outputs: list[tuple[str, int]] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunRecords:
    """A page of runs as the rows they are stored in: plain tuples, none of the per-run models
    of :class:`Run`, for a renderer that writes its own format straight from them (the MLflow
    search route: issue 17, a page of 1,000 runs was mostly spent building models).

    ``runs``, in the search's order: ``(run_id, experiment_id, name, user_id, status,
    start_time, end_time, lifecycle_stage, artifact_uri, parent_run_id)``. The others are
    ordered by run id, then: ``params`` and ``tags`` ``(run_id, key, value)`` by key;
    ``metrics``, the latest point of each key, ``(run_id, key, value, is_nan, step,
    timestamp)`` by key (``value`` is meaningless where ``is_nan``); ``inputs`` ``(run_id,
    name, digest, context, source_type, source, schema, profile, tags_json)`` in the order
    they were logged (``context`` is ``""`` when none; ``tags_json`` a JSON object);
    ``models`` ``(run_id, model_id, direction, step)`` by model id (``direction`` a
    :class:`ModelDirection` value).

    ``params_json``, when a reader asked for it and the store can write it (SQLite's JSON
    functions): each run's params already as MLflow's JSON list (``[{"key": ..., "value":
    ...}]`` by key, the bytes ``orjson`` writes for the same list), with ``params`` left
    empty; runs without params are absent.
    """

    runs: Sequence[Sequence[Any]]
    params: Sequence[Sequence[Any]] = ()
    tags: Sequence[Sequence[Any]] = ()
    metrics: Sequence[Sequence[Any]] = ()
    inputs: Sequence[Sequence[Any]] = ()
    models: Sequence[Sequence[Any]] = ()
    next_page_token: str | None = None
    params_json: Mapping[str, str] | None = None

    @classmethod
    def from_runs(
        cls, runs: Sequence[Run], models: dict[str, RunModels], next_page_token: str | None
    ) -> RunRecords:
        """The records of runs already built (what a service without a leaner way gives)."""
        out: dict[str, list[tuple[Any, ...]]] = {
            k: [] for k in ("params", "tags", "metrics", "inputs", "models")
        }
        for run in sorted(runs, key=lambda r: r.info.run_id):
            rid = run.info.run_id
            out["params"] += [(rid, k, v) for k, v in sorted(run.params.items())]
            out["tags"] += [(rid, k, v) for k, v in sorted(run.tags.items())]
            out["metrics"] += [
                (
                    rid,
                    k,
                    v,
                    math.isnan(v),
                    run.metric_steps.get(k, 0),
                    run.metric_timestamps.get(k, 0),
                )
                for k, v in sorted(run.metrics.items())
            ]
            out["inputs"] += [
                (
                    rid,
                    d.name,
                    d.digest,
                    d.context or "",
                    d.source_type,
                    d.source,
                    d.schema_,
                    d.profile,
                    json.dumps(d.tags, sort_keys=True),
                )
                for d in run.inputs
            ]
            linked = models.get(rid) or RunModels()
            out["models"] += sorted(
                [(rid, m, ModelDirection.INPUT.value, 0) for m in linked.inputs]
                + [(rid, m, ModelDirection.OUTPUT.value, step) for m, step in linked.outputs],
                key=lambda link: link[1],
            )
        infos = [r.info for r in runs]
        rows = [
            (
                i.run_id,
                i.experiment_id,
                i.run_name,
                i.user_id,
                i.status.value,
                i.start_time,
                i.end_time,
                i.lifecycle_stage.value,
                i.artifact_uri,
                i.parent_run_id,
            )
            for i in infos
        ]
        return cls(
            rows,
            params=out["params"],
            tags=out["tags"],
            metrics=out["metrics"],
            inputs=out["inputs"],
            models=out["models"],
            next_page_token=next_page_token,
        )


def proxied_store_path(uri: str) -> str | None:
    """The artifact-store path of an ``mlflow-artifacts:`` URI; None for other schemes."""
    scheme = ARTIFACT_SCHEME.rstrip("/")
    if not uri.startswith(scheme):
        return None
    rest = uri[len(scheme) :]
    if rest.startswith("//"):  # mlflow-artifacts://host/path: the host is not ours to check
        rest = "/" + rest[2:].partition("/")[2]
    return rest.strip("/")
