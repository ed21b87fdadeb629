"""Monitoring's domain objects (pure): drift options and reports, sketches' wire form, prediction
log queries, feedback, performance windows, alert rules and their events.

Times are timezone-aware UTC datetimes. Imports core only.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from strata.core.errors import InvalidInput


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Method(StrEnum):
    """A per-column drift test. ``auto`` picks Evidently's default for the column: with more
    than 1,000 reference rows normalized Wasserstein (numeric with more than 5 distinct
    values) or Jensen-Shannon (categorical, or numeric with at most 5), threshold 0.1; with
    1,000 or fewer KS (numeric), chi² (more than 2 distinct values) or the two-proportion
    Z-test (2 values), drift when p < 0.05."""

    AUTO = "auto"
    WASSERSTEIN = "wasserstein"
    JENSENSHANNON = "jensenshannon"
    KS = "ks"
    CHISQUARE = "chisquare"
    Z = "z"
    PSI = "psi"


class Binning(StrEnum):
    """Bins of the PSI (and of Jensen-Shannon on a numeric column with more than 20 distinct
    reference values): ``sturges`` over both samples, as Evidently does, or ``quantile``
    (deciles of the reference)."""

    STURGES = "sturges"
    QUANTILE = "quantile"


ColumnKind = Literal["numeric", "categorical"]

#: Methods whose score is a p-value (drift when score < threshold); others are distances
#: (drift when score >= threshold).
P_VALUE_METHODS = frozenset({Method.KS, Method.CHISQUARE, Method.Z})
DEFAULT_THRESHOLDS = {
    Method.WASSERSTEIN: 0.1,
    Method.JENSENSHANNON: 0.1,
    Method.KS: 0.05,
    Method.CHISQUARE: 0.05,
    Method.Z: 0.05,
    Method.PSI: 0.1,
}
PSI_MAJOR = 0.25  # PSI at or above it is a major shift (reported as ``severity``)


class ColumnTest(_Strict):
    """A column's test when not ``auto``: a method, optionally its threshold and binning."""

    method: Method = Method.AUTO
    threshold: float | None = Field(default=None, gt=0)
    bins: Binning = Binning.STURGES
    n_bins: int = Field(default=10, ge=2, le=1000)


class DriftOptions(_Strict):
    """What ``drift`` compares and how.

    ``columns``: the columns to test (default: every column both sides share, except
    temporal ones); ``column_types``: ``numeric`` or ``categorical`` per column where the
    storage type does not tell (an integer code that is a category); ``tests``: a method per
    column (``{"distance": {"method": "psi", "bins": "quantile"}}``), ``method``: one for all
    columns not in ``tests`` (``threshold`` and ``bins``, the PSI's binning, with it);
    ``drift_share``: the share of drifted columns from which the
    dataset drifts (Evidently: 0.5); ``store_as``: record the result as a point of the drift
    time series of that model (``window_end`` its time, default now)."""

    columns: list[str] | None = Field(default=None, max_length=10_000)
    column_types: dict[str, ColumnKind] = Field(default_factory=dict)
    method: Method = Method.AUTO
    threshold: float | None = Field(default=None, gt=0)
    bins: Binning = Binning.STURGES
    tests: dict[str, ColumnTest] = Field(default_factory=dict)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    store_as: str | None = Field(default=None, max_length=128)
    window_end: dt.datetime | None = None


class ColumnDrift(BaseModel):
    """One column's result. ``score`` is a distance (drift when >= threshold) or a p-value
    (drift when < threshold, methods ks, chisquare, z). ``reference``/``current`` hold the
    distributions the HTML report draws (bin edges or categories, and shares)."""

    drifted: bool
    method: Method
    score: float
    threshold: float
    kind: ColumnKind
    reference_rows: int
    current_rows: int
    reference_nulls: int = 0
    current_nulls: int = 0
    exact: bool = True
    severity: str | None = None
    status: Literal["tested", "no data"] = "tested"
    overlay: dict[str, Any] = Field(default_factory=dict)


class DriftReport(BaseModel):
    """The ``--json`` shape is ``columns`` (name → drifted, method, score, threshold),
    ``drifted_share`` and ``dataset_drift``; the rest says what was compared.

    ``status`` is ``no data`` when either side has no rows (nothing is tested then);
    ``missing`` lists requested or reference columns absent on one side (the rest are
    tested)."""

    status: Literal["ok", "no data"] = "ok"
    reference: str
    current: str
    reference_rows: int
    current_rows: int
    columns: dict[str, ColumnDrift] = Field(default_factory=dict)
    drifted_share: float = 0.0
    drifted_count: int = 0
    dataset_drift: bool = False
    drift_share_threshold: float = 0.5
    missing: dict[str, list[str]] = Field(default_factory=dict)
    duration_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The issue's JSON shape plus status and missing columns."""
        return {
            "status": self.status,
            "reference": self.reference,
            "current": self.current,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "columns": {
                name: {
                    "drifted": c.drifted,
                    "method": c.method.value,
                    "score": c.score,
                    "threshold": c.threshold,
                }
                for name, c in self.columns.items()
            },
            "drifted_share": self.drifted_share,
            "dataset_drift": self.dataset_drift,
            "missing": self.missing,
        }


