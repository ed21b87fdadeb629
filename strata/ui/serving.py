"""Serving page: the endpoints running inference servers published — served version, traffic
split, request counts, errors and latency (since start, and live: since each worker's
previous report), shadow and fallback counts; every live worker's report added up (each
worker reports at every change and at least every 30 s)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from strata.ui.deps import client_of, page_viewer
from strata.ui.session import Viewer
from strata.ui.web import PageRoute, next_link, render

JOBS_PAGE = 50
"""Scoring jobs per page of /serving/jobs."""

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _row(status: Any) -> dict[str, Any]:
    stats = status.stats
    requests = stats.get("requests", 0.0)
    canary = sum(t.weight for t in status.policy.canary)
    return {
        "status": status,
        "split": [("primary", 1.0 - canary)] + [(t.model, t.weight) for t in status.policy.canary],
        "requests": int(requests),
        "rate": stats.get("rate_rps"),
        "errors": int(stats.get("errors", 0.0)),
        "latency_ms": (stats.get("latency_s", 0.0) / requests * 1000) if requests else None,
        # Since each worker's previous report (at most 30 s old): the live figures.
        "recent_errors": int(stats.get("window_errors", 0.0)),
        "recent_latency_ms": (
            stats.get("window_latency_s", 0.0) / recent * 1000
            if (recent := stats.get("window_requests", 0.0))
            else None
        ),
        "shadow": int(stats.get("shadow", 0.0)),
        "fallback": int(stats.get("fallback", 0.0) + stats.get("fallback_cache", 0.0)),
        "cache": int(stats.get("cache", 0.0)),
    }


@router.get("/serving")
def serving(request: Request, who: Viewer = Depends(page_viewer)) -> Response:
    endpoints = client_of(request).serving.list_endpoints()
    return render(request, who, "serving.html", rows=[_row(s) for s in endpoints])


@router.get("/serving/jobs")
def scoring_jobs(request: Request, page: str = "", who: Viewer = Depends(page_viewer)) -> Response:
    """Batch and stream scoring jobs started through the API: state, progress, result;
    ``JOBS_PAGE`` a page, newest first."""
    found = client_of(request).serving.list_jobs(max_results=JOBS_PAGE, page_token=page or None)
    following = next_link("/serving/jobs", found.next_page_token)
    return render(
        request, who, "serving_jobs.html", jobs=found.items, page=page, following=following
    )
