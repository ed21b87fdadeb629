"""CLI: ``strata monitor ...`` (drift, report, profile, series...), built on ``strata.Client()``
(remote when STRATA_URI is set). Every list and show command takes ``--json``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strata.core.console import console, print_json, print_table

if TYPE_CHECKING:
    from strata.client import Client
    from strata.monitoring.models import DriftReport

monitor_app = typer.Typer(
    help="Monitor models: drift, prediction logs, feedback and performance, health, alerts.",
    no_args_is_help=True,
)
profile_app = typer.Typer(help="Stored references (mergeable sketches).", no_args_is_help=True)
monitor_app.add_typer(profile_app, name="profile")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
RefHelp = (
    "A dataset version (flights@3, flights@latest), a prediction-log window "
    "(log:flights@production?since=2013-07-01&until=2013-07-08) or profile:NAME."
)


def _client() -> Client:
    from strata.client import Client

    return Client()


def _drift_fields(
    columns: list[str] | None,
    method: str | None,
    threshold: float | None,
    drift_share: float,
    psi_bins: str | None,
    categorical: list[str] | None,
    numeric: list[str] | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {"drift_share": drift_share}
    if columns:
        fields["columns"] = [c for part in columns for c in part.split(",") if c]
    if method:
        fields["method"] = method
    if threshold is not None:
        fields["threshold"] = threshold
    if psi_bins:
        fields["bins"] = psi_bins
    types = {c: "categorical" for c in categorical or []} | {c: "numeric" for c in numeric or []}
    if types:
        fields["column_types"] = types
    return fields


def _print_drift(report: DriftReport) -> None:
    if report.status == "no data":
        console.print(
            f"[yellow]no data[/yellow]: reference {report.reference_rows:,} rows, current "
            f"{report.current_rows:,} rows; nothing was tested"
        )
        return
    rows = [
        {
            "column": name,
            "type": c.kind,
            "method": c.method.value,
            "score": c.score,
            "threshold": c.threshold,
            "drifted": "DRIFT" if c.drifted else ("no data" if c.status == "no data" else "-"),
        }
        for name, c in report.columns.items()
    ]
    print_table(rows, ["column", "type", "method", "score", "threshold", "drifted"], "Drift")
    for side, cols in report.missing.items():
        console.print(f"[yellow]missing in {side}[/yellow]: {', '.join(cols)}")
    verdict = "[red]dataset drift[/red]" if report.dataset_drift else "no dataset drift"
    console.print(
        f"{verdict}: {report.drifted_count} of {len(report.columns)} columns drifted "
        f"(share {report.drifted_share:.3f}, threshold {report.drift_share_threshold:g}); "
        f"{report.reference_rows:,} vs {report.current_rows:,} rows in {report.duration_s:.2f} s"
    )


@monitor_app.command("drift")
def drift(
    reference: Annotated[str, typer.Option("--reference", "-r", help=RefHelp)],
    current: Annotated[str, typer.Option("--current", "-c", help=RefHelp)],
    columns: Annotated[
        list[str] | None, typer.Option("--columns", help="Columns to test (repeat or a,b,c).")
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="One test for every column: auto (Evidently's defaults), wasserstein, "
            "jensenshannon, ks, chisquare, z or psi."
        ),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="The method's threshold (default: Evidently's).")
    ] = None,
    psi_bins: Annotated[
        str | None, typer.Option(help="PSI bins: sturges (Evidently's) or quantile.")
    ] = None,
    drift_share: Annotated[
        float, typer.Option(help="Share of drifted columns from which the dataset drifts.")
    ] = 0.5,
    categorical: Annotated[
        list[str] | None, typer.Option("--categorical", help="Read this column as categorical.")
    ] = None,
    numeric: Annotated[
        list[str] | None, typer.Option("--numeric", help="Read this column as numeric.")
    ] = None,
    store_as: Annotated[
        str | None, typer.Option(help="Record the result in this model's drift series.")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the HTML report to this file.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare CURRENT with REFERENCE column by column (Evidently's default tests)."""
    from strata.core.parse import parse_options
    from strata.monitoring.html import render_drift
    from strata.monitoring.models import DriftOptions

    fields = _drift_fields(columns, method, threshold, drift_share, psi_bins, categorical, numeric)
    if store_as:
        fields["store_as"] = store_as
    options = parse_options(DriftOptions, None, **fields)
    with console.status("Sketching and testing columns..."), _client() as client:
        report = client.monitoring.drift(reference, current, options)
    if html is not None:
        html.write_text(render_drift(report), encoding="utf-8")
    if as_json:
        print_json(report.summary())
        return
    _print_drift(report)
    if html is not None:
        console.print(f"HTML report: {html}")


