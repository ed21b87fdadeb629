"""Definitions in the metadata database: loading a repository, planning, applying.

``plan`` compares a repository (entities, views, services) with what is registered and
names each difference; a change that breaks readers (a feature's type, a view's entities or
a removed feature) is *breaking* and needs ``force``. Every applied change writes a new
version row, so a feature service's version identifies exactly the features a model used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from strata.core.clock import utcnow
from strata.core.errors import InvalidInput, NotFound
from strata.core.parse import options_error
from strata.features.models import (
    Change,
    Definitions,
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    Plan,
    Registered,
    format_duration,
)
from strata.features.tables import DefinitionRow, DefinitionVersionRow

KINDS: dict[str, type[BaseModel]] = {
    "entity": Entity,
    "feature_view": FeatureView,
    "on_demand_view": OnDemandFeatureView,
    "feature_service": FeatureService,
}
_FIELDS = {
    "entity": "entities",
    "feature_view": "feature_views",
    "on_demand_view": "on_demand_views",
    "feature_service": "feature_services",
}


def load_definitions(obj: Any) -> Definitions:
    """A :class:`Definitions` from itself, its dict, YAML/JSON text or a .yaml/.json path."""
    if isinstance(obj, Definitions):
        return obj
    if isinstance(obj, Path) or (
        isinstance(obj, str) and "\n" not in obj and obj.endswith((".yaml", ".yml", ".json"))
    ):
        path = Path(obj)
        try:
            obj = path.read_text()
        except OSError as exc:
            raise InvalidInput(
                f"Cannot read definitions file {str(path)!r}: {exc.strerror}",
                details={"field": "definitions"},
            ) from None
    if isinstance(obj, str):
        import yaml

        try:
            obj = yaml.safe_load(obj)
        except yaml.YAMLError as exc:
            raise InvalidInput(
                f"Definitions are not valid YAML: {exc}", details={"field": "definitions"}
            ) from None
    if not isinstance(obj, dict):
        raise InvalidInput(
            "Definitions must be a mapping with entities, feature_views and feature_services",
            details={"field": "definitions"},
        )
    try:
        return Definitions.model_validate(obj)
    except ValidationError as exc:
        raise options_error(Definitions, exc) from None


def spec_of(obj: BaseModel) -> dict[str, Any]:
    spec = obj.model_dump(mode="json")
    if isinstance(obj, FeatureView):
        spec["ttl"] = format_duration(obj.ttl)
    return spec


def registered(session: Session, kind: str | None = None) -> dict[tuple[str, str], DefinitionRow]:
    stmt = sa.select(DefinitionRow)
    if kind is not None:
        stmt = stmt.where(DefinitionRow.kind == kind)
    return {(r.kind, r.name): r for r in session.scalars(stmt.order_by(DefinitionRow.name))}


def to_registered(row: DefinitionRow) -> Registered:
    return Registered(
        kind=row.kind,
        name=row.name,
        version=row.version,
        spec=json.loads(row.spec),
        created_at=row.created_at,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def get(session: Session, kind: str, name: str) -> BaseModel:
    row = session.get(DefinitionRow, (kind, name))
    if row is None:
        names = [n for (_, n) in registered(session, kind)]
        close = [n for n in names if name.lower() in n.lower() or n.lower() in name.lower()]
        hint = (
            f"; close names: {', '.join(close[:5])}"
            if close
            else (f"; registered: {', '.join(names[:10])}" if names else "; none is registered")
        )
        raise NotFound(
            f"No {kind.replace('_', ' ')} named {name!r}{hint}",
            details={"kind": kind, "name": name, "close": close[:5]},
        )
    return KINDS[kind].model_validate(json.loads(row.spec))


def _diffs(kind: str, old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], bool]:
    lines: list[str] = []
    breaking = False
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        if key == "features" and kind in ("feature_view", "on_demand_view"):
            before = {f["name"]: f["dtype"] for f in old.get(key, [])}
            after = {f["name"]: f["dtype"] for f in new.get(key, [])}
            sql_before = {f["name"]: f.get("sql") for f in old.get(key, [])}
            sql_after = {f["name"]: f.get("sql") for f in new.get(key, [])}
            found: list[str] = []
            for name in sorted(set(before) | set(after)):
                if name not in after:
                    found.append(f"feature {name}: removed")
                    breaking = True
                elif name not in before:
                    found.append(f"feature {name}: added ({after[name]})")
                elif before[name] != after[name]:
                    found.append(f"feature {name}: {before[name]} -> {after[name]}")
                    breaking = True
                elif sql_before[name] != sql_after[name]:
                    found.append(f"feature {name}: sql {sql_before[name]!r} -> {sql_after[name]!r}")
            lines += found or ["features: descriptions or order changed"]
            continue
        lines.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
        if key in ("entities", "join_keys", "value_types", "timestamp", "request"):
            breaking = True
        if key == "features" and kind == "feature_service":
            breaking = bool(set(old.get(key, [])) - set(new.get(key, [])))
    return lines, breaking


def plan(session: Session, defs: Definitions) -> Plan:
    current = registered(session)
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, field in _FIELDS.items():
        for obj in getattr(defs, field):
            if (kind, obj.name) in wanted:
                raise InvalidInput(
                    f"The definitions name {kind.replace('_', ' ')} {obj.name!r} twice",
                    details={"field": field, "name": obj.name},
                )
            wanted[(kind, obj.name)] = spec_of(obj)
    changes: list[Change] = []
    for (kind, name), spec in wanted.items():
        row = current.get((kind, name))
        if row is None:
            changes.append(Change(kind=kind, name=name, action="add"))
            continue
        lines, breaking = _diffs(kind, json.loads(row.spec), spec)
        action = "change" if lines else "unchanged"
        changes.append(Change(kind=kind, name=name, action=action, diffs=lines, breaking=breaking))
    for kind, name in current:
        if (kind, name) not in wanted:
            changes.append(Change(kind=kind, name=name, action="remove", breaking=True))
    order = {"entity": 0, "feature_view": 1, "on_demand_view": 2, "feature_service": 3}
    changes.sort(key=lambda c: (order[c.kind], c.name))
    return Plan(changes=changes)


def write(session: Session, defs: Definitions, result: Plan, actor: str) -> None:
    """Apply ``result`` (a plan of ``defs``) in ``session``."""
    now = utcnow()
    specs = {
        (kind, obj.name): spec_of(obj)
        for kind, field in _FIELDS.items()
        for obj in getattr(defs, field)
    }
    for change in result.changes:
        key = (change.kind, change.name)
        row = session.get(DefinitionRow, key)
        if change.action == "unchanged":
            continue
        if change.action == "remove":
            assert row is not None
            session.add(
                DefinitionVersionRow(
                    kind=row.kind,
                    name=row.name,
                    version=row.version + 1,
                    spec=row.spec,
                    created_at=now,
                    created_by=actor,
                    live=False,
                )
            )
            session.delete(row)
            continue
        text = json.dumps(specs[key], sort_keys=True)
        last = session.scalar(
            sa.select(sa.func.max(DefinitionVersionRow.version)).where(
                DefinitionVersionRow.kind == change.kind, DefinitionVersionRow.name == change.name
            )
        )
        version = (last or 0) + 1
        if row is None:
            session.add(
                DefinitionRow(
                    kind=change.kind,
                    name=change.name,
                    version=version,
                    spec=text,
                    created_at=now,
                    updated_at=now,
                    updated_by=actor,
                )
            )
        else:
            row.version, row.spec, row.updated_at, row.updated_by = version, text, now, actor
        session.add(
            DefinitionVersionRow(
                kind=change.kind,
                name=change.name,
                version=version,
                spec=text,
                created_at=now,
                created_by=actor,
                live=True,
            )
        )
