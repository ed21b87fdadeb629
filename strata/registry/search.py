"""Registry filters and orderings: MLflow's grammar (the parser of
:mod:`strata.tracking.search`) compiled to SQL conditions on the ``reg_`` tables.

Models: ``name``, ``owner``, ``description``, ``tags.<key>``, ``alias`` (models holding an
alias of that name). Versions: ``name``, ``version``/``version_number``, ``run_id``,
``status``, ``source``, ``tags.<key>``, ``alias``. Each clause is an indexed ``IN
(subquery)`` or a column comparison; nothing is joined in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from strata.core.errors import InvalidInput
from strata.registry.tables import (
    RegAliasRow,
    RegModelRow,
    RegModelTagRow,
    RegVersionRow,
    RegVersionTagRow,
)
from strata.tracking.search import Clause, _compare, _error, _Parser

_ENTITIES = {"tag": "tags", "tags": "tags", "attribute": "attributes", "attributes": "attributes"}
_MODEL_ATTRS: dict[str, Any] = {
    "name": RegModelRow.name,
    "owner": RegModelRow.owner,
    "description": RegModelRow.description,
    "alias": None,
    "creation_timestamp": RegModelRow.created_at,
    "created_at": RegModelRow.created_at,
    "updated_at": RegModelRow.updated_at,
    "last_updated_timestamp": RegModelRow.updated_at,
}
_VERSION_ATTRS: dict[str, Any] = {
    "name": RegVersionRow.name,
    "version": RegVersionRow.version,
    "version_number": RegVersionRow.version,
    "run_id": RegVersionRow.run_id,
    "status": RegVersionRow.status,
    "source": RegVersionRow.source,
    "alias": None,
    "creation_timestamp": RegVersionRow.created_at,
    "created_at": RegVersionRow.created_at,
    "last_updated_timestamp": RegVersionRow.updated_at,
}
_NUMERIC = {"version", "version_number"}
_TIMES = {"creation_timestamp", "created_at", "updated_at", "last_updated_timestamp"}


def _value(text: str, c: Clause) -> Any:
    if c.key in _NUMERIC:
        if isinstance(c.value, list):
            return [int(float(v)) for v in c.value]
        if not isinstance(c.value, float | str) or not str(c.value).replace(".", "", 1).isdigit():
            raise _error(text, c.pos, f"a number for {c.key}")
        return int(float(c.value))
    if c.key in _TIMES:
        raise _error(text, c.pos, "a filter on name, tags or alias (not on times)")
    if isinstance(c.value, float):
        raise _error(text, c.pos, f"a quoted string for {c.key}")
    if c.key == "status" and isinstance(c.value, str):
        return c.value.lower()
    return c.value


_NEGATED = {"!=": "=", "NOT LIKE": "LIKE", "NOT ILIKE": "ILIKE", "NOT IN": "IN"}


def _tag_match(c: Clause) -> tuple[str, bool]:
    """(operator, negate): a negative comparison on a tag also matches objects without the
    tag, as in MLflow (its client adds ``tag.`mlflow.prompt.is_prompt` != 'true'`` to every
    model search)."""
    if c.op in _NEGATED:
        return _NEGATED[c.op], True
    return c.op, False


def model_conditions(text: str | None) -> list[ColumnElement[bool]]:
    if not text or not text.strip():
        return []
    out: list[ColumnElement[bool]] = []
    for c in _Parser(text, _ENTITIES, set(_MODEL_ATTRS)).parse():
        if c.entity == "tags":
            op, negate = _tag_match(c)
            sub = sa.select(RegModelTagRow.name).where(
                RegModelTagRow.key == c.key, _compare(RegModelTagRow.value, op, _value(text, c))
            )
            out.append(RegModelRow.name.not_in(sub) if negate else RegModelRow.name.in_(sub))
        elif c.key == "alias":
            sub = sa.select(RegAliasRow.name).where(
                _compare(RegAliasRow.alias, c.op, _value(text, c))
            )
            out.append(RegModelRow.name.in_(sub))
        elif c.key in _MODEL_ATTRS:
            out.append(_compare(_MODEL_ATTRS[c.key], c.op, _value(text, c)))
        else:
            raise _error(text, c.pos, f"a model attribute ({', '.join(sorted(_MODEL_ATTRS))})")
    return out


def version_conditions(text: str | None) -> list[ColumnElement[bool]]:
    if not text or not text.strip():
        return []
    out: list[ColumnElement[bool]] = []
    for c in _Parser(text, _ENTITIES, set(_VERSION_ATTRS)).parse():
        if c.entity == "tags":
            t = RegVersionTagRow
            op, negate = _tag_match(c)
            sub = sa.select(t.name, t.version).where(
                t.key == c.key, _compare(t.value, op, _value(text, c))
            )
            key = sa.tuple_(RegVersionRow.name, RegVersionRow.version)
            out.append(key.not_in(sub) if negate else key.in_(sub))
        elif c.key == "alias":
            sub = sa.select(RegAliasRow.name, RegAliasRow.version).where(
                _compare(RegAliasRow.alias, c.op, _value(text, c))
            )
            out.append(sa.tuple_(RegVersionRow.name, RegVersionRow.version).in_(sub))
        elif c.key in _VERSION_ATTRS:
            out.append(_compare(_VERSION_ATTRS[c.key], c.op, _value(text, c)))
        else:
            raise _error(text, c.pos, f"a version attribute ({', '.join(sorted(_VERSION_ATTRS))})")
    return out


def _order(
    items: Sequence[str] | None, attrs: dict[str, Any], default: list[Any], what: str
) -> list[Any]:
    order: list[Any] = []
    for item in items or []:
        parts = str(item).strip().split()
        key = parts[0].removeprefix("attributes.") if parts else ""
        direction = parts[1].upper() if len(parts) > 1 else "ASC"
        col = attrs.get(key)
        if col is None or len(parts) > 2 or direction not in ("ASC", "DESC"):
            raise InvalidInput(
                f"Cannot order {what} by {item!r}: use one of "
                f"{', '.join(sorted(k for k, v in attrs.items() if v is not None))}, "
                "optionally followed by ASC or DESC",
                details={"field": "order_by"},
            )
        order.append(col.asc() if direction == "ASC" else col.desc())
    return order + default


def model_order(items: Sequence[str] | None) -> list[Any]:
    return _order(items, _MODEL_ATTRS, [RegModelRow.name.asc()], "models")


def version_order(items: Sequence[str] | None) -> list[Any]:
    return _order(
        items,
        _VERSION_ATTRS,
        [RegVersionRow.created_at.desc(), RegVersionRow.name.asc(), RegVersionRow.version.desc()],
        "versions",
    )