@monitor_app.command("report")
def report(
    reference: Annotated[str, typer.Option("--reference", "-r", help=RefHelp)],
    current: Annotated[str, typer.Option("--current", "-c", help=RefHelp)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "drift-report.html"
    ),
) -> None:
    """Write the self-contained HTML drift report (distribution overlay per column)."""
    from strata.monitoring.html import render_drift

    with console.status("Sketching and testing columns..."), _client() as client:
        result = client.monitoring.drift(reference, current)
    out.write_text(render_drift(result), encoding="utf-8")
    console.print(f"Wrote {out} ({result.drifted_count} of {len(result.columns)} drifted)")


@profile_app.command("save")
def profile_save(
    name: Annotated[str, typer.Argument(help="The profile's name (profile:NAME in a REF).")],
    ref: Annotated[str, typer.Argument(help="A dataset version or prediction-log window.")],
    as_json: JsonOpt = False,
) -> None:
    """Sketch REF and store it as a reference for later drift runs."""
    with console.status("Sketching..."), _client() as client:
        saved = client.monitoring.save_profile(name, ref)
    if as_json:
        print_json(saved)
        return
    console.print(f"Saved profile:{saved.name} from {saved.source} ({saved.rows:,} rows)")


@profile_app.command("list")
def profile_list(as_json: JsonOpt = False) -> None:
    """Stored profiles."""
    with _client() as client:
        items = client.monitoring.list_profiles()
    if as_json:
        print_json(items)
        return
    rows = [
        {
            "name": p.name,
            "source": p.source,
            "rows": p.rows,
            "columns": len(p.columns),
            "created": p.created_at,
        }
        for p in items
    ]
    print_table(rows, ["name", "source", "rows", "columns", "created"], "Profiles")


