"""Materialization, push and online reads (the embedded feature store's online half).

An entity key is its join-key values as text joined by U+001F (built by DuckDB on
materialization and by Python on reads, identically: join keys are integers or strings).
A value is the JSON object of the view's features, built by DuckDB's ``to_json``, so
materializing streams Arrow batches from DuckDB to the store with no per-row Python.
"""

from __future__ import annotations

import fcntl
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from strata.core.clock import utcnow
from strata.core.errors import InvalidInput
from strata.core.ids import new_id
from strata.core.principal import current
from strata.features import ondemand, sources
from strata.features.models import (
    FeatureView,
    MaterializeResult,
    OnlineColumn,
    OnlineResponse,
    OnlineStatus,
    ValueType,
)
from strata.features.offline import TS_COL, ViewJoin, latest_sql, q, source_sql, timestamp_expr
from strata.features.tables import MaterializationRow
from strata.governance.audit import audited

if TYPE_CHECKING:
    import duckdb

    from strata.backends.online.base import Entry
    from strata.features.embedded import EmbeddedFeatures
    from strata.features.service import MaterializeProgress

SEP = "\x1f"
BATCH_ROWS = 50_000


def encode_key(values: Sequence[Any]) -> bytes:
    return SEP.join(str(v) for v in values).encode()


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInput(f"{field} must be a datetime", details={"field": field})
    if value.tzinfo is None:
        raise InvalidInput(
            f"{field} is a naive datetime; give it a time zone, e.g. "
            "datetime(2013, 1, 1, tzinfo=UTC)",
            details={"field": field},
        )
    return value.astimezone(UTC)


@contextmanager
def _view_lock(svc: EmbeddedFeatures, view: str) -> Iterator[None]:
    """One materialization of ``view`` at a time: in this process and across processes on
    this machine (a lock file under STRATA_HOME)."""
    path = Path(svc.backends.settings.home) / "locks" / f"materialize-{view}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with svc._lock(view), open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _value_sql(join: ViewJoin, inner: str, timed: bool) -> str:
    key = f"concat_ws(chr(31), {', '.join(f'CAST({q(k)} AS VARCHAR)' for k in join.join_keys)})"
    value = "to_json(struct_pack(" + ", ".join(f"{q(f)} := {q(f)}" for f in join.features) + "))"
    ts = f"epoch_us({TS_COL})" if timed else "0"
    return f"SELECT encode({key}) AS k, {ts} AS ts, encode({value}) AS v FROM ({inner})"


def materialize(
    svc: EmbeddedFeatures,
    start: datetime | None,
    end: datetime,
    views: Sequence[str] | None,
    *,
    incremental: bool,
    progress: MaterializeProgress | None = None,
) -> list[MaterializeResult]:
    end_at = _aware(end, "end")
    assert end_at is not None
    start_at = _aware(start, "start")
    if start_at is not None and start_at >= end_at:
        raise InvalidInput(
            f"start {start_at} is not before end {end_at}", details={"field": "start"}
        )
    names = (
        list(views)
        if views
        else [r.name for r in svc.list_feature_views() if r.spec.get("online", True)]
    )
    store = svc.online_store
    results = []
    for name in names:
        view = svc.get_feature_view(name)
        with _view_lock(svc, name):
            began = time.perf_counter()
            since = _last_end(svc, name, store.display) if incremental else start_at
            pinned = sources.pin(svc.data, view)
            join = ViewJoin(
                view,
                "src",
                svc.join_keys(view),
                [f.name for f in view.features],
                [f.name for f in view.features],
            )
            con = svc._connect()
            rows = 0
            try:
                pinned.register(svc.data, con, "src")
                if view.timestamp is None:
                    sql = _value_sql(join, source_sql(join, None), timed=False)
                else:
                    types = {r[0]: r[1] for r in con.execute("DESCRIBE src").fetchall()}
                    ts_sql = timestamp_expr(
                        view.timestamp,
                        types[view.timestamp],
                        assume_utc=False,
                        what=f"View {name!r}: timestamp",
                    )
                    con.execute("SET VARIABLE strata_end = ?", [end_at])
                    start_sql = None
                    if since is not None:
                        con.execute("SET VARIABLE strata_start = ?", [since])
                        start_sql = "getvariable('strata_start')"
                    inner = latest_sql(join, ts_sql, start_sql, "getvariable('strata_end')")
                    sql = _value_sql(join, inner, timed=True)
                reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
                for batch in reader:
                    # keys and JSON values come out of DuckDB as BLOBs: bytes without a
                    # Python-level encode per row
                    keys = batch.column(0).to_pylist()
                    values = batch.column(2).to_pylist()
                    rows += store.write(name, keys, batch.column(1).to_pylist(), values)
                    if progress is not None:
                        progress(name, rows)
            finally:
                con.close()
            with audited(svc.db, "features.materialize", "feature_view", name) as scope:
                scope.session.add(
                    MaterializationRow(
                        id=new_id(),
                        view=name,
                        store=store.display,
                        start_ts=since,
                        end_ts=end_at,
                        rows=rows,
                        source_version=pinned.label,
                        created_at=utcnow(),
                        created_by=current().principal.name,
                    )
                )
                scope.details = {"rows": rows, "source": pinned.label, "end": end_at.isoformat()}
            results.append(
                MaterializeResult(
                    view=name,
                    start=since,
                    end=end_at,
                    rows=rows,
                    source_version=pinned.label,
                    seconds=round(time.perf_counter() - began, 3),
                )
            )
    return results


