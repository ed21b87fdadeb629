"""CLI: ``strata features plan|apply|list|show|stats|search|materialize|push|push-stream|
get-online|get-historical`` (embedded, or remote when ``STRATA_URI`` is set).

``--json`` prints exactly one JSON object on stdout; spinners go to stderr. Exit codes: 0 ok,
2 bad input (printed as ``Error: ...`` by the ``strata`` entry point).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strata.core.console import console, count, err_console, print_json, print_table
from strata.core.errors import InvalidInput

if TYPE_CHECKING:  # imported when a command runs, so `strata --help` starts fast
    from strata.features.models import Plan
    from strata.features.service import FeaturesService

features_app = typer.Typer(
    help="Feature store: definitions, point-in-time training sets, online values.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
KINDS = {
    "entities": "entity",
    "views": "feature view",
    "on-demand": "on-demand view",
    "services": "feature service",
}


@contextmanager
def _features() -> Iterator[FeaturesService]:
    from strata.client import Client

    with Client() as client:
        yield client.features


def _when(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 time; one without an offset is read as UTC (said in the help)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"--{field} must be a time like 2013-06-01T00:00:00Z, got {value!r}",
            details={"field": field},
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _show_plan(result: Plan, title: str) -> None:
    shown = [c for c in result.changes if c.action != "unchanged"]
    if not shown:
        console.print("No changes: the registry matches the definitions.")
        return
    print_table(
        (
            {
                "action": c.action + (" (breaking)" if c.breaking else ""),
                "kind": c.kind.replace("_", " "),
                "name": c.name,
                "what": "; ".join(c.diffs),
            }
            for c in shown
        ),
        ["action", "kind", "name", "what"],
        title=title,
    )


@features_app.command("plan")
def plan(
    path: Annotated[Path, typer.Argument(help="Definitions file (YAML or JSON).")],
    json_out: JsonOpt = False,
) -> None:
    """Show what `apply PATH` would add, change and remove (changes nothing)."""
    with _features() as fs:
        result = fs.plan(path.read_text() if path.exists() else path)
    if json_out:
        print_json(result)
        return
    _show_plan(result, f"Plan for {path}")


@features_app.command("apply")
def apply(
    path: Annotated[Path, typer.Argument(help="Definitions file (YAML or JSON).")],
    force: Annotated[
        bool, typer.Option("--force", help="Apply breaking changes (types, keys, removals).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Register the definitions in PATH as the whole feature repository."""
    with _features() as fs, err_console.status("Checking sources and applying...", spinner="dots"):
        result = fs.apply(path.read_text() if path.exists() else path, force=force)
    if json_out:
        print_json(result)
        return
    _show_plan(result, f"Applied {path}")


@features_app.command("list")
def list_cmd(
    kind: Annotated[str, typer.Argument(help="views | on-demand | entities | services")] = "views",
    json_out: JsonOpt = False,
) -> None:
    """List registered feature views (default), on-demand views, entities or services."""
    if kind not in KINDS:
        raise InvalidInput(
            f"Unknown kind {kind!r}; expected one of: {', '.join(KINDS)}", details={"field": "kind"}
        )
    with _features() as fs:
        items = {
            "views": fs.list_feature_views,
            "on-demand": fs.list_on_demand_views,
            "entities": fs.list_entities,
            "services": fs.list_feature_services,
        }[kind]()
    if json_out:
        print_json({"items": items})
        return
    if not items:
        console.print(f"No {KINDS[kind]}s registered; register some with `strata features apply`.")
        return

    def summary(spec: dict[str, Any]) -> str:
        if kind == "views":
            feats = ", ".join(f["name"] for f in spec["features"])
            return f"{spec['source']} · ttl {spec.get('ttl') or '-'} · {feats}"
        if kind == "on-demand":
            inputs = [*spec.get("request", {}), *spec.get("sources", [])]
            how = spec.get("python") or "sql"
            return f"{how} · inputs {', '.join(inputs)} · " + ", ".join(
                f["name"] for f in spec["features"]
            )
        if kind == "entities":
            return ", ".join(spec["join_keys"])
        return ", ".join(spec["features"])

    print_table(
        (
            {"name": r.name, "version": r.version, "what": summary(r.spec), "updated": r.updated_at}
            for r in items
        ),
        ["name", "version", "what", "updated"],
        title=f"{KINDS[kind].capitalize()}s",
    )


