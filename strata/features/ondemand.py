"""On-demand feature views: features computed at retrieval time, by the same code offline and
online.

A retrieval that names on-demand features is planned in two steps. :func:`split` separates
the references into stored features (which the point-in-time join or the online store
provides) and on-demand views, adding the views' source features the caller did not ask for
as *hidden* references. :func:`compute` then evaluates each view over a table holding its
inputs: the training set's rows (batch by batch, streaming) or the online lookup's rows. It
is the one function both paths call, so a feature cannot be computed one way for training
and another way for serving.

SQL features run on a sandboxed DuckDB connection (:mod:`strata.data.expressions`: one
scalar expression, only the view's inputs, no file or network access). Python features
import ``package.module:function``, which runs code: only packages listed in
``STRATA_TRUSTED_MODULES`` may run, so an editor who registers a definition cannot make a
server or a colleague's process import a module of their choosing.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strata.core.errors import InvalidInput, NotFound, PermissionDenied
from strata.data import expressions
from strata.features.models import (
    DUCKDB_TYPES,
    FeatureView,
    OnDemandFeatureView,
    ValueType,
    parse_feature_ref,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

#: Looks a definition up: ``lookup("feature_view" | "on_demand_view", name)``.
Lookup = Callable[[str, str], Any]


@dataclass
class OnDemandPlan:
    """One on-demand view in a retrieval: the features wanted and where each input is."""

    view: OnDemandFeatureView
    wanted: list[str]
    #: Input name (a request field or a source feature's name) -> the reference it is read
    #: from (``weather:temp``) or None for a request field.
    sources: dict[str, str | None]
    #: Input name -> its type.
    types: dict[str, ValueType]
    output_names: list[str] = field(default_factory=list)


@dataclass
class Retrieval:
    """What a retrieval reads from storage (``stored``) and computes (``on_demand``)."""

    stored: list[str]
    hidden: set[str]
    on_demand: list[OnDemandPlan]
    #: Every requested reference, in order (stored and on-demand).
    requested: list[str]


def view_inputs(
    view: OnDemandFeatureView, lookup: Lookup
) -> tuple[dict[str, str | None], dict[str, ValueType]]:
    """The view's inputs by plain name: ``(name -> source ref or None, name -> type)``.
    InvalidInput when two inputs share a name or a source is not a stored feature."""
    where = f"On-demand view {view.name!r}"
    sources: dict[str, str | None] = {}
    types: dict[str, ValueType] = {}
    for name, dtype in view.request.items():
        sources[name], types[name] = None, dtype
    for ref in view.sources:
        view_name, feature = parse_feature_ref(ref)
        try:
            stored: FeatureView = lookup("feature_view", view_name)
        except NotFound:
            raise InvalidInput(
                f"{where} reads {ref!r}, but {view_name!r} is not a feature view (on-demand "
                "views read stored features and request fields)",
                details={"field": f"on_demand_views.{view.name}.sources"},
            ) from None
        names = [f.name for f in stored.features]
        if feature != "*" and feature not in names:
            raise InvalidInput(
                f"{where} reads {ref!r}: feature view {view_name!r} has no feature "
                f"{feature!r} (features: {', '.join(names)})",
                details={"field": f"on_demand_views.{view.name}.sources"},
            )
        for f in stored.features:
            if feature not in ("*", f.name):
                continue
            if f.name in sources:
                raise InvalidInput(
                    f"{where}: two inputs are called {f.name!r} ({sources[f.name] or 'request'}"
                    f" and {view_name}:{f.name}); inputs are referred to by name, so names "
                    "must differ",
                    details={"field": f"on_demand_views.{view.name}.sources"},
                )
            sources[f.name], types[f.name] = f"{view_name}:{f.name}", f.dtype
    return sources, types


def check(view: OnDemandFeatureView, lookup: Lookup, trusted: str) -> None:
    """Apply-time checks: inputs resolve, each expression is one scalar SQL expression over
    the inputs and binds with their types (evaluated on an empty table)."""
    import pyarrow as pa

    sources, types = view_inputs(view, lookup)
    if view.python is not None:
        return  # its code is not imported at apply time: that would run it
    for f in view.features:
        expressions.check_expression(
            f.sql or "",
            list(sources),
            field=f"on_demand_views.{view.name}.features.{f.name}.sql",
            example="'dep_delay / nullif(distance, 0)'",
        )
    empty = pa.table({name: pa.array([], type=_arrow_type(types[name])) for name in types})
    _evaluate_sql(view, [f.name for f in view.features], empty, types, None)


def split(features: Sequence[str], lookup: Lookup) -> Retrieval:
    """Separate stored references from on-demand ones, adding hidden source references."""
    stored: list[str] = []
    plans: dict[str, OnDemandPlan] = {}
    for ref in features:
        view_name, feature = parse_feature_ref(ref)
        if view_name in plans or _is_on_demand(view_name, lookup):
            plan = plans.get(view_name)
            if plan is None:
                view: OnDemandFeatureView = lookup("on_demand_view", view_name)
                sources, types = view_inputs(view, lookup)
                plan = plans[view_name] = OnDemandPlan(view, [], sources, types)
            names = [f.name for f in plan.view.features]
            if feature == "*":
                plan.wanted += [n for n in names if n not in plan.wanted]
            elif feature not in names:
                raise NotFound(
                    f"On-demand view {view_name!r} has no feature {feature!r}; "
                    f"features: {', '.join(names)}",
                    details={"feature": ref, "close": []},
                )
            elif feature not in plan.wanted:
                plan.wanted.append(feature)
        elif ref not in stored:
            stored.append(ref)
    hidden: set[str] = set()
    wanted_stored = _expanded(stored, lookup)
    for plan in plans.values():
        for source in plan.sources.values():
            if source is not None and source not in wanted_stored:
                stored.append(source)
                wanted_stored.add(source)
                hidden.add(source)
    return Retrieval(stored, hidden, list(plans.values()), list(features))


def _is_on_demand(view_name: str, lookup: Lookup) -> bool:
    try:
        lookup("feature_view", view_name)
        return False
    except NotFound as stored_missing:
        try:
            lookup("on_demand_view", view_name)
        except NotFound:
            raise stored_missing from None
        return True


def _expanded(refs: Sequence[str], lookup: Lookup) -> set[str]:
    out: set[str] = set()
    for ref in refs:
        view_name, feature = parse_feature_ref(ref)
        if feature == "*":
            out.update(f"{view_name}:{f.name}" for f in lookup("feature_view", view_name).features)
        else:
            out.add(ref)
    return out


def _arrow_type(dtype: ValueType) -> pa.DataType:
    import pyarrow as pa

    return {
        ValueType.INT64: pa.int64(),
        ValueType.INT32: pa.int32(),
        ValueType.FLOAT64: pa.float64(),
        ValueType.FLOAT32: pa.float32(),
        ValueType.STRING: pa.string(),
        ValueType.BOOL: pa.bool_(),
        ValueType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    }[dtype]


def compute(
    table: pa.Table | pa.RecordBatch,
    plan: OnDemandPlan,
    columns: Mapping[str, str],
    trusted: str,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """The plan's wanted features for every row of ``table``, in row order, named
    ``plan.output_names``. ``columns`` maps each input name to its column in ``table``."""
    import pyarrow as pa

    missing = [name for name in plan.sources if columns.get(name) not in table.column_names]
    if missing:
        name = missing[0]
        raise InvalidInput(
            f"On-demand view {plan.view.name!r} needs request field {name!r}, which the "
            f"entity rows do not carry (columns: {', '.join(table.column_names)})",
            details={"field": name},
        )
    try:
        inputs = pa.table(
            {
                name: table.column(columns[name]).cast(_arrow_type(plan.types[name]))
                for name in plan.sources
            }
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(
            f"On-demand view {plan.view.name!r}: an input does not convert to its declared "
            f"type ({exc})",
            details={"field": f"on_demand_views.{plan.view.name}"},
        ) from None
    if plan.view.python is None:
        out = _evaluate_sql(plan.view, plan.wanted, inputs, plan.types, con)
    else:
        out = _evaluate_python(plan.view, plan.wanted, inputs, trusted)
    return out.rename_columns(plan.output_names or plan.wanted)


def _evaluate_sql(
    view: OnDemandFeatureView,
    wanted: list[str],
    inputs: pa.Table,
    types: dict[str, ValueType],
    con: duckdb.DuckDBPyConnection | None,
) -> pa.Table:
    exprs = {
        name: (view.feature(name).sql or "", DUCKDB_TYPES[view.feature(name).dtype])
        for name in wanted
    }
    return expressions.evaluate(inputs, exprs, field=f"on-demand view {view.name!r}", con=con)


def trusted_function(view: OnDemandFeatureView, trusted: str) -> Callable[[Any], Any]:
    """The view's Python function, imported only when its package is trusted."""
    assert view.python is not None
    module_name, _, attr = view.python.partition(":")
    allowed = {p.strip() for p in trusted.split(",") if p.strip()}
    package = module_name.split(".")[0]
    if package not in allowed:
        raise PermissionDenied(
            f"On-demand view {view.name!r} runs Python from {module_name!r}, and package "
            f"{package!r} is not trusted here; allow it with STRATA_TRUSTED_MODULES={package} "
            "in the environment of the process that retrieves features",
            details={"field": f"on_demand_views.{view.name}.python", "package": package},
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(
            f"On-demand view {view.name!r}: cannot load {view.python!r} ({exc})",
            details={"field": f"on_demand_views.{view.name}.python"},
        ) from None
    if not callable(fn):
        raise InvalidInput(
            f"On-demand view {view.name!r}: {view.python!r} is not a function",
            details={"field": f"on_demand_views.{view.name}.python"},
        )
    return fn  # type: ignore[no-any-return]


def _evaluate_python(
    view: OnDemandFeatureView, wanted: list[str], inputs: pa.Table, trusted: str
) -> pa.Table:
    import pyarrow as pa

    fn = trusted_function(view, trusted)
    frame = inputs.to_pandas()
    result = fn(frame)
    where = f"On-demand view {view.name!r}: {view.python}"
    if not hasattr(result, "columns") or len(result) != len(frame):
        raise InvalidInput(
            f"{where} must return a pandas DataFrame with one row per input row",
            details={"field": f"on_demand_views.{view.name}.python"},
        )
    arrays = {}
    for name in wanted:
        if name not in result.columns:
            raise InvalidInput(
                f"{where} returned no column {name!r} "
                f"(columns: {', '.join(map(str, result.columns))})",
                details={"field": f"on_demand_views.{view.name}.python"},
            )
        try:
            arrays[name] = pa.array(result[name], from_pandas=True).cast(
                _arrow_type(view.feature(name).dtype)
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(
                f"{where}: column {name!r} is not {view.feature(name).dtype.value} ({exc})",
                details={"field": name},
            ) from None
    return pa.table(arrays)


# -- the two paths ----------------------------------------------------------------------------
def _output(view: str, feature: str, full_feature_names: bool) -> str:
    return f"{view}__{feature}" if full_feature_names else feature


def attach_offline(
    table: pa.Table | pa.RecordBatch,
    retrieval: Retrieval,
    *,
    full_feature_names: bool,
    trusted: str,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """A training set's rows (one batch or all of them) with the on-demand features
    appended and the hidden source features dropped."""
    import pyarrow as pa

    out = table if isinstance(table, pa.Table) else pa.Table.from_batches([table])
    for plan in retrieval.on_demand:
        columns = {}
        for name, source in plan.sources.items():
            if source is None:
                columns[name] = name
            else:
                view_name, feature = parse_feature_ref(source)
                columns[name] = _output(view_name, feature, full_feature_names)
        plan.output_names = [_output(plan.view.name, f, full_feature_names) for f in plan.wanted]
        clash = [n for n in plan.output_names if n in out.column_names]
        if clash:
            raise InvalidInput(
                f"Column {clash[0]!r} would appear twice in the result; pass "
                "full_feature_names=True to name features VIEW__FEATURE",
                details={"field": "features"},
            )
        computed = compute(out, plan, columns, trusted, con)
        for name in computed.column_names:
            out = out.append_column(name, computed.column(name))
    hidden = set()
    for ref in retrieval.hidden:
        view_name, feature = parse_feature_ref(ref)
        hidden.add(_output(view_name, feature, full_feature_names))
    return out.drop_columns([c for c in out.column_names if c in hidden])


_STATUS_RANK = {"present": 0, "outside_ttl": 1, "missing": 2}


def feature_inputs(plan: OnDemandPlan, feature: str) -> list[str]:
    """The inputs one feature reads: the columns of its SQL expression (parsed once per
    expression), or every input of a Python view."""
    sql = plan.view.feature(feature).sql
    if sql is None:
        return list(plan.sources)
    return list(_expression_columns(sql, tuple(plan.sources)))


@functools.lru_cache(maxsize=1024)
def _expression_columns(sql: str, available: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(expressions.check_expression(sql, list(available)))


def attach_online(
    columns: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    retrieval: Retrieval,
    *,
    trusted: str,
    con: duckdb.DuckDBPyConnection | None = None,
) -> dict[str, Any]:
    """Online columns (``ref -> OnlineColumn``) with the on-demand features added, computed
    by :func:`compute` like a training set's, and the hidden source features removed. An
    on-demand feature's status is the worst of the source features its expression reads
    (missing > outside_ttl > present) and its event time the latest of theirs."""
    import pyarrow as pa

    from strata.features.models import OnlineColumn, OnlineStatus

    n = len(rows)
    for plan in retrieval.on_demand:
        arrays: dict[str, pa.Array] = {}
        for name, source in plan.sources.items():
            if source is None:
                missing = [i for i, row in enumerate(rows) if name not in row]
                if missing:
                    raise InvalidInput(
                        f"entity_rows[{missing[0]}] has no request field {name!r} (on-demand "
                        f"view {plan.view.name!r})",
                        details={"field": name},
                    )
                try:
                    arrays[name] = pa.array(
                        [row[name] for row in rows], type=_arrow_type(plan.types[name])
                    )
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise InvalidInput(
                        f"Request field {name!r} must be {plan.types[name].value} ({exc})",
                        details={"field": name},
                    ) from None
            else:
                values = columns[source].values
                arrays[name] = pa.array(values, type=_arrow_type(plan.types[name]))
        plan.output_names = list(plan.wanted)
        computed = compute(pa.table(arrays), plan, {k: k for k in arrays}, trusted, con)
        for feature in plan.wanted:
            reads = [plan.sources[i] for i in feature_inputs(plan, feature)]
            sources = [columns[ref] for ref in reads if ref is not None]
            status = ["present"] * n
            stamps: list[Any] = [None] * n
            for col in sources:
                for i in range(n):
                    s = str(col.status[i])
                    if _STATUS_RANK[s] > _STATUS_RANK[status[i]]:
                        status[i] = s
                    ts = col.event_ts[i]
                    if ts is not None and (stamps[i] is None or ts > stamps[i]):
                        stamps[i] = ts
            columns[f"{plan.view.name}:{feature}"] = OnlineColumn.model_construct(
                values=computed.column(feature).to_pylist(),
                event_ts=stamps,
                status=[OnlineStatus(x) for x in status],
            )
    for ref in retrieval.hidden:
        columns.pop(ref, None)
    return columns
