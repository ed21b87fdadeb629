"""Serving's domain objects (pure pydantic): endpoints, model references, traffic policies.

An endpoint file (``strata serve --config endpoints.yaml``) is a :class:`ServeConfig`::

    endpoints:
      - model: flights@production        # or flights/3, runs:/RUN_ID/model
        batching: {enabled: false, max_batch_size: 64, max_latency_ms: 2}
    prediction_log: {enabled: true}

``strata serve flights@production`` builds the same object from its arguments.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from strata.core.errors import InvalidInput

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}"
_REF = re.compile(
    rf"^(?P<name>{_NAME})(?:@(?P<alias>[a-z][a-z0-9_\-]{{0,63}})|/(?P<version>[0-9]+))?$"
)
_RUN_REF = re.compile(r"^runs:/(?P<run>[A-Za-z0-9_\-]{1,64})/(?P<path>[A-Za-z0-9_.\-/]{1,256})$")

Runtime = Literal["native", "onnx", "auto"]
Path = Literal["primary", "canary", "fallback", "fallback_cache", "shadow", "cache"]
PATHS: tuple[str, ...] = ("primary", "canary", "fallback", "fallback_cache", "shadow", "cache")


_ENDPOINT = re.compile(rf"^{_NAME}$")


def check_endpoint_name(name: str) -> str:
    """``name`` when it is a valid endpoint name (a registry model name's rules: it appears
    in URL paths and storage paths); InvalidInput otherwise."""
    if not isinstance(name, str) or not _ENDPOINT.match(name):
        raise InvalidInput(
            f"Endpoint name {name!r} must start with a letter or digit and hold only letters, "
            "digits, '.', '_' and '-' (at most 128)",
            details={"field": "name", "received": str(name)},
        )
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(_Strict):
    """What an endpoint serves: ``NAME@ALIAS`` (followed as the alias moves), ``NAME/VERSION``
    (pinned) or ``runs:/RUN_ID/PATH`` (a run's model, outside the registry)."""

    text: str
    name: str
    alias: str | None = None
    version: str | None = None
    run_id: str | None = None
    path: str | None = None
    directory: str | None = None
    """A model directory on this machine (``./model``, ``/opt/strata/model``)."""

    @property
    def follows(self) -> bool:
        """True when the version can change under the endpoint (an alias, or ``NAME``:
        the latest version)."""
        return self.alias is not None or self.latest

    @property
    def latest(self) -> bool:
        return (
            self.run_id is None
            and self.directory is None
            and self.alias is None
            and self.version is None
        )

    @property
    def registered(self) -> bool:
        return self.run_id is None and self.directory is None

    def uri(self, version: str | None = None) -> str:
        """The URI ``strata.models.load`` resolves (a pinned version when given)."""
        if self.directory is not None:
            return self.directory
        if self.run_id is not None:
            return f"runs:/{self.run_id}/{self.path}"
        if version is not None:
            return f"models:/{self.name}/{version}"
        if self.alias is not None:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version or 'latest'}"


def parse_ref(text: str) -> ModelRef:
    """A :class:`ModelRef` from ``flights@production``, ``flights/3``, ``flights`` (its latest
    version), ``runs:/ID/model`` (``models:/`` prefixes accepted) or a model directory
    (``./model``, ``/opt/strata/model``: what ``strata deploy build`` images serve);
    InvalidInput showing the forms otherwise."""
    raw = text.strip()
    if raw.startswith(("/", "./", "../")) and raw.isprintable():
        name = raw.rstrip("/").rsplit("/", 1)[-1] or "model"
        safe = re.sub(r"[^A-Za-z0-9_.\-]", "-", name).lstrip(".-_") or "model"
        return ModelRef(text=raw, name=safe[:128], directory=raw)
    run = _RUN_REF.match(raw)
    if run is not None and ".." not in run["path"].split("/"):
        path = run["path"].strip("/")
        return ModelRef(text=raw, name=path.replace("/", "-"), run_id=run["run"], path=path)
    m = _REF.match(raw.removeprefix("models:/"))
    if m is None:
        raise InvalidInput(
            f"Model reference {text!r} must look like NAME@ALIAS (flights@production), "
            "NAME/VERSION (flights/3), NAME (its latest version), runs:/RUN_ID/PATH or a "
            "model directory (./model)",
            details={"field": "model", "received": text},
        )
    return ModelRef(text=raw, name=m["name"], alias=m["alias"], version=m["version"])


