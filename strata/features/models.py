"""Feature-store definitions and results: entities, feature views, feature services, plans.

A *feature reference* is ``VIEW:FEATURE`` (Feast's spelling). A feature view reads a
dataset version (``source="weather@latest"``), keyed by its entities'
join keys; with ``timestamp=`` it is a time series joined point in time (the latest row with
``event_ts <= the entity row's ts``, within ``ttl``), without it a static lookup (one row per
key). Times are timezone-aware UTC.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from strata.core.errors import InvalidInput

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ValueType(StrEnum):
    """The value types a feature or join key may have (DuckDB's type in brackets)."""

    INT64 = "int64"  # BIGINT
    INT32 = "int32"  # INTEGER
    FLOAT64 = "float64"  # DOUBLE
    FLOAT32 = "float32"  # FLOAT
    STRING = "string"  # VARCHAR
    BOOL = "bool"  # BOOLEAN
    TIMESTAMP = "timestamp"  # TIMESTAMPTZ (UTC)


#: ValueType -> the DuckDB type a column is cast to.
DUCKDB_TYPES = {
    ValueType.INT64: "BIGINT",
    ValueType.INT32: "INTEGER",
    ValueType.FLOAT64: "DOUBLE",
    ValueType.FLOAT32: "FLOAT",
    ValueType.STRING: "VARCHAR",
    ValueType.BOOL: "BOOLEAN",
    ValueType.TIMESTAMP: "TIMESTAMPTZ",
}


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(
            f"Invalid {what} name {name!r}: use letters, digits and _ (a letter or _ first, "
            "at most 128 characters)",
            details={"field": what},
        )
    return name


def entity_rows_error(obj: Any) -> InvalidInput:
    """The error for entity rows of a type that does not convert to a table."""
    return InvalidInput(
        f"Entity rows must be a pandas or polars DataFrame, an Arrow table, a list of dicts "
        f"or a dataset reference, not {type(obj).__name__}",
        details={"field": "entities"},
    )


def parse_duration(value: Any, field: str = "ttl") -> timedelta | None:
    """``"6h"``, ``"30m"``, ``"1d"``, ``"90s"``, seconds as a number, or a timedelta."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and (m := _DURATION_RE.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise InvalidInput(
        f"{field} must be a duration like '6h', '30m', '1d' or a number of seconds, got {value!r}",
        details={"field": field},
    )


def format_duration(value: timedelta | None) -> str | None:
    if value is None:
        return None
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds}s"


class _Spec(BaseModel):
    """Definitions accept ``Entity("origin", ...)`` as well as ``Entity(name="origin")``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        super().__init__(**data)


class Entity(_Spec):
    """What features describe: its join keys identify one instance (an airport, a plane)."""

    name: str
    join_keys: list[str] = Field(default_factory=list)
    #: Join key -> type; keys not named default to string.
    value_types: dict[str, ValueType] = Field(default_factory=dict)
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> Entity:
        check_name(self.name, "entity")
        keys = self.join_keys or [self.name]
        object.__setattr__(self, "join_keys", keys)
        for key in keys:
            check_name(key, "join key")
        unknown = set(self.value_types) - set(keys)
        if unknown:
            raise ValueError(f"value_types names {sorted(unknown)}, which are not join keys")
        return self

    def key_type(self, key: str) -> ValueType:
        return self.value_types.get(key, ValueType.STRING)


class FeatureField(_Spec):
    """One feature of a view: a column of the source with its type."""

    name: str
    dtype: ValueType = ValueType.FLOAT64
    description: str = ""

    def __init__(self, name: str | None = None, dtype: Any = None, /, **data: Any) -> None:
        if dtype is not None:
            data["dtype"] = dtype
        super().__init__(name, **data)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "feature")


