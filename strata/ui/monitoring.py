"""Monitoring pages: rules with their firings (``/monitoring``) and one model
(``/monitoring/{model}``): drift over time per feature with the distribution overlay of a
chosen window, performance over time with feedback coverage, service health, its rules.

Charts are inline SVG drawn here (no script): each series is downsampled with LTTB to at most
``POINTS`` points first."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from markupsafe import Markup, escape
from starlette.responses import Response

from strata.ui.charts import lttb
from strata.ui.deps import client_of, page_viewer
from strata.ui.session import Viewer
from strata.ui.web import PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
POINTS = 300
W, H = 420, 110
PERFORMANCE = ("accuracy", "f1", "roc_auc", "mae", "rmse", "coverage", "estimated.f1",
               "estimated.accuracy")  # fmt: skip
HEALTH = ("p99_latency_ms", "p50_latency_ms", "throughput_rps", "error_rate", "cpu_percent",
          "memory_mb")  # fmt: skip
#: Series recorded per serving worker (label ``worker``): one line each.
PER_WORKER = ("cpu_percent", "memory_mb")


def sparkline(points: list[Any], threshold: float | None = None, mark: int | None = None) -> Markup:
    """An SVG line of ``points`` (SeriesPoint, oldest first), a dashed threshold line, and a
    dot on the point at index ``mark``."""
    if not points:
        return Markup('<p class="empty">no points</p>')
    x = np.array([p.ts.timestamp() for p in points])
    y = np.array([p.value for p in points], dtype=np.float64)
    idx = np.arange(len(points))
    if len(points) > POINTS:
        x, y = lttb(x, y, POINTS)
    finite = y[np.isfinite(y)]
    lo = (
        float(min(finite.min(), threshold if threshold is not None else finite.min()))
        if len(finite)
        else 0.0
    )
    hi = (
        float(max(finite.max(), threshold if threshold is not None else finite.max()))
        if len(finite)
        else 1.0
    )
    hi = hi if hi > lo else lo + 1.0
    x0, x1 = float(x.min()), float(x.max()) if x.max() > x.min() else float(x.min()) + 1

    def px(a: float, b: float) -> tuple[float, float]:
        return 4 + (a - x0) / (x1 - x0) * (W - 8), H - 4 - (b - lo) / (hi - lo) * (H - 8)

    path = " ".join(f"{px(a, b)[0]:.1f},{px(a, b)[1]:.1f}" for a, b in zip(x, y, strict=True)
                    if np.isfinite(b))  # fmt: skip
    parts = [f'<polyline fill="none" stroke="#4c78a8" stroke-width="1.5" points="{path}"/>']
    if threshold is not None:
        ty = px(x0, threshold)[1]
        parts.append(f'<line x1="0" x2="{W}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#b00020" '
                     'stroke-dasharray="4 3"/>')  # fmt: skip
    if mark is not None and 0 <= mark < len(points) and len(points) <= POINTS:
        mx, my = px(points[mark].ts.timestamp(), points[mark].value)
        parts.append(f'<circle cx="{mx:.1f}" cy="{my:.1f}" r="4" fill="#f58518"/>')
    del idx
    label = (
        escape(f"{points[-1].value:.4g} (min {finite.min():.4g}, max {finite.max():.4g})")
        if len(finite)
        else ""
    )
    return Markup(
        f'<svg width="{W}" height="{H}" role="img" aria-label="series">{"".join(parts)}</svg>'
        f'<div class="dim">{label}</div>'
    )


def overlay_bars(overlay: dict[str, Any]) -> Markup:
    """Reference vs current shares of one window (as the drift HTML report draws them)."""
    from strata.monitoring.html import _bars
    from strata.monitoring.models import ColumnDrift, Method

    col = ColumnDrift(
        drifted=False,
        method=Method.AUTO,
        score=0.0,
        threshold=0.0,
        kind="numeric",
        reference_rows=0,
        current_rows=0,
        overlay=overlay,
    )
    return Markup(_bars(col))


@router.get("/monitoring")
def rules_page(request: Request, who: Viewer = Depends(page_viewer)) -> Response:
    client = client_of(request)
    rules = client.monitoring.list_rules()
    events = client.monitoring.list_alert_events(limit=100)
    models = client.registry.search_models(max_results=200).items
    return render(request, who, "monitoring.html", rules=rules, events=events, models=models)


@router.get("/monitoring/{model}")
def model_page(
    request: Request,
    model: str,
    feature: str = "",
    at: int = -1,
    who: Viewer = Depends(page_viewer),
) -> Response:
    mon = client_of(request).monitoring
    names = mon.list_series(model)
    drift_names = [n for n in names if n.startswith("drift.score.")]
    share = mon.get_series(model, "drift.share", limit=POINTS)
    features: list[dict[str, Any]] = []
    for name in drift_names:
        got = mon.get_series(model, name, limit=POINTS)
        line = sparkline(got, got[-1].labels.get("threshold") if got else None)
        last = got[-1] if got else None
        features.append(
            {"name": name.removeprefix("drift.score."), "points": got, "chart": line, "last": last}
        )
    chosen = next((f for f in features if f["name"] == feature), features[0] if features else None)
    detail = None
    if chosen is not None and chosen["points"]:
        pts: list[Any] = chosen["points"]
        i = at if 0 <= at < len(pts) else len(pts) - 1
        detail = {"name": chosen["name"], "index": i, "point": pts[i], "count": len(pts),
                  "chart": sparkline(pts, pts[i].labels.get("threshold"), i),
                  "overlay": overlay_bars(pts[i].labels.get("overlay") or {})}  # fmt: skip
    perf = [{"name": n, "chart": sparkline(mon.get_series(model, n, limit=POINTS),
                                           0.7 if n == "f1" else None)}
            for n in PERFORMANCE if n in names]  # fmt: skip
    health = []
    for n in (h for h in HEALTH if h in names):
        got = mon.get_series(model, n, limit=POINTS)
        groups: dict[str, list[Any]] = {"": got}
        if n in PER_WORKER:
            groups = {}
            for p in got:  # at most POINTS points, split by worker
                groups.setdefault(str(p.labels.get("worker", "")), []).append(p)
        health += [{"name": f"{n} {w}".strip(), "chart": sparkline(pts)}
                   for w, pts in sorted(groups.items())]  # fmt: skip
    return render(
        request, who, "monitoring_model.html", model=model,
        share=sparkline(share, 0.5), features=features, detail=detail, perf=perf,
        health=health, rules=mon.list_rules(model),
        events=[e for e in mon.list_alert_events(limit=200) if e.model == model][:50],
    )  # fmt: skip
