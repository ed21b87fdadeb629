"""Lineage: the graph of versions, transforms and runs; code identity of transforms.

Node ids are ``dataset:<name>``, ``version:<name>@<id>``, ``transform:<id>`` and
``run:<id>``. Edges point downstream: ``input`` (parent version → transform), ``output``
(transform → version), ``parent`` (parent version → version, when no transform is recorded),
``produced`` (run → version), ``version`` (dataset → its version), ``quarantine`` (version →
the quarantine version of its set-aside rows).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import sqlalchemy as sa
from sqlalchemy.orm import Session

from strata.core.code import git_commit, run_python_transform
from strata.core.errors import InvalidInput
from strata.core.parse import parse_enum
from strata.data.ingest import Reader, arrow_reader, memory_reader
from strata.data.models import Direction, LineageEdge, LineageGraph, LineageNode
from strata.data.sandbox import read_only_sql
from strata.data.tables import DatasetRow, ParentRow, TransformRow, VersionRow

if TYPE_CHECKING:
    import pandas as pd

MAX_DEPTH = 50


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def sql_step(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    aliases: Sequence[str],
    output: str,
    commit: str | None,
) -> tuple[Reader, dict[str, Any]]:
    """A reader streaming ``sql``'s result from ``con`` (inputs already registered as views
    named ``aliases``) and the transform record. InvalidInput carries DuckDB's message, or
    says the SQL is not one read-only SELECT."""
    read_only_sql(sql)
    try:
        stream = con.sql(sql).to_arrow_reader(64 * 1024)
    except duckdb.Error as exc:
        raise InvalidInput(
            f"Transform SQL failed: {str(exc).strip().splitlines()[0]} (inputs are views named "
            f"{', '.join(repr(a) for a in aliases)})",
            details={"field": "sql"},
        ) from None
    reader = memory_reader(stream)
    assert reader is not None
    reader.info = {"kind": "transform", "sql": sql}
    record = {"kind": "sql", "name": output, "code": sql, "git_commit": commit or git_commit()}
    return reader, record


def python_step(
    fn: Callable[..., Any],
    frames: dict[str, pd.DataFrame],
    by_name: bool,
    commit: str | None,
) -> tuple[Reader, dict[str, Any]]:
    """Call ``fn`` on the input frames (by keyword when ``by_name``) and return a reader of
    its result with the transform record (source, digest, git commit)."""
    data, fname, record = run_python_transform(fn, frames, by_name, commit)
    reader = arrow_reader(data)
    reader.info = {"kind": "transform", "function": fname}
    return reader, record


class _Builder:
    def __init__(self, session: Session, root: str, direction: Direction, depth: int) -> None:
        self.session = session
        self.graph = LineageGraph(root=root, direction=direction, depth=depth)
        self._nodes: set[str] = set()
        self._edges: set[tuple[str, str, str]] = set()
        self._names: dict[str, str] = {}

    def name(self, dataset_id: str) -> str:
        if dataset_id not in self._names:
            ds = self.session.get(DatasetRow, dataset_id)
            self._names[dataset_id] = ds.name if ds is not None else dataset_id
        return self._names[dataset_id]

    def node(self, node_id: str, kind: str, label: str, **attrs: Any) -> None:
        if node_id not in self._nodes:
            self._nodes.add(node_id)
            self.graph.nodes.append(LineageNode(id=node_id, kind=kind, label=label, attrs=attrs))

    def edge(self, source: str, target: str, kind: str) -> None:
        key = (source, target, kind)
        if key not in self._edges:
            self._edges.add(key)
            self.graph.edges.append(LineageEdge(source=source, target=target, kind=kind))

    def version(self, row: VersionRow) -> str:
        name = self.name(row.dataset_id)
        node_id = f"version:{name}@{row.id}"
        self.node(
            node_id,
            "version",
            f"{name}@{row.id}",
            dataset=name,
            version=row.id,
            rows=row.rows,
            created_at=row.created_at.isoformat(),
            version_kind=row.kind,
            # shown as claimed, never drawn as edges: the server did not observe it
            **({"claimed": json.loads(row.claimed)} if row.claimed else {}),
        )
        self.node(f"dataset:{name}", "dataset", name)
        self.edge(f"dataset:{name}", node_id, "version")
        if row.run_id:
            self.node(f"run:{row.run_id}", "run", row.run_id)
            self.edge(f"run:{row.run_id}", node_id, "produced")
        return node_id

    def transform(self, transform_id: str) -> str | None:
        t = self.session.get(TransformRow, transform_id)
        if t is None:
            return None
        node_id = f"transform:{t.id}"
        self.node(
            node_id,
            "transform",
            t.name,
            language=t.kind,
            code_digest=t.code_digest,
            git_commit=t.git_commit,
            inputs=json.loads(t.inputs),
        )
        return node_id

    def link(self, parent: VersionRow, child: VersionRow) -> None:
        p, c = self.version(parent), self.version(child)
        t = self.transform(child.transform_id) if child.transform_id else None
        if t is None:
            self.edge(p, c, "parent")
        else:
            self.edge(p, t, "input")
            self.edge(t, c, "output")


def build(
    session: Session, root: VersionRow, direction: Direction | str, depth: int
) -> LineageGraph:
    """BFS from ``root``, ``depth`` version hops up (ancestors) or down (descendants)."""
    direction = parse_enum(Direction, direction, "direction")
    if not 0 <= depth <= MAX_DEPTH:
        raise InvalidInput(
            f"depth must be between 0 and {MAX_DEPTH}, got {depth}", details={"field": "depth"}
        )
    b = _Builder(session, "", direction, depth)
    b.graph.root = b.version(root)
    if root.transform_id:
        t = b.transform(root.transform_id)
        if t is not None:
            b.edge(t, b.graph.root, "output")
    queue: deque[tuple[VersionRow, int]] = deque([(root, 0)])
    seen = {(root.dataset_id, root.id)}
    while queue:
        row, d = queue.popleft()
        if direction is Direction.DOWN and row.quarantine_version:
            q = session.scalar(
                sa.select(VersionRow).where(
                    VersionRow.id == row.quarantine_version,
                    VersionRow.quarantine_of == f"{b.name(row.dataset_id)}@{row.id}",
                )
            )
            if q is not None:
                b.edge(b.version(row), b.version(q), "quarantine")
        if d >= depth:
            continue
        if direction is Direction.UP:
            links = session.execute(
                sa.select(VersionRow)
                .join(
                    ParentRow,
                    sa.and_(
                        ParentRow.parent_dataset_id == VersionRow.dataset_id,
                        ParentRow.parent_version_id == VersionRow.id,
                    ),
                )
                .where(ParentRow.dataset_id == row.dataset_id, ParentRow.version_id == row.id)
                .order_by(ParentRow.position)
            ).scalars()
            pairs = [(other, row) for other in links]
        else:
            links = session.execute(
                sa.select(VersionRow)
                .join(
                    ParentRow,
                    sa.and_(
                        ParentRow.dataset_id == VersionRow.dataset_id,
                        ParentRow.version_id == VersionRow.id,
                    ),
                )
                .where(
                    ParentRow.parent_dataset_id == row.dataset_id,
                    ParentRow.parent_version_id == row.id,
                )
                .order_by(VersionRow.created_at)
            ).scalars()
            pairs = [(row, other) for other in links]
        for parent, child in pairs:
            b.link(parent, child)
            other = parent if direction is Direction.UP else child
            key = (other.dataset_id, other.id)
            if key not in seen:
                seen.add(key)
                queue.append((other, d + 1))
    return b.graph
