"""The study page of a hyperparameter search (``strata tune``): its trials, the best one, the
objective over the trials and how much each parameter goes with the objective.

A study is its parent run (tag ``strata.tune.study``; params ``tune.metric``,
``tune.direction``, ``tune.space``) and its trials are the child runs (tag
``strata.tune.trial``), so the page reads through ``client.tracking`` only — the interface
the REST API uses — and works on a remote tracking server as it does embedded.

Parameter importance is a plain, stated statistic, not fANOVA: for a numeric parameter the
absolute Spearman rank correlation with the objective over the finished trials, for a
categorical one the correlation ratio η (the share of the objective's spread explained by the
choice). Both are in [0, 1].
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from strata.core.errors import InvalidInput
from strata.core.page import iterate_pages
from strata.tracking.models import Run, ViewType
from strata.ui.deps import client_of, page_viewer
from strata.ui.session import Viewer
from strata.ui.web import PAGE_HEADERS, PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

TAG_STUDY = "strata.tune.study"
TAG_TRIAL = "strata.tune.trial"
MAX_TRIALS = 5000


def _study(request: Request, run_id: str) -> tuple[Run, list[Run], dict[str, Any]]:
    client = client_of(request)
    parent = client.tracking.get_run(run_id)
    if TAG_STUDY not in parent.tags or parent.info.parent_run_id:
        raise InvalidInput(
            f"Run {run_id!r} is not a study's parent run (no {TAG_STUDY} tag)",
            details={"run_id": run_id},
        )
    trials: list[Run] = []
    for page_run in iterate_pages(
        lambda token: client.tracking.search_runs(
            parent.info.experiment_id,
            f"attributes.parent_run_id = '{run_id}'",
            view=ViewType.ALL,
            max_results=1000,
            page_token=token,
        )
    ):
        trials.append(page_run)
        if len(trials) >= MAX_TRIALS:
            break
    trials.sort(key=lambda r: _number(r))
    metric = parent.params.get("tune.metric", "")
    direction = parent.params.get("tune.direction", "maximize")
    try:
        space = json.loads(parent.params.get("tune.space", "{}"))
    except ValueError:
        space = {}
    keys = sorted(space) if isinstance(space, dict) else []
    return parent, trials, {"metric": metric, "direction": direction, "keys": keys}


def _number(run: Run) -> int:
    try:
        return int(run.tags.get(TAG_TRIAL, ""))
    except ValueError:
        return 1 << 30


def history(trials: list[Run], metric: str, direction: str) -> dict[str, Any]:
    """Chart data: the objective of each finished trial and the best so far, by trial."""
    xs: list[int] = []
    values: list[float | None] = []
    best: list[float | None] = []
    current: float | None = None
    better = max if direction == "maximize" else min
    for run in trials:
        value = run.metrics.get(metric)
        number = _number(run)
        if number >= 1 << 30:
            continue
        xs.append(number)
        if value is None or not math.isfinite(value) or run.info.status.value != "FINISHED":
            values.append(None)
        else:
            values.append(value)
            current = value if current is None else better(current, value)
        best.append(current)
    return {
        "x": xs,
        "series": [
            {"name": metric or "objective", "y": values},
            {"name": "best so far", "y": best},
        ],
    }


def _ranks(values: np.ndarray) -> np.ndarray:
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    # ties share their mean rank
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return np.asarray(sums[inverse] / counts[inverse])


def importance(trials: list[Run], metric: str, keys: list[str]) -> dict[str, float]:
    """|Spearman rho| (numbers) or eta (categories) of each parameter with the objective."""
    done = [
        r
        for r in trials
        if r.info.status.value == "FINISHED" and math.isfinite(r.metrics.get(metric, math.nan))
    ]
    out: dict[str, float] = {}
    if len(done) < 3:
        return out
    y = np.asarray([r.metrics[metric] for r in done], dtype=float)
    for key in keys:
        raw = [r.params.get(key) for r in done]
        if any(v is None for v in raw):
            continue
        try:
            x = np.asarray([float(v) for v in raw if v is not None])
        except ValueError:
            x = None
        if x is not None:
            rx, ry = _ranks(x), _ranks(y)
            if rx.std() == 0 or ry.std() == 0:
                out[key] = 0.0
                continue
            out[key] = abs(float(np.corrcoef(rx, ry)[0, 1]))
        else:
            total = float(((y - y.mean()) ** 2).sum())
            groups: dict[str, list[float]] = {}
            for v, target in zip(raw, y, strict=True):
                groups.setdefault(str(v), []).append(float(target))
            between = sum(len(g) * (np.mean(g) - y.mean()) ** 2 for g in groups.values())
            out[key] = math.sqrt(between / total) if total > 0 else 0.0
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def parallel(
    trials: list[Run], metric: str, keys: list[str], direction: str, width: int = 760
) -> dict[str, Any] | None:
    """Parallel coordinates as SVG geometry: one vertical axis per parameter plus the
    objective, one polyline per finished trial (numbers scaled to each axis' range,
    categories spread evenly in sorted order), darker for better objectives. None with
    fewer than two finished trials."""
    done = [
        r
        for r in trials
        if r.info.status.value == "FINISHED" and math.isfinite(r.metrics.get(metric, math.nan))
    ]
    if len(done) < 2:
        return None
    height, top, bottom, left, right = 260, 24, 28, 40, 40
    names = [*keys, metric]
    columns: list[list[float]] = []
    axes: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        raw = [r.metrics[metric] if name == metric else r.params.get(name) for r in done]
        try:
            values = [float(v) for v in raw if v is not None]
            if len(values) != len(raw):
                raise ValueError
            lo, hi = min(values), max(values)
            labels = (f"{lo:.4g}", f"{hi:.4g}")
            scaled = [0.5 if hi == lo else (v - lo) / (hi - lo) for v in values]
        except (TypeError, ValueError):
            cats = sorted({str(v) for v in raw})
            pos = {c: (k / (len(cats) - 1) if len(cats) > 1 else 0.5) for k, c in enumerate(cats)}
            scaled = [pos[str(v)] for v in raw]
            labels = (cats[0], cats[-1])
        x = left + i * (width - left - right) / max(1, len(names) - 1)
        axes.append({"name": name, "x": round(x, 1), "low": labels[0], "high": labels[1]})
        columns.append(scaled)
    objective = columns[-1]
    lines: list[dict[str, Any]] = []
    for j, run in enumerate(done):
        goodness = objective[j] if direction == "maximize" else 1 - objective[j]
        points = " ".join(
            f"{axes[i]['x']},{round(top + (1 - columns[i][j]) * (height - top - bottom), 1)}"
            for i in range(len(names))
        )
        shade = int(200 - 170 * goodness)
        lines.append(
            {
                "points": points,
                "color": f"rgb({shade},{shade},255)",
                "run_id": run.info.run_id,
                "goodness": goodness,
            }
        )
    lines.sort(key=lambda line: float(line["goodness"]))  # the best drawn last, on top
    return {
        "width": width,
        "height": height,
        "top": top,
        "bottom": height - bottom,
        "axes": axes,
        "lines": lines,
    }


@router.get("/studies/{run_id}")
def study_page(request: Request, run_id: str, who: Viewer = Depends(page_viewer)) -> Response:
    client = client_of(request)
    parent, trials, meta = _study(request, run_id)
    experiment = client.tracking.get_experiment(parent.info.experiment_id)
    best_id = parent.tags.get("strata.tune.best_run_id") or None
    best = next((t for t in trials if t.info.run_id == best_id), None)
    return render(
        request,
        who,
        "study.html",
        parent=parent,
        experiment=experiment,
        study=parent.tags[TAG_STUDY],
        trials=trials,
        best=best,
        number=_number,
        importance=importance(trials, meta["metric"], meta["keys"]),
        parallel=parallel(trials, meta["metric"], meta["keys"], meta["direction"]),
        **meta,
    )


@router.get("/studies/{run_id}/history")
def study_history(request: Request, run_id: str, who: Viewer = Depends(page_viewer)) -> Response:
    """The optimization history as overlay chart data (JSON)."""
    _, trials, meta = _study(request, run_id)
    return JSONResponse(
        history(trials, meta["metric"], meta["direction"]) | {"key": meta["metric"]},
        headers=PAGE_HEADERS,
    )
