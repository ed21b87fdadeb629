"""Reading the prediction log (the writer is serving's, ``strata/serving/predlog.py``).

Layout (coord/PROTOCOL.md): ``predictions/model=<name>/date=<YYYY-MM-DD>/<uuid>.parquet`` in
the artifact store; one row per predicted row with ``request_id``, ``row``, ``ts`` (UTC),
``model``, ``version``, ``endpoint``, ``path``, ``latency_ms``, ``entity_key``, ``inputs``
(struct) and ``outputs`` (struct: ``prediction``, ``proba``). DuckDB reads the partitions
with hive partitioning; a window's ``date`` bounds prune whole partitions.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from strata.monitoring.refs import PREDICTIONS, LogRef, sql_text, store_location

if TYPE_CHECKING:
    from strata.backends.artifacts import ArtifactInfo, ArtifactStore


def model_prefix(model: str) -> str:
    return f"{PREDICTIONS}/model={model}"


def listing(store: ArtifactStore, prefix: str) -> list[ArtifactInfo]:
    """What ``store`` holds right under ``prefix``; nothing when it does not exist."""
    from strata.core.errors import NotFound

    try:
        return list(store.list(prefix))
    except NotFound:
        return []


def has_log(store: ArtifactStore, model: str) -> bool:
    """Whether any Parquet part of ``model`` exists (a partition directory holding one)."""
    for day in listing(store, model_prefix(model)):
        if day.is_dir and any(f.path.endswith(".parquet") for f in listing(store, day.path)):
            return True
    return False


def scan(store: ArtifactStore, model: str) -> str:
    """The ``read_parquet`` call over every partition of ``model``."""
    root = store_location(store.uri_for(model_prefix(model)))
    return (
        f"read_parquet({sql_text(root + '/*/*.parquet')}, hive_partitioning = true, "
        "union_by_name = true)"
    )


def _ts(value: dt.datetime) -> str:
    return f"TIMESTAMPTZ {sql_text(value.astimezone(dt.UTC).isoformat())}"


def where(ref: LogRef, version: str | None) -> str:
    """The SQL condition of a window (partition bounds first, for pruning)."""
    conds = ["TRUE"]
    if version is not None:
        conds.append(f"version = {sql_text(version)}")
    if ref.since is not None:
        conds.append(f"CAST(date AS VARCHAR) >= {sql_text(ref.since.date().isoformat())}")
        conds.append(f"ts >= {_ts(ref.since)}")
    if ref.until is not None:
        conds.append(f"CAST(date AS VARCHAR) <= {sql_text(ref.until.date().isoformat())}")
        conds.append(f"ts < {_ts(ref.until)}")
    if ref.path is not None:
        conds.append(f"path = {sql_text(ref.path)}")
    if ref.endpoint is not None:
        conds.append(f"endpoint = {sql_text(ref.endpoint)}")
    return " AND ".join(conds)


def features_source(store: ArtifactStore, ref: LogRef, version: str | None) -> str:
    """A FROM source of the window's rows as columns: the inputs plus ``prediction``."""
    return (
        f"(SELECT inputs.*, outputs.prediction AS prediction FROM {scan(store, ref.model)} "
        f"WHERE {where(ref, version)})"
    )