class Batching(_Strict):
    """Adaptive batching of one endpoint (Triton's semantics): a queue per served version
    flushes when ``max_batch_size`` rows wait or the oldest request waited
    ``max_latency_ms``, and at once when the model is idle. On by default (docs/serving.md
    has the measurement)."""

    enabled: bool = True
    max_batch_size: int = Field(default=64, ge=1, le=100_000)
    max_latency_ms: float = Field(default=2.0, gt=0, le=10_000)


class Target(_Strict):
    """A canary candidate: a model reference and its share of the traffic (0 keeps the
    candidate configured and loaded but sends it nothing: a canary turned off)."""

    model: str
    weight: float = Field(ge=0, le=1)

    @field_validator("model")
    @classmethod
    def _ref(cls, value: str) -> str:
        parse_ref(value)
        return value


class Shadow(_Strict):
    """Mirror ``fraction`` of the requests to ``model`` asynchronously; its outputs go to the
    prediction log only, its failures never reach the caller."""

    model: str
    fraction: float = Field(default=1.0, gt=0, le=1)

    @field_validator("model")
    @classmethod
    def _ref(cls, value: str) -> str:
        parse_ref(value)
        return value


class Fallback(_Strict):
    """What answers when the primary errors, exceeds ``timeout_ms`` or (a classifier) its
    highest probability is below ``min_confidence``: with ``cached``, the last good answer
    given for the same inputs (path ``fallback_cache``; stale-if-error: kept past any
    response cache's TTL, the last ``cache_entries`` distinct inputs), then ``model``
    (path ``fallback``). At least one of the two."""

    model: str | None = None
    cached: bool = False
    #: The last good answers kept (LRU) for ``cached``: bounded so memory is.
    cache_entries: int = Field(default=10_000, ge=1, le=100_000)
    timeout_ms: float | None = Field(default=None, gt=0)
    min_confidence: float | None = Field(default=None, gt=0, le=1)

    @field_validator("model")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None:
            parse_ref(value)
        return value

    def text(self) -> str:
        """For a table cell: ``cached answers, then flights/2``."""
        parts = ["cached answers"] if self.cached else []
        if self.model is not None:
            parts.append(self.model)
        return ", then ".join(parts)

    @model_validator(mode="after")
    def _something_answers(self) -> Fallback:
        if self.model is None and not self.cached:
            raise ValueError("a fallback needs a model, cached: true, or both")
        return self


class Cache(_Strict):
    """A response cache keyed by the digest of the inputs (LRU + TTL)."""

    #: Each entry holds a request's inputs and outputs: bounded so memory is.
    max_entries: int = Field(default=10_000, ge=1, le=100_000)
    ttl_seconds: float = Field(default=60.0, gt=0)


def policy_refs(policy: TrafficPolicy) -> list[tuple[str, str]]:
    """``(field, model reference)`` for every model ``policy`` names."""
    refs = [(f"canary[{i}].model", t.model) for i, t in enumerate(policy.canary)]
    if policy.shadow is not None:
        refs.append(("shadow.model", policy.shadow.model))
    if policy.fallback is not None and policy.fallback.model is not None:
        refs.append(("fallback.model", policy.fallback.model))
    return refs


