"""Tracking pages: experiments, the runs table, compare, and the run page with its charts.

Every page reads through ``client.tracking`` / ``client.data`` — the service interfaces the
REST API uses — never the tables behind them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from strata.client import Client
from strata.core.errors import InvalidInput, NotFound, StrataError
from strata.core.page import iterate_pages
from strata.core.principal import Permission
from strata.core.threads import run_blocking
from strata.data.models import DatasetVersion
from strata.tracking.models import Run, ViewType
from strata.ui import charts
from strata.ui.deps import client_of, page_viewer
from strata.ui.session import Viewer, check_write, require_text
from strata.ui.web import PAGE_HEADERS, PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZES = (25, 50, 100, 250, 500)
MAX_TRAIL = 200  # pages "Previous" can walk back through (the URL stays a few KB)
DEFAULT_PAGE_SIZE = 50
#: Columns shown when none are chosen: this many params and metrics seen on the page.
DEFAULT_COLUMNS_PER_KIND = 6
MAX_COMPARE = 20
MAX_CHART_POINTS = 5000
#: Tags recording where a run ran (shown under "Context", not among the user's tags).
CONTEXT_TAGS = {
    "mlflow.source.git.commit": "git commit",
    "mlflow.source.git.branch": "git branch",
    "mlflow.source.git.repoURL": "git remote",
    "strata.source.git.dirty": "uncommitted changes",
    "mlflow.source.name": "entry point",
    "mlflow.source.type": "source type",
    "strata.python.version": "Python",
    "strata.platform": "platform",
    "mlflow.user": "user",
}
HIDDEN_TAGS = {"mlflow.parentRunId", "mlflow.runName", "mlflow.log-model.history"}


def _view(value: str) -> ViewType:
    try:
        return ViewType(value.upper())
    except ValueError:
        raise InvalidInput(
            f"Unknown view {value!r}: expected one of active_only, deleted_only, all",
            details={"field": "view"},
        ) from None


@router.get("/experiments")
def experiments(
    request: Request,
    q: str = "",
    view: str = "active_only",
    who: Viewer = Depends(page_viewer),
) -> Response:
    client = client_of(request)
    flt = f"name LIKE '%{q.replace(chr(39), '')}%'" if q else None
    page = client.tracking.search_experiments(filter=flt, view=_view(view), max_results=1000)
    return render(request, who, "experiments.html", experiments=page.items, q=q, view=view)


def _columns(chosen: list[str], runs: list[Run]) -> tuple[list[str], dict[str, list[str]]]:
    """The columns to show and every key seen on the page (for the column picker)."""
    seen: dict[str, set[str]] = {"params": set(), "metrics": set(), "tags": set()}
    for run in runs:
        seen["params"].update(run.params)
        seen["metrics"].update(run.metrics)
        seen["tags"].update(k for k in run.tags if not k.startswith("mlflow."))
    available = {kind: sorted(keys) for kind, keys in seen.items()}
    if chosen:
        for col in chosen:
            kind, _, key = col.partition(".")
            if kind not in seen or not key:
                raise InvalidInput(
                    f"Unknown column {col!r}: expected params.KEY, metrics.KEY or tags.KEY",
                    details={"field": "col"},
                )
        return chosen, available
    cols = [f"params.{k}" for k in available["params"][:DEFAULT_COLUMNS_PER_KIND]]
    cols += [f"metrics.{k}" for k in available["metrics"][:DEFAULT_COLUMNS_PER_KIND]]
    return cols, available


def _cell(run: Run, col: str) -> Any:
    kind, _, key = col.partition(".")
    source: dict[str, Any] = getattr(run, kind)
    return source.get(key)


@router.get("/experiments/{experiment_id}")
def runs_table(
    request: Request,
    experiment_id: str,
    filter: str = "",
    order: str = "",
    col: list[str] = Query(default=[]),
    page: str = "",
    back: list[str] = Query(default=[]),
    n: int = 1,
    size: int = DEFAULT_PAGE_SIZE,
    view: str = "active_only",
    who: Viewer = Depends(page_viewer),
) -> Response:
    client = client_of(request)
    experiment = client.tracking.get_experiment(experiment_id)
    if size not in PAGE_SIZES:
        size = DEFAULT_PAGE_SIZE
    error: str | None = None
    runs: list[Run] = []
    next_token: str | None = None
    try:
        result = client.tracking.search_runs(
            experiment_id,
            filter or None,
            view=_view(view),
            max_results=size,
            order_by=[order] if order else None,
            page_token=page or None,
        )
        runs, next_token = result.items, result.next_page_token
    except InvalidInput as exc:
        error = exc.message
    try:
        columns, available = _columns([c for c in col if c], runs)
    except InvalidInput as exc:
        columns, available = _columns([], runs)
        error = error or exc.message
    rows = [(run, [_cell(run, c) for c in columns]) for run in runs]
    chosen = [c for c in col if c]

    # Page tokens only go forward, so the URL carries the tokens of the pages before this one
    # ("back", oldest first; "" is the first page): "Previous" pops one, "Next" pushes this one.
    trail = back[-MAX_TRAIL:]

    def link(
        order_by: str = order,
        page_token: str = "",
        page_number: int = 1,
        trail_: Sequence[str] = (),
    ) -> str:
        """This table's URL with another order or page, the rest of the query kept."""
        query = [("filter", filter), ("order", order_by), ("view", view), ("size", str(size))]
        query += [("page", page_token), ("n", str(page_number))]
        query += [("back", t) for t in trail_]
        query += [("col", c) for c in chosen]
        return f"/experiments/{quote(experiment_id, safe='')}?{urlencode(query)}"

    page_number = max(n, 1)
    previous = link(order, trail[-1], page_number - 1, trail[:-1]) if page and trail else None
    following = link(order, next_token, page_number + 1, [*trail, page]) if next_token else None

    context: dict[str, Any] = dict(
        experiment=experiment,
        rows=rows,
        columns=columns,
        available=available,
        filter=filter,
        order=order,
        chosen=chosen,
        link=link,
        page=page,
        n=page_number,
        previous=previous,
        following=following,
        size=size,
        sizes=PAGE_SIZES,
        view=view,
        next_token=next_token,
        error=error,
    )
    status = 400 if error else 200
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "runs":
        return render(request, who, "runs_table.html", status=status, **context)
    return render(request, who, "runs.html", status=status, **context)


