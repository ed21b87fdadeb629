"""CLI: ``strata experiments ...`` and ``strata runs ...`` (embedded, or remote when
``STRATA_URI`` is set). Tables by default; ``--json`` prints machine-readable JSON in which
non-finite metric values are the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strata.core.console import console, print_json, print_table
from strata.core.errors import Conflict, InvalidInput, NotFound
from strata.core.textchart import line_chart, shorten

if TYPE_CHECKING:  # imported when a command runs, so `strata --help` starts fast
    from strata.tracking.models import Experiment, Run, ViewType
    from strata.tracking.service import TrackingService

experiments_app = typer.Typer(
    help="Create, list, delete and restore experiments.", no_args_is_help=True
)
runs_app = typer.Typer(
    help="List, show, compare, delete and restore runs; download their artifacts.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ViewOpt = Annotated[
    str, typer.Option("--view", help="active, deleted or all (lifecycle stages to show).")
]
_VIEWS = {"active": "ACTIVE_ONLY", "deleted": "DELETED_ONLY", "all": "ALL"}


@contextmanager
def _tracking() -> Iterator[TrackingService]:
    """The tracking service of ``strata.Client()``: remote when ``STRATA_URI`` is set."""
    from strata.client import Client

    with Client() as client:
        yield client.tracking


def _view(value: str) -> ViewType:
    from strata.tracking.models import ViewType

    try:
        return ViewType(_VIEWS[value.lower()])
    except KeyError:
        raise InvalidInput(
            f"--view must be one of {', '.join(_VIEWS)}, got {value!r}", details={"field": "view"}
        ) from None


def _time(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _grid(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    """A runs table: ids never wrap or truncate (they are what other commands take);
    other cells fold onto more lines when the terminal is narrow."""
    from rich.table import Table

    if not rows:
        console.print(f"[dim]No {title.lower()} found.[/dim]")
        return
    table = Table(title=title, header_style="bold")
    for col in columns:
        ident = col == "run_id"
        table.add_column(col, no_wrap=ident, min_width=32 if ident else None, overflow="fold")
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            cells.append(
                "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)
            )
        table.add_row(*cells)
    console.print(table)


def resolve_experiment(svc: TrackingService, name_or_id: str) -> Experiment:
    """The experiment with this name, else with this id; NotFound naming both tries."""
    with suppress(NotFound):
        return svc.get_experiment_by_name(name_or_id)
    try:
        return svc.get_experiment(name_or_id)
    except NotFound:
        raise NotFound(
            f"No experiment named {name_or_id!r} and none with that id; "
            "see `strata experiments list --view all`",
            details={"experiment": name_or_id},
        ) from None


def _tags(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--tag must be KEY=VALUE, got {pair!r}", details={"field": "tag"})
        out[key] = value
    return out


# -- experiments -----------------------------------------------------------------------------
@experiments_app.command("list")
def experiments_list(
    filter: Annotated[
        str | None, typer.Option("--filter", help="e.g. \"name LIKE 'fl%'\".")
    ] = None,
    view: ViewOpt = "active",
    max_results: Annotated[int, typer.Option("--max-results", help="At most this many.")] = 1000,
    json_out: JsonOpt = False,
) -> None:
    """List experiments, newest first."""
    with _tracking() as svc:
        exps = svc.search_experiments(
            filter=filter, view=_view(view), max_results=max_results
        ).items
    if json_out:
        print_json(exps)
        return
    print_table(
        (
            {
                "id": e.experiment_id,
                "name": e.name,
                "stage": e.lifecycle_stage.value,
                "created": _time(e.creation_time),
                "artifact location": e.artifact_location,
                "description": e.description,
            }
            for e in exps
        ),
        ["id", "name", "stage", "created", "artifact location", "description"],
        title="Experiments",
    )


@experiments_app.command("create")
def experiments_create(
    name: Annotated[str, typer.Argument(help="Unique experiment name.")],
    description: Annotated[str | None, typer.Option(help="What the experiment is for.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="KEY=VALUE; repeat for several.")
    ] = None,
    artifact_location: Annotated[
        str | None, typer.Option("--artifact-location", help="Where its runs' artifacts go.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create an experiment (the name must be unused, even by a deleted one)."""
    with _tracking() as svc:
        exp = svc.create_experiment(
            name,
            artifact_location=artifact_location,
            tags=_tags(tag or []),
            description=description,
        )
    if json_out:
        print_json(exp)
    else:
        console.print(f"Created experiment [bold]{exp.name}[/bold] (id {exp.experiment_id}).")