@features_app.command("show")
def show(
    name: Annotated[
        str, typer.Argument(help="A feature view, on-demand view, entity or feature service.")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Show one definition (looked up as a view, an on-demand view, an entity, a service)."""
    from strata.core.errors import NotFound

    with _features() as fs:
        found: Any = None
        for getter in (
            fs.get_feature_view,
            fs.get_on_demand_view,
            fs.get_entity,
            fs.get_feature_service,
        ):
            try:
                found = getter(name)
                break
            except NotFound:
                continue
        if found is None:
            fs.get_feature_view(name)  # raises NotFound naming close names
    if json_out:
        print_json(found)
        return
    console.print_json(json.dumps(found.model_dump(mode="json")))


@features_app.command("stats")
def stats(
    view: Annotated[str, typer.Argument(help="A feature view.")],
    json_out: JsonOpt = False,
) -> None:
    """Statistics of a view's columns: the data layer's profile of its source version."""
    with _features() as fs:
        found = fs.get_feature_statistics(view)
    if json_out:
        print_json(found)
        return

    def fmt(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    print_table(
        (
            {
                "column": c["name"],
                "type": c["type"],
                "nulls": f"{c['null_fraction']:.1%}",
                "distinct": fmt(c.get("distinct")),
                "min": fmt(c.get("min")),
                "mean": fmt(c.get("mean")),
                "max": fmt(c.get("max")),
            }
            for c in found.columns
        ),
        ["column", "type", "nulls", "distinct", "min", "mean", "max"],
        title=f"{found.view}: {found.rows:,} rows of {found.source_version}",
    )


@features_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="Text in a feature's name or description.")] = "",
    entity: Annotated[str | None, typer.Option(help="Only features of this entity.")] = None,
    tag: Annotated[
        str | None, typer.Option(help="Only views with this tag (key or key=value).")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Only views of this owner.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Search the feature catalog."""
    with _features() as fs:
        found = fs.search_features(query, entity=entity, tag=tag, owner=owner)
    if json_out:
        print_json({"items": found})
        return
    print_table(found, ["ref", "dtype", "entities", "owner", "description"], title="Features")


@features_app.command("materialize")
def materialize(
    end: Annotated[
        str | None,
        typer.Option(help="Up to this time (ISO 8601; no offset means UTC). Default: now."),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="From this time (default: all history).")
    ] = None,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="From where the last materialization ended.")
    ] = False,
    view: Annotated[
        list[str] | None, typer.Option("--view", help="Only this view (repeatable).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the latest values per entity into the online store."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    end_at = _when(end, "end") or datetime.now(UTC)
    if incremental and start is not None:
        raise InvalidInput("--incremental starts where the last run ended: drop --start")
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.completed:,.0f} entities"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=json_out,
    )
    tasks: dict[str, Any] = {}

    def shown(name: str, rows: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(f"materialize {name}", total=None, rate="")
        task = bar.tasks[tasks[name]]
        elapsed = task.elapsed or 0.0
        rate = f"{rows / elapsed:,.0f} entities/s" if elapsed > 0 else ""
        bar.update(tasks[name], completed=rows, rate=rate)

    with _features() as fs, bar:
        if incremental:
            done = fs.materialize_incremental(end_at, view or None, progress=shown)
        else:
            done = fs.materialize(_when(start, "start"), end_at, view or None, progress=shown)
    if json_out:
        print_json({"items": done})
        return
    for r in done:
        console.print(
            f"{r.view}: {count(r.rows, 'entity', 'entities')} from {r.source_version} "
            f"in {r.seconds:.2f} s"
        )


@features_app.command("push")
def push(
    view: Annotated[str, typer.Argument(help="The feature view to write to.")],
    rows: Annotated[
        Path, typer.Argument(help="A JSON file of rows (a list of objects), or - for stdin.")
    ],
) -> None:
    """Write fresh feature rows to the online store."""
    text = sys.stdin.read() if str(rows) == "-" else rows.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"The rows are not valid JSON: {exc}", details={"field": "rows"}
        ) from None
    with _features() as fs:
        written = fs.push(view, data)
    console.print(f"Wrote {count(written, 'row')} to {view}.")