def _all_versions(client: Client, name: str) -> Iterator[DatasetVersion]:
    return iterate_pages(lambda token: client.data.list_versions(name, page_token=token))


def _dataset_links(client: Client, run: Run) -> list[dict[str, Any]]:
    """The run's inputs with the dataset version each names, when the data layer has it."""
    out = []
    versions_by_name: dict[str, dict[str, str]] = {}
    for item in run.inputs:
        if item.name not in versions_by_name:
            try:
                versions_by_name[item.name] = {
                    v.digest: v.id for v in _all_versions(client, item.name)
                }
            except (NotFound, InvalidInput):
                versions_by_name[item.name] = {}
        out.append({"input": item, "version": versions_by_name[item.name].get(item.digest)})
    return out


MAX_REPORT_BYTES = 8 << 20


def _evaluation(client: Client, run_id: str, artifacts: list[Any]) -> dict[str, Any] | None:
    """The run's evaluation report (``evaluation/report.json`` of a training job or
    ``strata evaluate --run``), or None; an unreadable one is shown as an error."""
    if not any(a.path == "evaluation" and a.is_dir for a in artifacts):
        return None
    from strata.training.models import EvaluationReport

    try:
        _, _, fh = client.tracking.open_artifact(run_id, "evaluation/report.json")
        with fh:
            data = fh.read(MAX_REPORT_BYTES + 1)
        if len(data) > MAX_REPORT_BYTES:
            return {"error": f"report.json is larger than {MAX_REPORT_BYTES} bytes"}
        return {"report": EvaluationReport.model_validate_json(data)}
    except NotFound:
        return None
    except (StrataError, ValueError) as exc:
        return {"error": str(exc)[:500]}


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, who: Viewer = Depends(page_viewer)) -> Response:
    client = client_of(request)
    run = client.tracking.get_run(run_id)
    experiment = client.tracking.get_experiment(run.info.experiment_id)
    children = client.tracking.search_runs(
        run.info.experiment_id,
        f"attributes.parent_run_id = '{run_id}'",
        view=ViewType.ALL,
        max_results=500,
    ).items
    parent = None
    if run.info.parent_run_id:
        try:
            parent = client.tracking.get_run(run.info.parent_run_id)
        except NotFound:
            parent = None
    context_tags = {label: run.tags[key] for key, label in CONTEXT_TAGS.items() if key in run.tags}
    tags = {
        k: v for k, v in sorted(run.tags.items()) if k not in CONTEXT_TAGS and k not in HIDDEN_TAGS
    }
    artifacts = client.tracking.list_artifacts(run_id)
    from strata.models.runs import run_models  # numpy and yaml load with the first run page

    return render(
        request,
        who,
        "run.html",
        run=run,
        experiment=experiment,
        parent=parent,
        children=children,
        context_tags=context_tags,
        tags=tags,
        inputs=_dataset_links(client, run),
        artifacts=artifacts,
        models=run_models(client.tracking, run_id),
        evaluation=_evaluation(client, run_id, artifacts),
        metric_keys=sorted(run.metrics),
    )