class StoredProfile(BaseModel):
    """A reference saved as mergeable sketches (``profile:NAME`` in a REF)."""

    name: str
    source: str
    rows: int
    columns: list[str]
    created_at: dt.datetime


class SeriesPoint(BaseModel):
    """A point of a monitored series of a model: ``drift.share``, ``drift.score.<feature>``,
    performance metrics (``f1``, ``mae``...) and service health (``p99_latency_ms``...);
    ``labels`` its context (method, threshold, version, segment...)."""

    model: str
    series: str
    ts: dt.datetime
    value: float
    labels: dict[str, Any] = Field(default_factory=dict)


NAME_MAX = 128


def check_name(value: str, field: str = "name") -> str:
    """A model, profile or rule name: 1-128 characters of letters, digits, ``._-``."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", value or ""):
        raise InvalidInput(
            f"{field} must be 1-128 letters, digits, '.', '_' or '-' starting with a letter "
            f"or digit, got {value!r}",
            details={"field": field},
        )
    return value


class TimeWindow(_Strict):
    """[since, until): naive times are UTC."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


LogFormat = Literal["parquet", "csv", "jsonl"]


class _ModelWindow(TimeWindow):
    """A model and a time window [since, until): naive times are UTC."""

    model: str = Field(min_length=1, max_length=NAME_MAX)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return check_name(value, "model")


class LogQuery(_ModelWindow):
    """A selection of a model's prediction log: ``version`` a registry version number or an
    alias (resolved through the registry), [since, until) in UTC, and exact matches on
    ``request_id``, ``entity_key``, ``endpoint`` and ``path``; newest first, at most
    ``limit`` rows (1-10,000) for :meth:`query_log` (an export takes every matching row)."""

    version: str | None = Field(default=None, max_length=NAME_MAX)
    request_id: str | None = Field(default=None, max_length=256)
    entity_key: str | None = Field(default=None, max_length=512)
    endpoint: str | None = Field(default=None, max_length=NAME_MAX)
    path: str | None = Field(default=None, max_length=32)
    limit: int = Field(default=1000, ge=1, le=10_000)


class LogRow(BaseModel):
    """One logged row (the PROTOCOL.md columns); subscriptable like the dict it replaces."""

    request_id: str
    row: int
    ts: dt.datetime
    model: str
    version: str
    endpoint: str
    path: str
    latency_ms: float
    entity_key: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class LogRows(BaseModel):
    """Rows of the prediction log: requests newest first, each request's rows in order."""

    model: str
    version: str | None = None
    rows: list[LogRow]
    truncated: bool = False


class LogStats(BaseModel):
    """Counts of a window of the log: rows, requests, by version and by path, and latency
    percentiles (ms) per request."""

    model: str
    rows: int
    requests: int
    by_version: dict[str, int] = Field(default_factory=dict)
    by_path: dict[str, int] = Field(default_factory=dict)
    latency_ms: dict[str, float] = Field(default_factory=dict)
    first: dt.datetime | None = None
    last: dt.datetime | None = None


class LogSettings(_Strict):
    """Per endpoint (model): the share of requests to log (``sample_rate``, 0-1) and how many
    days of partitions to keep (``retention_days``; older date partitions are deleted by
    :meth:`apply_retention`)."""

    model: str = ""
    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    retention_days: int = Field(default=30, ge=1, le=36_500)
    updated_at: dt.datetime | None = None


class RetentionResult(BaseModel):
    model: str
    deleted_partitions: list[str]
    kept_partitions: int


class FeedbackItem(_Strict):
    """A ground-truth label for a prediction: by ``request_id`` (and ``row`` within the
    request, default 0), or by ``entity_key`` + ``ts`` (the label applies to the entity's
    latest prediction at or before ``ts``)."""

    label: Any
    request_id: str | None = Field(default=None, max_length=128)
    row: int = Field(default=0, ge=0, le=2**31 - 1)
    entity_key: str | None = Field(default=None, max_length=512)
    ts: dt.datetime | None = None

    @field_validator("ts")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value

    @model_validator(mode="after")
    def _one_key(self) -> FeedbackItem:
        by_request = self.request_id is not None
        by_entity = self.entity_key is not None and self.ts is not None
        if by_request == by_entity:
            raise ValueError("give either request_id, or entity_key and ts")
        if self.label is None or isinstance(self.label, (dict, list)):
            raise ValueError("label must be a number, a string or a boolean")
        return self


class FeedbackResult(BaseModel):
    """What a feedback call stored: every item is kept (a label that arrives before its
    prediction is logged matches later); ``unknown`` counts the items whose request id or
    entity is not in the prediction log yet, the first of them listed."""

    model: str
    received: int
    matched: int
    unknown: int
    unknown_request_ids: list[str] = Field(default_factory=list)
    unknown_entity_keys: list[str] = Field(default_factory=list)