def _last_end(svc: EmbeddedFeatures, view: str, store: str) -> datetime | None:
    with svc.db.read() as s:
        return s.scalar(
            sa.select(sa.func.max(MaterializationRow.end_ts)).where(
                MaterializationRow.view == view, MaterializationRow.store == store
            )
        )


_PY_TYPES: dict[ValueType, tuple[type, ...]] = {
    ValueType.INT64: (int,),
    ValueType.INT32: (int,),
    ValueType.FLOAT64: (int, float),
    ValueType.FLOAT32: (int, float),
    ValueType.STRING: (str,),
    ValueType.BOOL: (bool,),
    ValueType.TIMESTAMP: (str, datetime),
}


def _timestamp(value: Any, field: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"{field} must be an ISO 8601 time with a UTC offset, got {value!r}",
                details={"field": field},
            ) from None
    stamp = _aware(value, field)
    assert stamp is not None
    return stamp


def push(svc: EmbeddedFeatures, view_name: str, rows: Sequence[dict[str, Any]]) -> int:
    """Validate every row first (nothing is written when one is wrong), then write."""
    view = svc.get_feature_view(view_name)
    keys = svc.join_keys(view)
    if not isinstance(rows, list | tuple) or not all(isinstance(r, dict) for r in rows):
        raise InvalidInput("rows must be a list of objects", details={"field": "rows"})
    out_keys: list[bytes] = []
    stamps: list[int] = []
    values: list[bytes] = []
    for i, row in enumerate(rows):
        where = f"rows[{i}]"
        missing = [k for k in keys if row.get(k) is None]
        if missing:
            raise InvalidInput(
                f"{where} has no join key {missing[0]!r}", details={"field": missing[0]}
            )
        if view.timestamp is not None:
            if row.get(view.timestamp) is None:
                raise InvalidInput(
                    f"{where} has no event timestamp {view.timestamp!r}",
                    details={"field": view.timestamp},
                )
            ts = int(_timestamp(row[view.timestamp], view.timestamp).timestamp() * 1_000_000)
        else:
            ts = int(utcnow().timestamp() * 1_000_000)
        payload: dict[str, Any] = {}
        for f in view.features:
            value = row.get(f.name)
            if value is not None:
                ok = isinstance(value, _PY_TYPES[f.dtype]) and not (
                    isinstance(value, bool) and f.dtype is not ValueType.BOOL
                )
                if not ok:
                    raise InvalidInput(
                        f"{where}: feature {f.name!r} expects {f.dtype}, got "
                        f"{type(value).__name__} {value!r}",
                        details={"field": f.name, "expected": f.dtype.value},
                    )
                if f.dtype is ValueType.TIMESTAMP:
                    value = _timestamp(value, f.name).isoformat()
            payload[f.name] = value
        unknown = set(row) - {f.name for f in view.features} - set(keys) - {view.timestamp}
        if unknown:
            raise InvalidInput(
                f"{where} has columns the view does not define: {sorted(unknown)}",
                details={"field": sorted(unknown)[0]},
            )
        out_keys.append(encode_key([row[k] for k in keys]))
        stamps.append(ts)
        values.append(orjson.dumps(payload))
    return svc.online_store.write(view_name, out_keys, stamps, values)


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        return orjson.loads(raw)  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:  # NaN / Infinity, which DuckDB writes and JSON lacks
        return json.loads(raw)  # type: ignore[no-any-return]