@experiments_app.command("delete")
def experiments_delete(
    experiment: Annotated[str, typer.Argument(help="Experiment name or id.")],
) -> None:
    """Delete an experiment and so hide its runs (restorable)."""
    with _tracking() as svc:
        exp = resolve_experiment(svc, experiment)
        svc.delete_experiment(exp.experiment_id)
    console.print(
        f"Deleted experiment [bold]{exp.name}[/bold] (id {exp.experiment_id}); "
        f"`strata experiments restore {exp.experiment_id}` brings it back."
    )


@experiments_app.command("restore")
def experiments_restore(
    experiment: Annotated[str, typer.Argument(help="Experiment name or id.")],
) -> None:
    """Restore a deleted experiment."""
    with _tracking() as svc:
        exp = resolve_experiment(svc, experiment)
        svc.restore_experiment(exp.experiment_id)
    console.print(f"Restored experiment [bold]{exp.name}[/bold] (id {exp.experiment_id}).")


# -- runs ------------------------------------------------------------------------------------
def _run_json(run: Run) -> dict[str, Any]:
    info = run.info
    return {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "status": info.status.value,
        "lifecycle_stage": info.lifecycle_stage.value,
        "user_id": info.user_id,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "parent_run_id": info.parent_run_id,
        "artifact_uri": info.artifact_uri,
        "params": run.params,
        "metrics": run.metrics,
        "tags": run.tags,
    }


def _experiment_ids(svc: TrackingService, experiments: list[str]) -> list[str]:
    if experiments:
        return [resolve_experiment(svc, e).experiment_id for e in experiments]
    return [e.experiment_id for e in svc.search_experiments(max_results=50_000).items]


ExperimentOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--experiment", "-e", help="Experiment name or id; repeat for several (default: all)."
    ),
]
FilterOpt = Annotated[
    str | None,
    typer.Option(
        "--filter", help="e.g. \"metrics.auc > 0.8 and params.model = 'lgbm'\" (MLflow grammar)."
    ),
]
OrderOpt = Annotated[
    list[str] | None,
    typer.Option("--order-by", help="e.g. 'metrics.auc DESC'; repeat for several keys."),
]


_RUN_COLUMNS: dict[str, Callable[[Run], Any]] = {
    "run_id": lambda r: r.info.run_id,
    "name": lambda r: r.info.run_name,
    "status": lambda r: r.info.status.value,
    "started": lambda r: _time(r.info.start_time)[:16],
    "ended": lambda r: _time(r.info.end_time)[:16],
    "duration": lambda r: _duration(r.info.start_time, r.info.end_time),
    "user": lambda r: r.info.user_id,
    "experiment": lambda r: r.info.experiment_id,
    "parent": lambda r: r.info.parent_run_id,
    "stage": lambda r: r.info.lifecycle_stage.value,
}
_DEFAULT_COLUMNS = "run_id,name,status,started"
_CELL_WIDTH = 24  # longer values are shortened in tables; --json has them whole


def _duration(start: int | None, end: int | None) -> str:
    if start is None or end is None:
        return ""
    seconds = (end - start) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _keys(values: list[str] | None) -> list[str]:
    """``--params a,b --params c`` → ``[a, b, c]``."""
    return [k.strip() for v in values or [] for k in v.split(",") if k.strip()]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return shorten(str(value), _CELL_WIDTH)


def _runs_table(
    runs: list[Run],
    title: str,
    columns: str = _DEFAULT_COLUMNS,
    params: list[str] | None = None,
    metrics: list[str] | None = None,
) -> None:
    """Runs as a compact table that fits 80 columns by default: a few attribute columns,
    then the params and metrics asked for. Ids are never cut; other values are shortened."""
    from rich import box
    from rich.table import Table

    attrs = _keys([columns])
    unknown = [c for c in attrs if c not in _RUN_COLUMNS]
    if unknown:
        raise InvalidInput(
            f"Unknown column {unknown[0]!r} in --columns; choose from {', '.join(_RUN_COLUMNS)}"
            " (params and metrics go in --params and --metrics)",
            details={"field": "columns"},
        )
    param_keys, metric_keys = _keys(params), _keys(metrics)
    if not runs:
        console.print(f"[dim]No {title.lower()} found.[/dim]")
        return
    headers = attrs + [shorten(k, _CELL_WIDTH) for k in param_keys + metric_keys]
    rows = []
    for r in runs:
        cells = [str(_RUN_COLUMNS[c](r) or "") for c in attrs]
        cells += [_cell(r.params.get(k)) for k in param_keys]
        cells += [_cell(r.metrics.get(k)) for k in metric_keys]
        rows.append(cells)
    squeezable = [c == "name" for c in attrs] + [True] * len(param_keys)
    squeezable += [False] * len(metric_keys)
    widths = _fit(headers, rows, squeezable, console.width)
    table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for i, header in enumerate(headers):
        table.add_column(
            shorten(header, widths[i]),
            width=widths[i],
            no_wrap=True,
            justify="right" if i >= len(attrs) + len(param_keys) else "left",
        )
    for row in rows:
        table.add_row(*(shorten(cell, widths[i]) for i, cell in enumerate(row)))
    # More columns than the terminal holds: print wider rather than crop a column away.
    needed = console.measure(table, options=console.options.update_width(100_000)).maximum
    if needed > console.width:
        from rich.console import Console

        Console(file=console.file, width=needed).print(table)
    else:
        console.print(table)
    hints = []
    for what, have, shown in (
        ("params", {k for r in runs for k in r.params}, param_keys),
        ("metrics", {k for r in runs for k in r.metrics}, metric_keys),
    ):
        rest = sorted(have - set(shown))
        if rest:
            listed = shorten(", ".join(rest), 50)
            hints.append(f"{what}: {listed} (--{what} KEY,...)")
    if hints:
        console.print(f"[dim]{'; '.join(hints)}; --json shows everything.[/dim]", highlight=False)