class SqlSource(BaseModel):
    """A view's rows as one read-only SELECT over dataset versions, each input a view named
    by its alias: ``{sql: "SELECT origin, time_hour, temp - dewp AS spread FROM w",
    inputs: {w: weather@latest}}``. It runs sandboxed (only the inputs are readable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sql: str
    inputs: dict[str, str]

    @model_validator(mode="after")
    def _check(self) -> SqlSource:
        if not self.sql.strip():
            raise ValueError("source.sql must be a SELECT over the inputs")
        if not self.inputs:
            raise ValueError("source.inputs must name at least one dataset: {alias: ref}")
        for alias, ref in self.inputs.items():
            check_name(alias, "source input")
            if not ref.strip():
                raise ValueError(f"source.inputs.{alias} must be a dataset reference")
        return self


class FeatureView(_Spec):
    """Features of one or more entities, read from a dataset (or SQL over datasets)."""

    name: str
    entities: list[str]
    #: A dataset reference (``weather``, ``weather@latest``, ``weather@<version>``) or a
    #: :class:`SqlSource` (SQL over dataset versions).
    source: str | SqlSource
    #: The event-time column; None makes a static view (one row per key, no time).
    timestamp: str | None = None
    #: Ties on the event time go to the row with the latest value in this column.
    created_timestamp: str | None = None
    #: How old a value may be at the entity row's time (None: any age).
    ttl: timedelta | None = None
    features: list[FeatureField]
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    online: bool = True

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> timedelta | None:
        return parse_duration(value)

    @field_serializer("ttl")
    def _ttl_text(self, value: timedelta | None) -> str | None:
        return format_duration(value)  # "6h", as written, not ISO 8601's "PT6H"

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: Any) -> Any:
        if isinstance(value, dict):  # {"temp": "float64"} in YAML
            return [{"name": k, "dtype": v} for k, v in value.items()]
        return value

    @field_validator("entities", mode="before")
    @classmethod
    def _entities(cls, value: Any) -> Any:
        return [e.name if isinstance(e, Entity) else e for e in value]

    @model_validator(mode="after")
    def _check(self) -> FeatureView:
        check_name(self.name, "feature view")
        if isinstance(self.source, str) and not self.source.strip():
            raise ValueError("source must name a dataset, e.g. 'weather@latest'")
        if not self.entities:
            raise ValueError("a feature view needs at least one entity")
        if not self.features:
            raise ValueError("a feature view needs at least one feature")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature names in {names}")
        if self.ttl is not None and self.ttl <= timedelta(0):
            raise ValueError(f"ttl must be positive, got {self.ttl}")
        if self.ttl is not None and self.timestamp is None:
            raise ValueError("ttl needs timestamp= (a static view has no event time)")
        for col in (self.timestamp, self.created_timestamp):
            if col is not None:
                check_name(col, "timestamp column")
        return self

    def feature(self, name: str) -> FeatureField:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


class OnDemandFeature(FeatureField):
    """A feature computed per row from request data and other views' features: a scalar
    SQL expression (DuckDB) over the view's inputs, cast to ``dtype``."""

    #: One scalar SQL expression over the view's inputs (``dep_delay / nullif(temp, 0)``);
    #: None when the view computes its features with ``python``.
    sql: str | None = None


#: ``package.module:function``, what a Python on-demand view names.
PYTHON_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class OnDemandFeatureView(_Spec):
    """Features computed at retrieval time from request data (fields the entity rows carry)
    and other views' features, by the same code offline (training sets) and online
    (lookups), so the two cannot disagree.

    Inputs are referred to by their plain names: a request field by its name, a source
    feature (``weather:temp``) by the feature's name (``temp``). Each feature has a ``sql``
    expression, or the view names a ``python`` function (``pkg.module:fn``) that takes a
    pandas DataFrame of the inputs and returns one with the features. Python runs code, so it
    runs only where its module is trusted (``STRATA_TRUSTED_MODULES``)."""

    name: str
    #: Feature references the view reads (``weather:temp``, ``weather:*``).
    sources: list[str] = Field(default_factory=list)
    #: Request fields (columns of the entity rows) and their types.
    request: dict[str, ValueType] = Field(default_factory=dict)
    features: list[OnDemandFeature]
    python: str | None = None
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: Any) -> Any:
        if isinstance(value, dict):  # {"ratio": {"dtype": "float64", "sql": "..."}} in YAML
            return [
                {"name": k, **v} if isinstance(v, dict) else {"name": k, "dtype": v}
                for k, v in value.items()
            ]
        return value

    @model_validator(mode="after")
    def _check(self) -> OnDemandFeatureView:
        check_name(self.name, "on-demand view")
        if not self.features:
            raise ValueError("an on-demand view needs at least one feature")
        if not self.sources and not self.request:
            raise ValueError("an on-demand view needs inputs: sources, request fields or both")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature names in {names}")
        for ref in self.sources:
            parse_feature_ref(ref)
        for field in self.request:
            check_name(field, "request field")
        if self.python is not None:
            if not PYTHON_REF_RE.match(self.python):
                raise ValueError(
                    f"python must name a function as 'package.module:function', got {self.python!r}"
                )
            if any(f.sql for f in self.features):
                raise ValueError(
                    "give each feature a sql expression or the view a python function, not both"
                )
        else:
            missing = [f.name for f in self.features if not f.sql]
            if missing:
                raise ValueError(
                    f"feature {missing[0]!r} has no sql expression (or name a python "
                    "function for the view)"
                )
        return self

    def feature(self, name: str) -> OnDemandFeature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


