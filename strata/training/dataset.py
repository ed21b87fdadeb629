"""A job's table: the exact dataset version, the target (a column or a sandboxed SQL
expression), the feature columns and the task.

The target expression is user input (a config may come from anyone allowed to start a job),
so it is compiled in two guarded steps: DuckDB's own parser must see exactly one scalar
expression — no subquery, no table function, no second statement, only known columns — and
it then runs on a DuckDB connection that holds nothing but the job's rows, with external
access disabled and the configuration locked (the data layer's sandbox rules).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from strata.core.errors import InvalidInput
from strata.data.expressions import check_expression as _check_expression
from strata.data.expressions import columns_error, evaluate
from strata.training.models import SplitMethod, TargetConfig, Task, TrainConfig

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from strata.data.service import DataService

TARGET_COLUMN = "__strata_target"
#: Integer targets with at most this many distinct values are classes, not quantities.
MAX_INT_CLASSES = 20


@dataclass
class JobData:
    """The rows of a job, ready to split: features ``X``, target ``y``, their provenance."""

    ref: str
    """The exact version read (``NAME@VERSIONID``)."""
    X: pd.DataFrame
    y: np.ndarray
    task: Task
    features: list[str]
    categorical: list[str]
    target: str
    frame: pd.DataFrame
    """All columns of the kept rows (split, group and sensitive columns live here)."""
    dropped_rows: int = 0
    labels: list[Any] | None = None
    notes: list[str] = field(default_factory=list)
    groups: np.ndarray | None = None
    """Ranking: each row's query as an integer code (from ``split.column``)."""
    has_target: bool = True
    """False for a clustering job without a target: ``y`` is zeros, only for the splits."""


def _columns_error(what: str, name: str, available: list[str]) -> InvalidInput:
    return columns_error(what, name, available)


def check_expression(sql: str, available: list[str]) -> list[str]:
    """The columns the target expression reads (:func:`strata.data.expressions.
    check_expression`, errors naming ``target.sql``)."""
    return _check_expression(sql, available, field="target.sql")


def compute_target(table: pa.Table, sql: str) -> pa.Array:
    """``sql`` evaluated per row on a sandboxed connection holding only ``table``."""
    result = evaluate(table, {TARGET_COLUMN: (sql, None)}, field="target.sql")
    return result.column(0).combine_chunks()


def infer_task(y: pd.Series) -> Task:
    import pandas as pd

    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return Task.CLASSIFICATION
    if pd.api.types.is_integer_dtype(y) and y.nunique() <= MAX_INT_CLASSES:
        return Task.CLASSIFICATION
    return Task.REGRESSION


def _kind(series: pd.Series) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(series) or isinstance(series.dtype, pd.DatetimeTZDtype):
        return "datetime"
    return "categorical"


def target_and_frame(
    table: pa.Table, target: TargetConfig
) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """The table as pandas, the raw target column and the columns the target reads."""
    available = list(table.column_names)
    if target.sql:
        sources = check_expression(target.sql, available)
        values = compute_target(table, target.sql)
        frame = table.to_pandas()
        y = values.to_pandas()
        y.name = target.name
        return frame, y, sources
    if target.name not in available:
        raise _columns_error("target", target.name, available)
    frame = table.to_pandas()
    return frame, frame[target.name], [target.name]


def prepare(table: pa.Table, ref: str, config: TrainConfig, *, task: Task | None = None) -> JobData:
    """Target, features and task of ``config`` over ``table`` (the version ``ref``).

    Rows whose target is NULL are dropped and counted (``dropped_rows``): a cancelled
    flight has no arrival delay to learn from. Raises InvalidInput naming an unknown column
    (listing the available ones), a timestamp feature, a one-class classification target or
    a ranking target that is not whole relevance grades.
    """
    available = list(table.column_names)
    for name in [*config.exclude, *config.sensitive]:
        if name not in available:
            raise _columns_error(
                "exclude" if name in config.exclude else "sensitive", name, available
            )
    if config.split.column and config.split.column not in available:
        raise _columns_error("split.column", config.split.column, available)
    if config.target is None:  # clustering without a target (TrainConfig checks the task)
        frame = table.to_pandas()
        features, categorical, X = _features(config, available, frame, set())
        return JobData(
            ref=ref,
            X=X,
            y=np.zeros(len(frame), dtype=np.int64),
            task=Task.CLUSTERING,
            features=features,
            categorical=categorical,
            target="",
            frame=frame,
            has_target=False,
        )
    frame, y_raw, sources = target_and_frame(table, config.target)
    keep = y_raw.notna().to_numpy()
    dropped = int((~keep).sum())
    if dropped:
        frame = frame.loc[keep].reset_index(drop=True)
        y_raw = y_raw.loc[keep].reset_index(drop=True)
    y_raw = y_raw.infer_objects()  # bool/int with NULLs came as object; now they are gone
    if len(frame) == 0:
        raise InvalidInput(
            f"No rows of {ref} have a target value ({config.target.name} is NULL everywhere)",
            details={"field": "target"},
        )
    features, categorical, X = _features(config, available, frame, {config.target.name, *sources})
    chosen = task or config.task or infer_task(y_raw)
    labels: list[Any] | None = None
    groups: np.ndarray | None = None
    import pandas as pd

    if chosen is Task.CLASSIFICATION:
        y_series = y_raw.astype("int64") if pd.api.types.is_bool_dtype(y_raw) else y_raw
        uniques = sorted(pd.unique(y_series).tolist(), key=str)
        if len(uniques) < 2:
            raise InvalidInput(
                f"The classification target {config.target.name!r} has one class only "
                f"({uniques[0]!r} in all {len(y_series)} rows); a classifier needs at least two",
                details={"field": "target", "classes": [str(u) for u in uniques]},
            )
        labels = uniques
        y = y_series.to_numpy()
    elif chosen is Task.CLUSTERING:  # the target is the true grouping, compared only
        y = (
            y_raw.astype(str).to_numpy()
            if not pd.api.types.is_numeric_dtype(y_raw)
            else (y_raw.to_numpy())
        )
    else:
        if not pd.api.types.is_numeric_dtype(y_raw) or pd.api.types.is_bool_dtype(y_raw):
            raise InvalidInput(
                f"A {chosen.value} target must be numeric; {config.target.name!r} is {y_raw.dtype}",
                details={"field": "task"},
            )
        y = y_raw.astype("float64").to_numpy()
        if chosen is Task.RANKING:
            y, groups = _ranking(config, frame, y)
    return JobData(
        ref=ref,
        X=X,
        y=y,
        task=chosen,
        features=features,
        categorical=categorical,
        target=config.target.name,
        frame=frame,
        dropped_rows=dropped,
        labels=labels,
        groups=groups,
    )