def _fit(
    headers: list[str], rows: list[list[str]], squeezable: list[bool], width: int
) -> list[int]:
    """Column widths for a table of at most ``width`` characters, if it can be done by
    narrowing the squeezable columns (names, params) down to 8 characters, widest first.
    Ids, times and numbers keep their width: an id must stay copyable."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    overhead = 3 * len(widths)  # padding and the space between columns
    while sum(widths) + overhead > width:
        candidates = [i for i, ok in enumerate(squeezable) if ok and widths[i] > 8]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] = max(8, widths[widest] - (sum(widths) + overhead - width))
    return widths


ColumnsOpt = Annotated[
    str,
    typer.Option(
        "--columns", help=f"Run attributes to show, comma-separated: {', '.join(_RUN_COLUMNS)}."
    ),
]
ParamsOpt = Annotated[
    list[str] | None,
    typer.Option("--params", help="Param keys to add as columns, comma-separated (repeatable)."),
]
MetricsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--metrics", help="Metric keys to add as columns (latest values), comma-separated."
    ),
]


@runs_app.command("list")
def runs_list(
    experiment: ExperimentOpt = None,
    filter: FilterOpt = None,
    order_by: OrderOpt = None,
    view: ViewOpt = "active",
    max_results: Annotated[int, typer.Option("--max-results", help="At most this many.")] = 100,
    columns: ColumnsOpt = _DEFAULT_COLUMNS,
    params: ParamsOpt = None,
    metrics: MetricsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List runs (newest first unless --order-by): a few columns by default, then the
    params and metrics named by --params and --metrics. --json prints every field."""
    with _tracking() as svc:
        ids = _experiment_ids(svc, experiment or [])
        runs = svc.search_runs(
            ids, filter, view=_view(view), max_results=max_results, order_by=order_by
        ).items
    if json_out:
        print_json([_run_json(r) for r in runs])
        return
    _runs_table(runs, "Runs", columns, params, metrics)


