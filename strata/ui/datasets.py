"""Dataset pages: the catalog, a dataset's versions, a version (schema, profile, reports,
quarantine rows, runs trained on it), the diff of two versions, and lineage as a graph."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from strata.core.errors import InvalidInput
from strata.core.principal import Permission
from strata.core.threads import run_blocking
from strata.data.models import ColumnSchema, DatasetVersion
from strata.ui import lineage as lineage_view
from strata.ui.deps import client_of, page_viewer
from strata.ui.session import Viewer, check_write, require_text
from strata.ui.web import PageRoute, next_link, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

QUARANTINE_ROWS = 50
#: Datasets and versions per page (the version page offers the newest this many to diff).
PAGE_SIZE = 100
LINEAGE_DEPTH = 3
HIST_W = 220
HIST_H = 60


@router.get("/datasets")
def datasets(
    request: Request, q: str = "", page: str = "", who: Viewer = Depends(page_viewer)
) -> Response:
    found = client_of(request).data.list_datasets(
        query=q or None, max_results=PAGE_SIZE, page_token=page or None
    )
    following = next_link("/datasets", found.next_page_token, q=q)
    return render(
        request, who, "datasets.html", datasets=found.items, q=q, page=page, following=following
    )


@router.get("/datasets/{name}")
def dataset(
    request: Request, name: str, page: str = "", who: Viewer = Depends(page_viewer)
) -> Response:
    client = client_of(request)
    ds = client.data.get_dataset(name)
    found = client.data.list_versions(
        name, max_results=PAGE_SIZE, page_token=page or None, newest_first=True
    )
    path = f"/datasets/{quote(name, safe='')}"
    return render(
        request,
        who,
        "dataset.html",
        dataset=ds,
        versions=found.items,
        page=page,
        following=next_link(path, found.next_page_token),
    )


def histogram_bars(hist: dict[str, Any] | None) -> dict[str, Any] | None:
    """A profile histogram as SVG bars (heights scaled to the largest bin)."""
    if not hist or not hist.get("counts"):
        return None
    counts: list[int] = list(hist["counts"])
    labels: list[str]
    if hist.get("kind") == "categorical":
        labels = [str(v) for v in hist.get("values") or []]
        if hist.get("other"):
            counts.append(int(hist["other"]))
            labels.append("(other)")
    else:
        edges = hist.get("edges") or []
        labels = [
            f"{edges[i]:.4g} to {edges[i + 1]:.4g}" if i + 1 < len(edges) else ""
            for i in range(len(counts))
        ]
    top = max(counts) or 1
    width = HIST_W / len(counts)
    bars = [
        {
            "x": round(i * width, 2),
            "w": round(max(width - 1, 1), 2),
            "h": round(HIST_H * c / top, 2),
            "y": round(HIST_H - HIST_H * c / top, 2),
            "title": f"{labels[i] if i < len(labels) else ''}: {c:,}",
        }
        for i, c in enumerate(counts)
    ]
    return {"bars": bars, "w": HIST_W, "h": HIST_H}


def _profile(client: Any, ref: str) -> list[dict[str, Any]]:
    raw = client.data.profile(ref)
    data = raw.model_dump(mode="json") if hasattr(raw, "model_dump") else dict(raw)
    columns = []
    for col in data.get("columns", []):
        columns.append(col | {"chart": histogram_bars(col.get("histogram"))})
    return columns


def _head(client: Any, ref: str, limit: int) -> dict[str, Any]:
    table = client.data.duckdb(ref).limit(limit).arrow()
    if hasattr(table, "read_all"):  # newer DuckDB returns a RecordBatchReader
        table = table.read_all()
    return {
        "columns": table.column_names,
        "rows": [list(r.values()) for r in table.to_pylist()],
    }


def _version(client: Any, name: str, version_id: str) -> DatasetVersion:
    version: DatasetVersion = client.data.get_version(f"{name}@{version_id}")
    return version


@router.get("/datasets/{name}/versions/{version_id}")
def version_page(
    request: Request, name: str, version_id: str, who: Viewer = Depends(page_viewer)
) -> Response:
    client = client_of(request)
    version = _version(client, name, version_id)
    ref = version.ref
    quarantine = client.data.quarantine(ref)
    down = client.lineage(ref, direction="down", depth=1)
    runs = [n for n in down.nodes if n.kind == "run" and n.attrs.get("run_id")]
    producer = version.run_id
    columns: list[ColumnSchema] = version.columns
    return render(
        request,
        who,
        "version.html",
        version=version,
        columns=columns,
        profile=_profile(client, ref),
        reports=client.data.list_reports(ref),
        quarantine=quarantine,
        quarantine_head=_head(client, quarantine.ref, QUARANTINE_ROWS) if quarantine else None,
        runs=runs,
        producer=producer,
        others=[
            v
            for v in client.data.list_versions(name, max_results=PAGE_SIZE, newest_first=True)
            if v.id != version.id
        ],
    )


@router.get("/datasets/{name}/versions/{version_id}/lineage")
def lineage_page(
    request: Request,
    name: str,
    version_id: str,
    depth: int = LINEAGE_DEPTH,
    who: Viewer = Depends(page_viewer),
) -> Response:
    client = client_of(request)
    version = _version(client, name, version_id)
    up = client.lineage(version.ref, direction="up", depth=depth)
    down = client.lineage(version.ref, direction="down", depth=depth)
    graph = lineage_view.merge(up, down)
    return render(
        request,
        who,
        "lineage.html",
        version=version,
        depth=depth,
        drawing=lineage_view.layout(graph),
    )


@router.get("/datasets/{name}/diff")
def diff_page(
    request: Request, name: str, a: str = "", b: str = "", who: Viewer = Depends(page_viewer)
) -> Response:
    if not a or not b:
        raise InvalidInput(
            "Choose two versions to compare (a and b)", details={"field": "a" if not a else "b"}
        )
    client = client_of(request)
    diff = client.data.diff(f"{name}@{a}", f"{name}@{b}")
    return render(request, who, "diff.html", name=name, diff=diff)


@router.post("/datasets/{name}/versions/{version_id}/tag")
async def tag_version(
    request: Request, name: str, version_id: str, who: Viewer = Depends(page_viewer)
) -> Response:
    form = dict(await request.form())
    await check_write(request, who, form, Permission.WRITE)
    tag = require_text(form, "tag", "A tag")
    data = client_of(request).data
    await run_blocking(data.tag_version, f"{name}@{version_id}", tag)
    return RedirectResponse(f"/datasets/{name}/versions/{version_id}", status_code=303)