Task = Literal["auto", "classification", "regression"]


class PerformanceOptions(_ModelWindow):
    """A performance query: the model's log in [since, until) cut in windows of
    ``window`` (``1h``, ``1d``, ``7d``...) from ``since``; per ``version`` unless
    ``by_version`` is off, per value of the input column ``segment`` when given; metrics with
    ``confidence`` intervals. ``store``: record each window's metrics as series points (at
    the window's end)."""

    window: str = Field(default="1d", pattern=r"^[1-9][0-9]{0,4}[mhdw]$")
    version: str | None = Field(default=None, max_length=NAME_MAX)
    by_version: bool = True
    segment: str | None = Field(default=None, max_length=256)
    task: Task = "auto"
    positive: str | None = Field(default=None, max_length=256)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    store: bool = False


class Metric(BaseModel):
    value: float
    low: float | None = None
    high: float | None = None


class PerformanceWindow(BaseModel):
    """One window (and version, segment): ``predictions`` logged, ``labelled`` of them,
    ``coverage`` = labelled / predictions; ``metrics`` from the labels, ``estimated`` from the
    model's confidence alone (CBPE: expected confusion matrix from the predicted
    probabilities, assumed calibrated) over every prediction of the window."""

    start: dt.datetime
    end: dt.datetime
    version: str | None = None
    segment: str | None = None
    predictions: int
    labelled: int
    coverage: float
    metrics: dict[str, Metric] = Field(default_factory=dict)
    estimated: dict[str, float] = Field(default_factory=dict)


class PerformanceReport(BaseModel):
    model: str
    task: Literal["classification", "regression", "unknown"]
    window: str
    confidence: float
    windows: list[PerformanceWindow] = Field(default_factory=list)
    status: Literal["ok", "no data"] = "ok"


class WebhookAction(_Strict):
    """POST the firing as JSON to ``url`` (http/https; private, loopback and link-local
    addresses refused unless allowed by ``STRATA_WEBHOOK_ALLOW``), signed with HMAC-SHA256
    of ``<timestamp>.<body>`` keyed by the secret in the server's environment variable
    ``secret_env`` (the secret itself is never stored)."""

    type: Literal["webhook"] = "webhook"
    url: str = Field(min_length=8, max_length=2000)
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]{0,127}$")
    retries: int = Field(default=3, ge=0, le=10)


class RetrainAction(_Strict):
    """Start a training job from ``config`` (a TrainConfig as a mapping; the CLI reads it
    from YAML) with ``overrides`` (``KEY=VALUE``)."""

    type: Literal["retrain"] = "retrain"
    config: dict[str, Any]
    overrides: list[str] = Field(default_factory=list, max_length=100)


class RollbackAction(_Strict):
    """Move ``alias`` of the rule's model back to its previous version (registry history)."""

    type: Literal["rollback"] = "rollback"
    alias: str = Field(default="production", max_length=NAME_MAX)


class CanaryOffAction(_Strict):
    """Send no traffic to the canary of ``endpoint`` (default: the rule's model): every
    canary target's weight is set to 0 — the targets stay in the traffic policy (a weight
    set back turns the canary on again), the primary takes everything."""

    type: Literal["canary_off"] = "canary_off"
    endpoint: str | None = Field(default=None, max_length=NAME_MAX)


Action = Annotated[
    WebhookAction | RetrainAction | RollbackAction | CanaryOffAction, Field(discriminator="type")
]


class AlertRule(_Strict):
    """``expr`` is ``SERIES OP NUMBER [for N windows | for DURATION]`` over one of the model's
    series: ``drift.share > 0.3 for 2 windows``, ``p99_latency_ms > 50 for 5m``,
    ``f1 < 0.7``. OP is one of ``> >= < <= == !=``; DURATION ``30s``, ``5m``, ``2h``, ``1d``.
    A rule fires at most once per newest point (de-duplication) and not again within
    ``cooldown_s``; its actions run in order, each audited with the rule and values."""

    name: str = Field(min_length=1, max_length=NAME_MAX)
    model: str = Field(min_length=1, max_length=NAME_MAX)
    expr: str = Field(min_length=3, max_length=300)
    cooldown_s: int = Field(default=3600, ge=0, le=30 * 86400)
    actions: list[Action] = Field(default_factory=list, max_length=10)
    enabled: bool = True
    description: str = Field(default="", max_length=2000)

    @field_validator("name", "model")
    @classmethod
    def _names(cls, value: str) -> str:
        return check_name(value)


class AlertEvent(BaseModel):
    """A firing: the value and points that fired it, and what each action did."""

    id: int
    rule: str
    model: str
    fired_at: dt.datetime
    value: float
    detail: dict[str, Any] = Field(default_factory=dict)


class RuleState(BaseModel):
    """A rule with what the scheduler knows of it."""

    rule: AlertRule
    created_at: dt.datetime
    updated_at: dt.datetime
    last_fired_at: dt.datetime | None = None
    firing: bool = False