class TrafficPolicy(_Strict):
    """How an endpoint's requests are routed. ``canary`` sends each candidate its weight's
    share (the rest goes to the primary), sticky by ``sticky_key``: ``header:NAME`` or
    ``field:NAME`` (a request without the key is assigned by its request id)."""

    canary: list[Target] = Field(default_factory=list)
    sticky_key: str = "header:x-strata-key"
    shadow: Shadow | None = None
    fallback: Fallback | None = None
    cache: Cache | None = None

    @field_validator("sticky_key")
    @classmethod
    def _key(cls, value: str) -> str:
        kind, _, name = value.partition(":")
        if kind not in ("header", "field") or not name:
            raise ValueError("sticky_key must be header:NAME or field:NAME")
        return value

    @model_validator(mode="after")
    def _weights(self) -> TrafficPolicy:
        if sum(t.weight for t in self.canary) > 1.0 + 1e-9:
            raise ValueError("canary weights add up to more than 1")
        return self


class EndpointConfig(_Strict):
    """One served model. ``name`` defaults to the model's registered name (the OIP model
    name; the OIP version is the registry version)."""

    model: str
    name: str | None = None
    runtime: Runtime = "native"
    trusted: bool = False
    batching: Batching = Field(default_factory=Batching)
    policy: TrafficPolicy = Field(default_factory=TrafficPolicy)

    @field_validator("model")
    @classmethod
    def _ref(cls, value: str) -> str:
        parse_ref(value)
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else check_endpoint_name(value)

    @property
    def ref(self) -> ModelRef:
        return parse_ref(self.model)

    @property
    def endpoint(self) -> str:
        return self.name or self.ref.name


class PredictionLogConfig(_Strict):
    """The prediction log (PROTOCOL format, ``predictions/model=<name>/date=<day>/``): a
    bounded queue of ``max_rows`` rows and ``max_bytes`` bytes (estimated per request, the
    write in progress included) written as Parquet every ``flush_seconds`` or ``flush_rows``
    rows; rows arriving at a full queue are dropped and counted."""

    enabled: bool = True
    max_rows: int = Field(default=200_000, ge=1)
    max_bytes: int = Field(default=256 * 2**20, ge=1)
    flush_rows: int = Field(default=50_000, ge=1)
    flush_seconds: float = Field(default=5.0, gt=0)


class ServeConfig(_Strict):
    """Everything ``strata serve`` needs: endpoints, alias polling, limits, the log."""

    endpoints: list[EndpointConfig] = Field(min_length=1)
    poll_seconds: float = Field(default=2.0, gt=0, le=3600)
    report_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Each worker reports its endpoints (status and counts, what ``strata serving
    endpoints`` and the UI show) at every change and at least this often (at its polls)."""
    max_in_flight: int = Field(default=256, ge=1)
    """Requests a worker holds at once; the next gets 503 with Retry-After."""
    threads: int = Field(default=1, ge=1, le=256)
    """Threads per predict (the OpenMP/BLAS pools of LightGBM, XGBoost, numpy), pinned per
    worker through the environment before any model library loads."""
    large_batch_threads: int | None = Field(default=None, ge=1, le=256)
    """Threads per predict for requests of more than 64 rows (they run in the predict pool,
    whose threads get this many OpenMP threads; small ones keep ``threads``). Default: the
    CPUs divided by the workers (``strata serve`` fills it in), at least 1."""
    prediction_log: PredictionLogConfig = Field(default_factory=PredictionLogConfig)

    @model_validator(mode="after")
    def _unique(self) -> ServeConfig:
        seen: set[str] = set()
        for ep in self.endpoints:
            if ep.endpoint in seen:
                raise ValueError(
                    f"two endpoints are named {ep.endpoint!r}; give one a different name"
                )
            seen.add(ep.endpoint)
        return self


class EndpointStatus(BaseModel):
    """What one endpoint serves right now, in one worker. Workers publish it to the
    artifact store (``updated_at``, ``server``), where the serving service lists it.

    A report, not a setting: fields it does not know are ignored (a newer worker's report
    read by an older server or SDK during a rolling upgrade), where configs refuse them."""

    model_config = ConfigDict(extra="ignore")

    name: str
    model: str
    version: str | None = None
    ready: bool = False
    error: str | None = None
    flavor: str | None = None
    runtime: str | None = None
    loaded_versions: list[str] = Field(default_factory=list)
    policy: TrafficPolicy = Field(default_factory=TrafficPolicy)
    policy_errors: dict[str, str] = Field(default_factory=dict)
    stats: dict[str, float] = Field(default_factory=dict)
    """The worker's totals since it started: ``requests``, ``errors``, ``latency_s``
    (summed) and answers by path (``primary``, ``canary``, ``shadow``, ``fallback``...);
    since its previous report (the live figures): ``rate_rps`` (requests per second),
    ``window_requests``, ``window_errors`` and ``window_latency_s``. Listed, an endpoint's
    are its live workers' added up (``workers``)."""
    updated_at: datetime | None = None
    server: str | None = None
    """The reporting worker (``host:pid``); listed, the newest report's."""
    workers: int = 1
    """Listed: the workers whose reports were added up (those that reported lately)."""
    report_seconds: float | None = None
    """How often the reporting worker reports at least (its ``ServeConfig.report_seconds``):
    a listing counts a worker live for three of these (at least 90 s)."""