def _points(value: int) -> int:
    if not 3 <= value <= MAX_CHART_POINTS:
        raise InvalidInput(
            f"points must be between 3 and {MAX_CHART_POINTS}, got {value}",
            details={"field": "points"},
        )
    return value


@router.get("/runs/{run_id}/metric")
def metric_series(
    request: Request,
    run_id: str,
    key: str,
    points: int = charts.DEFAULT_POINTS,
    lo: float | None = None,
    hi: float | None = None,
    who: Viewer = Depends(page_viewer),
) -> Response:
    """One metric's history as chart data, downsampled with LTTB (JSON)."""
    history = client_of(request).tracking.get_metric_history(run_id, key)
    if not history:
        raise NotFound(f"Run {run_id!r} has no metric {key!r}", details={"key": key})
    data = charts.series(history, _points(points), lo=lo, hi=hi)
    return JSONResponse(data | {"key": key, "run_id": run_id}, headers=PAGE_HEADERS)


@router.get("/compare")
def compare(
    request: Request,
    run: list[str] = Query(default=[]),
    who: Viewer = Depends(page_viewer),
) -> Response:
    ids = list(dict.fromkeys(r for r in run if r))
    if not ids:
        raise InvalidInput("Choose at least one run to compare", details={"field": "run"})
    if len(ids) > MAX_COMPARE:
        raise InvalidInput(
            f"Compare at most {MAX_COMPARE} runs at once, got {len(ids)}",
            details={"field": "run"},
        )
    client = client_of(request)
    runs = [client.tracking.get_run(r) for r in ids]
    param_keys = sorted({k for r in runs for k in r.params})
    metric_keys = sorted({k for r in runs for k in r.metrics})
    differing = {k for k in param_keys if len({r.params.get(k) for r in runs}) > 1}
    return render(
        request,
        who,
        "compare.html",
        runs=runs,
        param_keys=param_keys,
        metric_keys=metric_keys,
        differing=differing,
        qs=urlencode([("run", r.info.run_id) for r in runs]),
    )


@router.get("/compare/metric")
def compare_series(
    request: Request,
    key: str,
    run: list[str] = Query(default=[]),
    points: int = charts.DEFAULT_POINTS,
    who: Viewer = Depends(page_viewer),
) -> Response:
    """One metric of several runs, each downsampled, aligned on the union of steps (JSON)."""
    client = client_of(request)
    ids = list(dict.fromkeys(r for r in run if r))[:MAX_COMPARE]
    per_run: dict[str, dict[str, Any]] = {}
    for run_id in ids:
        info = client.tracking.get_run(run_id).info
        label = f"{info.run_name} ({run_id[:8]})"
        per_run[label] = charts.series(
            client.tracking.get_metric_history(run_id, key), _points(points)
        )
    return JSONResponse(charts.overlay(per_run) | {"key": key}, headers=PAGE_HEADERS)


# -- writes (editor and up) ----------------------------------------------------------------------
async def _form(request: Request) -> dict[str, Any]:
    return dict(await request.form())


@router.post("/runs/{run_id}/tags")
async def set_tag(request: Request, run_id: str, who: Viewer = Depends(page_viewer)) -> Response:
    form = await _form(request)
    await check_write(request, who, form, Permission.WRITE)
    key = require_text(form, "key", "A tag key")
    value = str(form.get("value", ""))
    tracking = client_of(request).tracking
    await run_blocking(tracking.set_tag, run_id, key, value)
    return RedirectResponse(f"/runs/{run_id}#tags", status_code=303)


@router.post("/runs/{run_id}/tags/delete")
async def delete_tag(request: Request, run_id: str, who: Viewer = Depends(page_viewer)) -> Response:
    form = await _form(request)
    await check_write(request, who, form, Permission.WRITE)
    key = require_text(form, "key", "A tag key")
    tracking = client_of(request).tracking
    await run_blocking(tracking.delete_tag, run_id, key)
    return RedirectResponse(f"/runs/{run_id}#tags", status_code=303)


@router.post("/runs/{run_id}/lifecycle")
async def run_lifecycle(
    request: Request, run_id: str, who: Viewer = Depends(page_viewer)
) -> Response:
    """Delete (restorable) or restore a run."""
    form = await _form(request)
    await check_write(request, who, form, Permission.WRITE)
    action = form.get("action")
    tracking = client_of(request).tracking
    if action == "delete":
        await run_blocking(tracking.delete_run, run_id)
    elif action == "restore":
        await run_blocking(tracking.restore_run, run_id)
    else:
        raise InvalidInput(
            f"Unknown action {action!r}: expected 'delete' or 'restore'",
            details={"field": "action"},
        )
    return RedirectResponse(f"/runs/{run_id}", status_code=303)