@features_app.command("push-stream")
def push_stream(
    view: Annotated[str, typer.Argument(help="The feature view to write to.")],
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="kafka://HOST:PORT/TOPIC or redis://HOST:PORT/DB?stream=NAME; each record "
            "a JSON object like a push row.",
        ),
    ],
    group: Annotated[
        str | None, typer.Option(help="Consumer group (default strata-features-VIEW).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Records per micro-batch.")] = 1000,
    max_records: Annotated[
        int | None, typer.Option(help="Stop after this many records (default: never).")
    ] = None,
    idle_seconds: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds without a record (default: never)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Push a Kafka topic or Redis stream into the online store until stopped (Ctrl-C),
    committing positions after each written batch; bad records are counted and skipped."""
    from rich.live import Live
    from rich.text import Text

    started = time.monotonic()

    def line(result: Any) -> Text:
        rate = result.records / max(time.monotonic() - started, 1e-9)
        return Text(
            f"{view}: {result.records:,} records, {result.pushed:,} pushed, "
            f"{result.rejected:,} rejected ({rate:,.0f}/s)"
        )

    with (
        _features() as fs,
        Live(Text(f"{view}: waiting for records…"), console=err_console) as live,
    ):
        try:
            result = fs.consume_push(
                view,
                source,
                group=group,
                batch_size=batch_size,
                max_records=max_records,
                idle_seconds=idle_seconds,
                progress=lambda r: live.update(line(r)),
            )
        except KeyboardInterrupt:
            err_console.print("Stopped; positions of written batches are committed.")
            return
    if json_out:
        print_json(result)
        return
    console.print(
        f"{view}: {count(result.records, 'record')} read, {count(result.pushed, 'row')} pushed, "
        f"{count(result.rejected, 'record')} rejected (stopped: {result.stopped})."
    )
    for error in result.errors:
        console.print(f"  rejected {error}")


@features_app.command("get-online")
def get_online(
    features: Annotated[str, typer.Option(help="Comma-separated VIEW:FEATURE refs, or a service.")],
    entity: Annotated[
        list[str], typer.Option("--entity", help="KEY=VALUE of one entity row (repeatable).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Look up the latest values of one entity."""
    row: dict[str, Any] = {}
    for item in entity:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(
                f"--entity takes KEY=VALUE, got {item!r}", details={"field": "entity"}
            )
        row[key] = int(value) if value.lstrip("-").isdigit() else value
    refs: list[str] | str = features.split(",") if ":" in features else features
    with _features() as fs:
        result = fs.get_online_features(refs, [row])
    if json_out:  # the row-wise view as well, as this command always printed it
        print_json(result.model_dump(mode="json") | {"values": result.values})
        return
    print_table(
        (
            {"feature": ref, "value": v.value, "status": v.status.value, "event time": v.event_ts}
            for ref, v in result.values[0].items()
        ),
        ["feature", "value", "status", "event time"],
        title=", ".join(f"{k}={v}" for k, v in row.items()),
    )


@features_app.command("get-historical")
def get_historical(
    entities: Annotated[str, typer.Option(help="Dataset reference holding the entity rows.")],
    features: Annotated[str, typer.Option(help="Comma-separated VIEW:FEATURE refs, or a service.")],
    out: Annotated[str, typer.Option(help="Dataset to write the training set to.")],
    timestamp_column: Annotated[
        str, typer.Option(help="The entity rows' timestamp column.")
    ] = "event_timestamp",
    assume_utc: Annotated[
        bool, typer.Option("--assume-utc", help="Read naive entity timestamps as UTC.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Join features point in time onto entity rows and store the result as a training set."""
    refs: list[str] | str = features.split(",") if ":" in features else features
    with _features() as fs, err_console.status("Joining point in time...", spinner="dots"):
        result = fs.create_training_set(
            entities, refs, out, timestamp_column=timestamp_column, assume_utc=assume_utc
        )
    if json_out:
        print_json(result)
        return
    console.print(f"Training set {result.ref}: {count(result.rows, 'row')}.")