def get_online(
    svc: EmbeddedFeatures, features: Sequence[str] | str, entity_rows: Sequence[dict[str, Any]]
) -> OnlineResponse:
    """Columnar: each view's entries are read in one store call and decoded once per row;
    the response is built without validating what this function made itself."""
    if not isinstance(entity_rows, list | tuple) or not all(
        isinstance(r, dict) for r in entity_rows
    ):
        raise InvalidInput(
            "entity_rows must be a list of objects", details={"field": "entity_rows"}
        )
    plan = svc.retrieval(features)
    resolved = svc.resolve(plan.stored) if plan.stored else []
    now = utcnow()
    refs = [
        f"{v.name}:{f}"
        for v, wanted in resolved
        for f in wanted
        if f"{v.name}:{f}" not in plan.hidden
    ] + [f"{p.view.name}:{f}" for p in plan.on_demand for f in p.wanted]
    columns: dict[str, OnlineColumn] = {}
    for view, wanted in resolved:
        keys = svc.join_keys(view)
        encoded = []
        for i, row in enumerate(entity_rows):
            missing = [k for k in keys if row.get(k) is None]
            if missing:
                raise InvalidInput(
                    f"entity_rows[{i}] has no join key {missing[0]!r} (feature view {view.name!r})",
                    details={"field": missing[0]},
                )
            encoded.append(encode_key([row[k] for k in keys]))
        entries = svc.online_store.read(view.name, encoded)
        columns.update(_columns(view, wanted, entries, now))
    if plan.on_demand:
        columns = ondemand.attach_online(
            columns, entity_rows, plan, trusted=svc.trusted_modules, con=_sandbox()
        )
    return OnlineResponse.model_construct(features=refs, rows=list(entity_rows), columns=columns)


_local = threading.local()


def _sandbox() -> duckdb.DuckDBPyConnection:
    """This thread's sandboxed connection for on-demand features (opening one per lookup
    would cost more than the lookup)."""
    con = getattr(_local, "con", None)
    if con is None:
        from strata.data.expressions import sandbox

        con = _local.con = sandbox()
    return con


def _columns(
    view: FeatureView, wanted: list[str], entries: Sequence[Entry | None], now: datetime
) -> dict[str, OnlineColumn]:
    """``wanted`` features of ``view`` as columns over the store's ``entries`` (one per
    entity row): missing rows have no value and no time; rows older than the TTL keep
    their time but not their value."""
    cutoff = now - view.ttl if view.ttl is not None and view.timestamp is not None else None
    stamps: list[datetime | None] = []
    statuses: list[OnlineStatus] = []
    payloads: list[dict[str, Any] | None] = []
    for entry in entries:
        if entry is None:
            stamps.append(None)
            statuses.append(OnlineStatus.MISSING)
            payloads.append(None)
            continue
        stamp = datetime.fromtimestamp(entry.ts_us / 1_000_000, UTC) if view.timestamp else None
        stale = cutoff is not None and stamp is not None and stamp < cutoff
        stamps.append(stamp)
        statuses.append(OnlineStatus.OUTSIDE_TTL if stale else OnlineStatus.PRESENT)
        payloads.append(None if stale else _decode(entry.value))
    timestamps = {f.name for f in view.features if f.dtype is ValueType.TIMESTAMP}
    out: dict[str, OnlineColumn] = {}
    for f in wanted:
        values = [None if p is None else p.get(f) for p in payloads]
        if f in timestamps:
            values = [None if v is None else datetime.fromisoformat(str(v)) for v in values]
        out[f"{view.name}:{f}"] = OnlineColumn.model_construct(
            values=values, event_ts=stamps, status=statuses
        )
    return out