@runs_app.command("history")
def runs_history(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    key: Annotated[str, typer.Argument(help="Metric key.")],
    width: Annotated[int, typer.Option("--width", help="Chart width in characters.")] = 60,
    height: Annotated[int, typer.Option("--height", help="Chart height in lines.")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """A metric's history: a small text chart of value by step, with its summary.

    In --json, every point (step, value, timestamp in epoch ms), ordered by step.
    """
    with _tracking() as svc:
        points = svc.get_metric_history(run_id, key)
        if not points:
            run = svc.get_run(run_id)  # NotFound for an unknown run
            known = ", ".join(sorted(run.metrics)) or "none"
            raise NotFound(
                f"Run {run_id} has no metric {key!r}; its metrics: {known}",
                details={"run_id": run_id, "key": key},
            )
    if json_out:
        print_json([{"step": p.step, "value": p.value, "timestamp": p.timestamp} for p in points])
        return
    finite = [p for p in points if math.isfinite(p.value)]
    lines = line_chart(
        [p.step for p in points], [p.value for p in points], width=width, height=height
    )
    console.print(f"[bold]{key}[/bold] of run {run_id}", highlight=False)
    console.print("\n".join(lines), highlight=False, markup=False)
    summary = f"{len(points):,} points, steps {points[0].step}..{points[-1].step}"
    if finite:
        low = min(finite, key=lambda p: p.value)
        high = max(finite, key=lambda p: p.value)
        summary += (
            f"; last {points[-1].value:.6g}; min {low.value:.6g} (step {low.step}); "
            f"max {high.value:.6g} (step {high.step})"
        )
    if len(finite) < len(points):
        summary += f"; {len(points) - len(finite):,} NaN/inf not drawn"
    console.print(summary, highlight=False)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    json_out: JsonOpt = False,
) -> None:
    """Show one run: info, params, latest metrics, tags and inputs."""
    with _tracking() as svc:
        run = svc.get_run(run_id)
    if json_out:
        print_json(_run_json(run) | {"inputs": run.inputs})
        return
    info = run.info
    console.print(f"[bold]Run {info.run_name}[/bold] ({info.run_id})", highlight=False)
    fields = {
        "experiment": info.experiment_id,
        "status": info.status.value,
        "lifecycle": info.lifecycle_stage.value,
        "user": info.user_id,
        "started": _time(info.start_time),
        "ended": _time(info.end_time),
        "parent run": info.parent_run_id or "",
        "artifacts": info.artifact_uri,
    }
    for key, value in fields.items():
        console.print(f"  {key:<11} {value}", highlight=False)
    for title, mapping in (("Params", run.params), ("Metrics", run.metrics), ("Tags", run.tags)):
        print_table(
            ({"key": k, "value": v} for k, v in sorted(mapping.items())),
            ["key", "value"],
            title=title,
        )
    if run.inputs:
        print_table(
            (d.model_dump() for d in run.inputs),
            ["name", "digest", "context", "source"],
            title="Inputs",
        )


@runs_app.command("compare")
def runs_compare(
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Runs to compare, in this order (default: --experiment's runs)."),
    ] = None,
    experiment: ExperimentOpt = None,
    filter: FilterOpt = None,
    order_by: OrderOpt = None,
    max_results: Annotated[int, typer.Option("--max-results", help="At most this many.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Compare runs side by side: one row per run, params and latest metrics as columns.

    In --json, start_time is epoch ms and a value the run lacks (or a NaN metric) is null.
    """
    with _tracking() as svc:
        if run_ids:
            frame = svc.compare_runs(experiment or None, filter, run_ids=run_ids, order_by=order_by)
        else:
            ids = _experiment_ids(svc, experiment or [])
            frame = svc.compare_runs(ids, filter, order_by=order_by, max_results=max_results)
    rows: list[dict[str, Any]] = []
    for record in frame.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for key, value in record.items():
            if key == "start_time":
                value = int(value.value // 1_000_000)
            elif isinstance(value, float) and math.isnan(value):
                value = None  # the run lacks this param/metric (or the metric is NaN)
            row[str(key)] = value
        rows.append(row)
    if json_out:
        print_json(rows)
        return
    for row in rows:
        row["start_time"] = _time(row.get("start_time"))
    columns = [str(c) for c in frame.columns if c != "experiment_id"]
    _grid(rows, columns, "Run comparison")


@runs_app.command("delete")
def runs_delete(run_id: Annotated[str, typer.Argument(help="Run id.")]) -> None:
    """Delete a run (restorable)."""
    with _tracking() as svc:
        svc.delete_run(run_id)
    console.print(f"Deleted run {run_id}; `strata runs restore {run_id}` brings it back.")


@runs_app.command("restore")
def runs_restore(run_id: Annotated[str, typer.Argument(help="Run id.")]) -> None:
    """Restore a deleted run."""
    with _tracking() as svc:
        svc.restore_run(run_id)
    console.print(f"Restored run {run_id}.")


@runs_app.command("download-artifacts")
def runs_download_artifacts(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    path: Annotated[
        str, typer.Option("--path", help="File or directory in the run (default: all).")
    ] = "",
    dst: Annotated[
        Path | None,
        typer.Option(
            "--dst",
            help="Directory to download into (default: a new folder here named after the run).",
        ),
    ] = None,
) -> None:
    """Download a run's artifacts (digests verified) and print where they are.

    By default into a new folder in the current directory named RUN_NAME-XXXXXXXX (the
    run's name and the end of its id); it appears only once everything has arrived.
    """
    import shutil
    import tempfile

    with _tracking() as svc, console.status(f"Downloading artifacts of run {run_id}..."):
        if dst is not None:
            local = svc.download_artifacts(run_id, path, dst)
        else:
            run = svc.get_run(run_id)
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", run.info.run_name or "run").strip("._")
            folder = Path.cwd() / f"{name or 'run'}-{run.info.run_id[-8:]}"
            if folder.exists():
                raise Conflict(
                    f"{folder} exists already; remove it or choose a directory with --dst",
                    details={"field": "dst", "path": str(folder)},
                )
            staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=Path.cwd()))
            try:
                got = svc.download_artifacts(run_id, path, staging)
                staging.rename(folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            local = folder / got.relative_to(staging)
    typer.echo(str(local))
