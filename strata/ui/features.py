"""Feature-store pages: entities, feature views, on-demand views and services with the
catalog search; a view's definition, statistics (its source version's profile) and lineage
to that version; an online lookup form for one entity."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from strata.core.errors import NotFound
from strata.core.threads import run_blocking
from strata.ui.datasets import histogram_bars
from strata.ui.deps import client_of, page_viewer
from strata.ui.session import Viewer
from strata.ui.web import PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/features")
def features(request: Request, q: str = "", who: Viewer = Depends(page_viewer)) -> Response:
    fs = client_of(request).features
    return render(
        request,
        who,
        "features.html",
        entities=fs.list_entities(),
        views=fs.list_feature_views(),
        on_demand=fs.list_on_demand_views(),
        services=fs.list_feature_services(),
        q=q,
        found=fs.search_features(q) if q.strip() else None,
    )


def _version_link(ref: str) -> str:
    """A version's page, or a dataset's page for a reference that is not pinned."""
    name, _, version = ref.partition("@")
    if not version or version == "latest":
        return f"/datasets/{quote(name, safe='')}"
    return f"/datasets/{quote(name, safe='')}/versions/{quote(version, safe='')}"


@router.get("/features/views/{name}")
async def view(request: Request, name: str, who: Viewer = Depends(page_viewer)) -> Response:
    fs = client_of(request).features
    spec = fs.get_feature_view(name)
    stats = None
    columns: list[dict[str, Any]] = []
    if isinstance(spec.source, str):  # SQL sources: their inputs' profiles are the statistics
        # The first look may profile the source version (DuckDB): off the event loop.
        stats = await run_blocking(fs.get_feature_statistics, name)
        columns = [c | {"chart": histogram_bars(c.get("histogram"))} for c in stats.columns]
    keys: list[str] = []
    for entity in spec.entities:
        keys += [k for k in fs.get_entity(entity).join_keys if k not in keys]
    return render(
        request,
        who,
        "feature_view.html",
        view=spec,
        keys=keys,
        stats=stats,
        columns=columns,
        source_link=_version_link(stats.source_version) if stats else None,
        inputs={a: _version_link(r) for a, r in getattr(spec.source, "inputs", {}).items()},
    )


@router.get("/features/on-demand/{name}")
def on_demand(request: Request, name: str, who: Viewer = Depends(page_viewer)) -> Response:
    fs = client_of(request).features
    spec = fs.get_on_demand_view(name)
    return render(request, who, "feature_on_demand.html", view=spec, keys=_odv_keys(fs, spec))


def _odv_keys(fs: Any, spec: Any) -> list[str]:
    """What a lookup of an on-demand view needs: its sources' join keys, then its request
    fields."""
    keys: list[str] = []
    for ref in spec.sources:
        for entity in fs.get_feature_view(ref.partition(":")[0]).entities:
            keys += [k for k in fs.get_entity(entity).join_keys if k not in keys]
    return keys + [f for f in spec.request if f not in keys]


@router.get("/features/lookup")
async def lookup(request: Request, view: str, who: Viewer = Depends(page_viewer)) -> Response:
    """The online values of one view for the entity in the query string (an htmx
    fragment). Values of the form are text; numbers are sent as numbers."""
    fs = client_of(request).features
    try:
        spec: Any = fs.get_feature_view(view)
        keys: list[str] = []
        for entity in spec.entities:
            keys += [k for k in fs.get_entity(entity).join_keys if k not in keys]
    except NotFound:
        spec = fs.get_on_demand_view(view)
        keys = _odv_keys(fs, spec)
    row: dict[str, Any] = {}
    for key in keys:
        text = request.query_params.get(key, "").strip()
        row[key] = _typed(text)
    result = await run_blocking(fs.get_online_features, [f"{view}:*"], [row])
    cells = [
        {
            "ref": ref,
            "value": result.columns[ref].values[0],
            "status": str(result.columns[ref].status[0]),
            "event_ts": result.columns[ref].event_ts[0],
        }
        for ref in result.features
    ]
    page = (
        "feature_lookup.html" if request.headers.get("HX-Request") else "feature_lookup_page.html"
    )
    return render(request, who, page, cells=cells, row=row)


def _typed(text: str) -> Any:
    """A form value as the JSON a caller would send: integers and decimals as numbers."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text or None
