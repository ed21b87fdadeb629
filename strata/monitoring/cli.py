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
