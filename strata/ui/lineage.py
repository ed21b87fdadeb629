"""Lineage drawn as a graph: the up and down graphs of a version merged and laid out in columns.

Columns are signed distances from the root version: ancestors to the left, descendants (and
the runs that trained on them) to the right. Positions are computed here and drawn as SVG by
the template, so the page needs no graph library.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from strata.data.models import LineageGraph

COL_W = 230
ROW_H = 64
NODE_W = 190
NODE_H = 40
PAD = 20


@dataclass
class Box:
    id: str
    kind: str
    label: str
    sub: str
    href: str | None
    x: int
    y: int
    root: bool


@dataclass
class Line:
    x1: int
    y1: int
    x2: int
    y2: int
    kind: str


def _href(node_id: str, kind: str, label: str) -> str | None:
    if kind == "run":
        return f"/runs/{node_id.partition(':')[2]}"
    if kind == "version" and "@" in label:
        name, _, vid = label.partition("@")
        return f"/datasets/{name}/versions/{vid}"
    if kind == "dataset":
        return f"/datasets/{label}"
    return None


def _sub(kind: str, attrs: dict[str, Any]) -> str:
    if kind == "run":
        return f"run · {attrs.get('status', '')}".strip(" ·")
    if kind == "version":
        rows = attrs.get("rows")
        sub = f"version · {rows:,} rows" if isinstance(rows, int) else "version"
        return f"{sub} · claimed lineage" if attrs.get("claimed") else sub
    if kind == "transform":
        return f"transform · {attrs.get('language', '')}".strip(" ·")
    return kind


def merge(up: LineageGraph, down: LineageGraph) -> LineageGraph:
    """One graph holding both directions around the same root."""
    nodes = {n.id: n for n in up.nodes}
    for n in down.nodes:
        nodes.setdefault(n.id, n)
    edges = {(e.source, e.target, e.kind): e for e in up.edges}
    for e in down.edges:
        edges.setdefault((e.source, e.target, e.kind), e)
    return LineageGraph(
        root=up.root,
        direction=up.direction,
        depth=max(up.depth, down.depth),
        nodes=list(nodes.values()),
        edges=list(edges.values()),
    )


def layout(graph: LineageGraph) -> dict[str, Any]:
    """Boxes and lines in SVG coordinates, plus the drawing's width and height."""
    flow = [e for e in graph.edges if e.kind != "version"]
    out_edges: dict[str, list[str]] = {}
    in_edges: dict[str, list[str]] = {}
    for e in flow:
        out_edges.setdefault(e.source, []).append(e.target)
        in_edges.setdefault(e.target, []).append(e.source)
    column: dict[str, int] = {graph.root: 0}
    queue: deque[str] = deque([graph.root])
    while queue:
        node = queue.popleft()
        for nxt in out_edges.get(node, []):
            if nxt not in column and column[node] >= 0:
                column[nxt] = column[node] + 1
                queue.append(nxt)
        for prev in in_edges.get(node, []):
            if prev not in column and column[node] <= 0:
                column[prev] = column[node] - 1
                queue.append(prev)
    # Nodes reached only through "version" edges (the dataset a version belongs to) sit
    # beside the first node that names them.
    for e in graph.edges:
        if e.kind == "version":
            for a, b in ((e.source, e.target), (e.target, e.source)):
                if a not in column and b in column:
                    column[a] = column[b]
    nodes = [n for n in graph.nodes if n.id in column]
    if not nodes:
        return {"boxes": [], "lines": [], "width": 0, "height": 0}
    lo = min(column[n.id] for n in nodes)
    rows: dict[int, int] = {}
    boxes: dict[str, Box] = {}
    for n in sorted(nodes, key=lambda n: (column[n.id], n.kind != "version", n.label)):
        c = column[n.id] - lo
        r = rows.get(c, 0)
        rows[c] = r + 1
        boxes[n.id] = Box(
            id=n.id,
            kind=n.kind,
            label=n.label,
            sub=_sub(n.kind, n.attrs),
            href=_href(n.id, n.kind, n.label),
            x=PAD + c * COL_W,
            y=PAD + r * ROW_H,
            root=n.id == graph.root,
        )
    lines = [
        Line(
            x1=boxes[e.source].x + NODE_W,
            y1=boxes[e.source].y + NODE_H // 2,
            x2=boxes[e.target].x,
            y2=boxes[e.target].y + NODE_H // 2,
            kind=e.kind,
        )
        for e in graph.edges
        if e.source in boxes and e.target in boxes and e.kind != "version"
    ]
    width = PAD * 2 + (max(rows) + 1) * COL_W
    height = PAD * 2 + max(rows.values()) * ROW_H
    return {
        "boxes": list(boxes.values()),
        "lines": lines,
        "width": width,
        "height": height,
        "node_w": NODE_W,
        "node_h": NODE_H,
    }