class FeatureService(_Spec):
    """A named set of features a model consumes; its version grows with every change."""

    name: str
    features: list[str]
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> FeatureService:
        check_name(self.name, "feature service")
        for ref in self.features:
            parse_feature_ref(ref)
        return self


class Definitions(BaseModel):
    """A feature repository: what ``strata features apply`` registers."""

    model_config = ConfigDict(extra="forbid")

    entities: list[Entity] = Field(default_factory=list)
    feature_views: list[FeatureView] = Field(default_factory=list)
    on_demand_views: list[OnDemandFeatureView] = Field(default_factory=list)
    feature_services: list[FeatureService] = Field(default_factory=list)


def parse_feature_ref(ref: str) -> tuple[str, str]:
    """``"view:feature"`` -> ``("view", "feature")``; ``"view:*"`` is every feature."""
    view, sep, feature = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    if not sep or not view or not feature:
        raise InvalidInput(
            f"Invalid feature reference {ref!r}: write VIEW:FEATURE, e.g. 'weather:temp'",
            details={"field": "features"},
        )
    return view, feature


class Registered(BaseModel):
    """A registered definition with its registry facts."""

    kind: str  # entity | feature_view | on_demand_view | feature_service
    name: str
    version: int
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    updated_by: str


class Change(BaseModel):
    kind: str
    name: str
    action: str  # add | change | remove | unchanged
    #: What differs, one line each ("ttl: 6h -> 3h").
    diffs: list[str] = Field(default_factory=list)
    breaking: bool = False


class Plan(BaseModel):
    """What ``apply`` would do (``plan``) or did (``apply``)."""

    changes: list[Change]
    applied: bool = False

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if c.breaking]


class OnlineStatus(StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    OUTSIDE_TTL = "outside_ttl"


class OnlineValue(BaseModel):
    value: Any = None
    event_ts: datetime | None = None
    status: OnlineStatus


class OnlineColumn(BaseModel):
    """One feature's values for every entity row, in row order: the value (None when
    missing or outside the TTL), its event time (None when missing) and its status."""

    values: list[Any]
    event_ts: list[datetime | None]
    status: list[OnlineStatus]


class OnlineResponse(BaseModel):
    """The lookup's answer, columnar: ``columns[feature_ref]`` holds one entry per entity
    row, in the order of ``rows`` (the entity rows as given). :attr:`values` gives the same
    as one ``{feature_ref: OnlineValue}`` dict per row, built when asked for."""

    features: list[str]
    rows: list[dict[str, Any]]
    columns: dict[str, OnlineColumn]

    @property
    def values(self) -> list[dict[str, OnlineValue]]:
        """Row by row: ``values[i][feature_ref]`` is entity row ``i``'s value, event time
        and status (built from :attr:`columns` on each access)."""
        out: list[dict[str, OnlineValue]] = [{} for _ in self.rows]
        for ref, col in self.columns.items():
            for i, (value, ts, status) in enumerate(
                zip(col.values, col.event_ts, col.status, strict=True)
            ):
                out[i][ref] = OnlineValue(value=value, event_ts=ts, status=status)
        return out


class FeatureStatistics(BaseModel):
    """A view's feature statistics: the data layer's profile of the source version the view
    reads now, restricted to the view's columns (join keys, event time, features)."""

    view: str
    source_version: str
    rows: int
    #: One data-layer column profile per column (count, nulls, distinct, min/max, mean,
    #: std, quantiles, top values, histogram), in the view's order.
    columns: list[dict[str, Any]]


class PushStreamResult(BaseModel):
    """What a stream push consumer did (``stopped``: ``max_records``, ``idle`` or ``stop``).

    ``pushed`` rows reached the online store; ``rejected`` records were not JSON objects or
    did not fit the view (``errors`` holds the first few reasons, with where each record
    was); their positions are committed too, so a bad record never blocks the stream."""

    view: str
    source: str
    records: int = 0
    pushed: int = 0
    rejected: int = 0
    batches: int = 0
    errors: list[str] = Field(default_factory=list)
    positions: dict[str, Any] = Field(default_factory=dict)
    stopped: str = "stop"


class MaterializeResult(BaseModel):
    view: str
    start: datetime | None
    end: datetime
    rows: int
    source_version: str
    seconds: float