JobKind = Literal["batch", "stream"]
JobState = Literal["running", "succeeded", "failed", "cancelled"]


def _registered_model(value: str) -> str:
    ref = parse_ref(value)
    if not ref.registered:
        raise ValueError(
            "a job scores a registered model (NAME@ALIAS, NAME/VERSION or NAME), not a "
            "directory or a run's path"
        )
    return value


class BatchJobSpec(_Strict):
    """A batch scoring job: ``model`` over the dataset version ``input`` into a new version
    of ``output`` (the fields of ``strata predict batch`` a server may run)."""

    model: str
    input: str
    output: str
    chunk_rows: int = Field(50_000, ge=100, le=10_000_000)
    workers: int | None = Field(None, ge=1, le=64)
    executor: Literal["local", "inline", "ray"] | None = None
    keep: list[str] = Field(default_factory=list, max_length=100)
    proba: bool = False
    runtime: Literal["native", "onnx", "onnx-int8"] = "native"

    _model = field_validator("model")(_registered_model)


class StreamJobSpec(_Strict):
    """A stream scorer: ``model`` over the records of ``source`` into ``sink``
    (``kafka://HOST:PORT/TOPIC`` or ``redis://HOST:PORT/DB?stream=NAME``)."""

    model: str
    source: str
    sink: str
    group: str | None = Field(None, min_length=1, max_length=200)
    id_field: str = Field("id", min_length=1, max_length=200)
    batch_size: int = Field(1000, ge=1, le=1_000_000)
    batch_seconds: float = Field(1.0, gt=0, le=3600)
    max_batches: int | None = Field(None, ge=1)
    idle_seconds: float | None = Field(None, gt=0)
    proba: bool = False
    runtime: Literal["native", "onnx", "onnx-int8"] = "native"

    _model = field_validator("model")(_registered_model)


class ScoringJob(BaseModel):
    """A scoring job's state (``progress``: ``rows_done``/``rows_total`` for a batch job,
    ``records``/``batches``/``errors`` for a stream)."""

    id: str
    kind: JobKind
    state: JobState = "running"
    spec: dict[str, Any]
    created_by: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    server: str | None = None
    """``HOST:PID`` of the process running the job."""
    heartbeat_at: datetime | None = None
    """When that process last recorded it still runs the job (every few seconds)."""
    progress: dict[str, float] = Field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    cancel_requested: bool = False


def load_config(path: Any) -> ServeConfig:
    """A :class:`ServeConfig` from a YAML file; InvalidInput naming the file and the field."""
    from pathlib import Path as FilePath

    import yaml
    from pydantic import ValidationError

    file = FilePath(path)
    try:
        doc = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise InvalidInput(f"Cannot read {file}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{file} is not valid YAML: {exc}") from None
    try:
        return ServeConfig.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise InvalidInput(
            f"{file}: {where}: {first['msg']}", details={"field": where, "file": str(file)}
        ) from None