def _ranking(config: TrainConfig, frame: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, Any]:
    """Relevance grades as int64 (whole numbers >= 0, as LightGBM's and XGBoost's rankers
    and NDCG's gains need) and each row's query code from ``split.column``."""
    import pandas as pd

    name = config.target_name
    bad = (y < 0) | (y != np.floor(y))
    if bad.any():
        raise InvalidInput(
            f"A ranking target holds relevance grades, whole numbers >= 0; {name!r} has "
            f"{float(y[bad][0]):g} (use a target sql expression to grade it, e.g. "
            f'"CASE WHEN x > 10 THEN 2 WHEN x > 0 THEN 1 ELSE 0 END")',
            details={"field": "target", "received": float(y[bad][0])},
        )
    top = int(y.max()) if len(y) else 0
    if config.model.family.value == "lightgbm" and top > 30:
        raise InvalidInput(
            f"LightGBM's ranker takes relevance grades 0..30 (its label_gain); {name!r} goes "
            f"up to {top}. Bin the target into fewer grades",
            details={"field": "target", "max": top},
        )
    assert config.split.column is not None  # TrainConfig: ranking needs a group split
    codes, _ = pd.factorize(frame[config.split.column].astype(str), sort=False)
    return y.astype(np.int64), np.asarray(codes, dtype=np.int64)


def _features(
    config: TrainConfig, available: list[str], frame: pd.DataFrame, target_columns: set[str]
) -> tuple[list[str], list[str], pd.DataFrame]:
    """The feature columns (named or all but target, exclude, split and timestamp
    columns), the categorical ones among them and their frame, encoded for the Pipeline."""
    kinds = {c: _kind(frame[c]) for c in available}
    if config.features is not None:
        for name in config.features:
            if name not in available:
                raise _columns_error("feature", name, available)
            if name in target_columns:
                raise InvalidInput(
                    f"Feature {name!r} is the target or what it is computed from (leakage); "
                    "drop it from features",
                    details={"field": "features", "column": name},
                )
            if kinds[name] == "datetime":
                raise InvalidInput(
                    f"Feature {name!r} is a timestamp; no family takes timestamps as they are. "
                    "Use numeric parts of it (hour, month, ...) or leave it out",
                    details={"field": "features", "column": name},
                )
        features = list(config.features)
    else:
        skip = {*target_columns, *config.exclude}
        if config.split.method in (SplitMethod.TIME, SplitMethod.GROUP) and config.split.column:
            skip.add(config.split.column)
        features = [c for c in available if c not in skip and kinds[c] != "datetime"]
    if not features:
        raise InvalidInput(
            "No feature columns are left after the target, exclude and timestamp columns",
            details={"field": "features", "columns": available},
        )
    X = frame[features].copy()
    for name in features:
        if kinds[name] == "bool":
            X[name] = X[name].astype("float64")
    categorical = [c for c in features if kinds[c] == "categorical"]
    for name in categorical:
        X[name] = X[name].astype(object).where(X[name].notna(), None)
    return features, categorical, X


_last_read: tuple[str, str, pa.Table] | None = None
_read_lock = threading.Lock()


def _read(data: DataService, exact_ref: str, digest: str) -> pa.Table:
    """The rows of the exact version ``exact_ref`` whose content digest is ``digest``; the
    last one read is kept per process (an HPO study's trials read the same version again and
    again, each a whole Parquet scan of, say, 336,776 flights). The key is the content
    digest with the ref, so a hit is the same bytes whichever store they came from."""
    global _last_read
    with _read_lock:
        last = _last_read
        if last is not None and last[0] == exact_ref and last[1] == digest and digest:
            return last[2]
    table = data.read_arrow(exact_ref)
    with _read_lock:
        _last_read = (exact_ref, digest, table)
    return table


def load_table(
    data: DataService, ref: str, *, sample: int | None, seed: int
) -> tuple[pa.Table, str]:
    """The version ``ref`` resolves to (as ``NAME@VERSIONID``) and its rows, optionally a
    seeded sample of ``sample`` rows (the same rows for the same version and seed)."""
    version = data.get_version(ref)  # every time: a deleted version is NotFound, never cached
    table = _read(data, version.ref, version.digest)
    if sample is not None and sample < table.num_rows:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(table.num_rows, size=sample, replace=False))
        table = table.take(idx)
    return table, version.ref