@monitor_app.command("series")
def series(
    model: Annotated[str, typer.Argument(help="The model whose series to show.")],
    name: Annotated[
        str | None, typer.Argument(help="One series (e.g. drift.share); all names if omitted.")
    ] = None,
    limit: Annotated[int, typer.Option(help="The latest points to show.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """A model's monitored series: their names, or one series' points."""
    with _client() as client:
        if name is None:
            names = client.monitoring.list_series(model)
            if as_json:
                print_json(names)
            else:
                print_table([{"series": n} for n in names], ["series"], "Series")
            return
        points = client.monitoring.get_series(model, name, limit=limit)
    if as_json:
        print_json([p.model_dump(mode="json", exclude={"labels"}) for p in points])
        return
    print_table(
        [{"time": p.ts, "value": p.value} for p in points], ["time", "value"], f"{model} {name}"
    )


log_app = typer.Typer(
    help="Query, export and configure a model's prediction log.", no_args_is_help=True
)
monitor_app.add_typer(log_app, name="log")
ModelArg = Annotated[str, typer.Argument(help="The model (endpoint) whose log to read.")]
VersionOpt = Annotated[
    str | None, typer.Option("--version", help="A registry version number or an alias.")
]
SinceOpt = Annotated[str | None, typer.Option(help="From this ISO 8601 time (UTC by default).")]
UntilOpt = Annotated[str | None, typer.Option(help="Until this ISO 8601 time (exclusive).")]
RequestOpt = Annotated[str | None, typer.Option("--request-id", help="One request's rows.")]
EntityOpt = Annotated[str | None, typer.Option("--entity-key", help="One entity's rows.")]


def _log_fields(
    model: str, version: str | None, since: str | None, until: str | None,
    request_id: str | None, entity_key: str | None,
) -> dict[str, Any]:  # fmt: skip
    from strata.monitoring.refs import parse_time

    fields: dict[str, Any] = {"model": model}
    if version:
        fields["version"] = version
    if since:
        fields["since"] = parse_time(since, "since")
    if until:
        fields["until"] = parse_time(until, "until")
    if request_id:
        fields["request_id"] = request_id
    if entity_key:
        fields["entity_key"] = entity_key
    return fields


@log_app.command("query")
def log_query(
    model: ModelArg,
    version: VersionOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    request_id: RequestOpt = None,
    entity_key: EntityOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (newest first).")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Rows of the prediction log, newest first."""
    fields = _log_fields(model, version, since, until, request_id, entity_key)
    with _client() as client:
        result = client.monitoring.query_log(limit=limit, **fields)
    if as_json:
        print_json(result)
        return
    rows = [
        {
            "time": r["ts"],
            "request": r["request_id"],
            "row": r["row"],
            "version": r["version"],
            "path": r["path"],
            "entity": r["entity_key"],
            "prediction": r.outputs.get("prediction"),
            "latency ms": r["latency_ms"],
        }
        for r in result.rows
    ]
    cols = ["time", "request", "row", "version", "path", "entity", "prediction", "latency ms"]
    print_table(rows, cols, "Predictions")
    if result.truncated:
        console.print(f"[dim]more rows match; raise --limit (shown {len(result.rows)})[/dim]")


@log_app.command("stats")
def log_stats(
    model: ModelArg,
    version: VersionOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rows, requests, versions, paths and latency percentiles of a window."""
    fields = _log_fields(model, version, since, until, None, None)
    with _client() as client:
        stats = client.monitoring.log_stats(**fields)
    if as_json:
        print_json(stats)
        return
    console.print(
        f"{stats.rows:,} rows in {stats.requests:,} requests ({stats.first} → {stats.last})"
    )
    console.print(f"by version: {stats.by_version}; by path: {stats.by_path}")
    if stats.latency_ms:
        console.print(
            "latency ms: " + ", ".join(f"{k} {v:.2f}" for k, v in stats.latency_ms.items())
        )


@log_app.command("export")
def log_export(
    model: ModelArg,
    out: Annotated[Path, typer.Argument(help="The file to write.")],
    format: Annotated[str, typer.Option(help="parquet, csv or jsonl.")] = "parquet",
    version: VersionOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    request_id: RequestOpt = None,
    entity_key: EntityOpt = None,
) -> None:
    """Write every selected row to OUT (oldest first)."""
    fields = _log_fields(model, version, since, until, request_id, entity_key)
    with console.status("Exporting..."), _client() as client:
        rows = client.monitoring.export_log(out, format=format, **fields)  # type: ignore[arg-type]
    console.print(f"Wrote {rows:,} rows to {out}")


@log_app.command("settings")
def log_settings(
    model: ModelArg,
    sample_rate: Annotated[
        float | None, typer.Option(help="Share of requests to log, 0 to 1.")
    ] = None,
    retention_days: Annotated[int | None, typer.Option(help="Days of partitions to keep.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show, or change with the options, the endpoint's sampling and retention."""
    with _client() as client:
        if sample_rate is None and retention_days is None:
            settings = client.monitoring.get_log_settings(model)
        else:
            settings = client.monitoring.set_log_settings(
                model, sample_rate=sample_rate, retention_days=retention_days
            )
    if as_json:
        print_json(settings)
        return
    console.print(
        f"{model}: sample rate {settings.sample_rate:g}, retention {settings.retention_days} days"
    )


@log_app.command("retention")
def log_retention(model: ModelArg, as_json: JsonOpt = False) -> None:
    """Delete the log partitions older than the endpoint's retention."""
    with _client() as client:
        result = client.monitoring.apply_retention(model)
    if as_json:
        print_json(result)
        return
    console.print(
        f"Deleted {len(result.deleted_partitions)} partitions of {model}; "
        f"{result.kept_partitions} kept"
    )


@monitor_app.command("feedback")
def feedback_cmd(
    model: Annotated[str, typer.Argument(help="The model the labels are for.")],
    labels: Annotated[
        Path,
        typer.Argument(
            help="A CSV, JSON-lines or Parquet file with columns request_id (+ row) and label, "
            "or entity_key, ts and label."
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Send ground-truth labels; unknown request ids and entities are counted and listed."""
    import duckdb

    from strata.core.errors import InvalidInput
    from strata.monitoring.feedback import MAX_ITEMS

    if not labels.is_file():
        raise InvalidInput(f"no such file: {labels}", details={"field": "labels"})
    reader = {".parquet": "read_parquet", ".jsonl": "read_json_auto", ".json": "read_json_auto"}
    fn = reader.get(labels.suffix.lower(), "read_csv_auto")
    con = duckdb.connect()
    table = con.sql(f"SELECT * FROM {fn}(?)", params=[str(labels)]).to_arrow_table()
    con.close()
    wanted = [
        c for c in ("request_id", "row", "entity_key", "ts", "label") if c in table.column_names
    ]
    if "label" not in wanted:
        raise InvalidInput(
            f"{labels} has no label column; columns: {', '.join(table.column_names)}",
            details={"field": "label"},
        )
    items = table.select(wanted).to_pylist()
    received = matched = unknown = 0
    unknown_ids: list[str] = []
    with console.status("Sending labels..."), _client() as client:
        for start in range(0, len(items), MAX_ITEMS):
            part = [
                {k: v for k, v in i.items() if v is not None}
                for i in items[start : start + MAX_ITEMS]
            ]
            result = client.monitoring.feedback(model, part)
            received += result.received
            matched += result.matched
            unknown += result.unknown
            unknown_ids += result.unknown_request_ids + result.unknown_entity_keys
    if as_json:
        print_json({"model": model, "received": received, "matched": matched, "unknown": unknown,
                    "unknown_examples": unknown_ids[:100]})  # fmt: skip
        return
    console.print(f"{received:,} labels stored for {model}: {matched:,} matched predictions")
    if unknown:
        console.print(
            f"[yellow]{unknown:,} match no logged prediction yet[/yellow] (kept; they match "
            f"once the prediction is logged), e.g. {', '.join(unknown_ids[:5])}"
        )


@monitor_app.command("performance")
def performance_cmd(
    model: Annotated[str, typer.Argument(help="The model.")],
    window: Annotated[str, typer.Option(help="Window length: 30m, 1h, 1d, 7d, 2w...")] = "1d",
    since: SinceOpt = None,
    until: UntilOpt = None,
    version: VersionOpt = None,
    segment: Annotated[str | None, typer.Option(help="An input column to segment by.")] = None,
    task: Annotated[str, typer.Option(help="auto, classification or regression.")] = "auto",
    store: Annotated[bool, typer.Option("--store", help="Record the metrics as series.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Performance per window with confidence intervals, feedback coverage and CBPE estimates."""
    fields = _log_fields(model, version, since, until, None, None)
    fields.update(window=window, task=task, store=store)
    if segment:
        fields["segment"] = segment
    with console.status("Joining labels to predictions..."), _client() as client:
        report = client.monitoring.performance(**fields)
    if as_json:
        print_json(report)
        return
    if report.status == "no data":
        console.print(f"[yellow]no data[/yellow]: {model} has no logged predictions in the window")
        return
    names = (
        ["accuracy", "f1", "roc_auc"]
        if report.task == "classification"
        else ["mae", "rmse", "mape"]
    )
    rows = []
    for w in report.windows:
        row: dict[str, Any] = {
            "window": w.start, "version": w.version, "segment": w.segment,
            "labelled": f"{w.labelled:,}/{w.predictions:,}", "coverage": f"{w.coverage:.0%}",
        }  # fmt: skip
        for name in names:
            m = w.metrics.get(name)
            row[name] = "" if m is None else (
                f"{m.value:.3f}" + ("" if m.low is None else f" [{m.low:.3f}, {m.high:.3f}]")
            )  # fmt: skip
        if "accuracy" in w.estimated:
            row["est. accuracy"] = f"{w.estimated['accuracy']:.3f}"
        rows.append(row)
    cols = ["window", "version", "segment", "labelled", "coverage", *names, "est. accuracy"]
    print_table(rows, cols, f"{model} performance ({report.task}, {report.confidence:.0%} CI)")


def _register() -> None:
    from strata.monitoring.cli_alerts import alerts_app
    from strata.monitoring.cli_health import grafana, health

    monitor_app.add_typer(alerts_app, name="alerts")
    monitor_app.command("health")(health)
    monitor_app.command("grafana")(grafana)


_register()
