"""CLI: ``strata data ingest|list|show|versions|diff|validate|profile|suggest-suite|lineage|
quarantine|tag|consume`` (embedded, or remote when ``STRATA_URI`` is set; ``consume`` is
embedded only: it commits stream offsets in the metadata DB's transaction).

``--json`` prints exactly one JSON object on stdout; progress bars and tables go elsewhere
(progress to stderr). Exit codes: 0 ok, 1 a failed suite (validate, or a gated ingest), 2 bad
input (printed as ``Error: ...`` by the ``strata`` entry point).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strata.core.console import console, count, err_console, print_json, print_table
from strata.data import cli_quality
from strata.data.cli_common import (
    JsonOpt,
    MaxResultsOpt,
    PageTokenOpt,
)
from strata.data.cli_common import data_service as _data
from strata.data.cli_common import report_table as _report_table
from strata.data.cli_common import size_text as _size

if TYPE_CHECKING:  # imported when a command runs, so `strata --help` starts fast
    from rich.tree import Tree

    from strata.data.models import IngestOptions, IngestResult, LineageGraph
    from strata.data.service import DataService

data_app = typer.Typer(
    help="Datasets: ingest, versions, validation, profiles, lineage, quarantine.",
    no_args_is_help=True,
)


@data_app.command("ingest")
def ingest(
    source: Annotated[
        str,
        typer.Argument(
            help="A path, glob, directory, URL (s3://, https://) or, with --db, a SQL query."
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="Dataset to add a version to.")],
    suite: Annotated[
        Path | None, typer.Option("--suite", help="Expectation suite (YAML/JSON).")
    ] = None,
    on_fail: Annotated[str, typer.Option("--on-fail", help="fail | quarantine | warn")] = "fail",
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv | parquet | jsonl (default: from the extension)."),
    ] = None,
    db: Annotated[
        str | None, typer.Option("--db", help="SQLAlchemy URL: SOURCE is a query on that database.")
    ] = None,
    connection: Annotated[
        str | None,
        typer.Option(
            "--connection",
            help="Registered connection (strata connections add): SOURCE is a query.",
        ),
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="replace | append")] = "replace",
    allow_breaking: Annotated[
        bool, typer.Option("--allow-breaking", help="Accept a breaking schema change.")
    ] = False,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag the new version (repeatable).")
    ] = None,
    description: Annotated[
        str, typer.Option("--description", help="Free text for the version.")
    ] = "",
    project: Annotated[
        str | None, typer.Option("--project", help="Project the dataset belongs to.")
    ] = None,
    delimiter: Annotated[str | None, typer.Option("--delimiter", help="CSV delimiter.")] = None,
    no_profile: Annotated[bool, typer.Option("--no-profile", help="Skip profiling.")] = False,
    schema: Annotated[
        str | None,
        typer.Option(
            "--schema",
            help="CSV column types instead of inferred ones: COL=TYPE,... or a YAML/JSON file "
            "mapping columns to types (int, float, string, bool, date, timestamp, timestamptz, "
            "or an Arrow name). Values that do not convert go to quarantine.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Ingest SOURCE as a new version of NAME (identical data returns the existing version)."""
    from strata.core.parse import parse_options
    from strata.data.models import IngestOptions

    options = parse_options(
        IngestOptions,
        format=fmt,
        sql_url=db,
        connection=connection,
        suite=suite,
        on_fail=on_fail,
        mode=mode,
        allow_breaking=allow_breaking,
        tags=tag or [],
        description=description,
        project=project,
        delimiter=delimiter,
        column_types=_schema(schema) if schema else None,
        profile=not no_profile,
        raise_on_fail=False,
    )
    with _data() as svc:
        if json_out:
            result = svc.ingest(source, name, options)
        else:
            result = _ingest_with_progress(svc, source, name, options)
    if json_out:
        print_json(result)
    else:
        _show_result(result)
    if not result.published:
        raise typer.Exit(1)


def _schema(value: str) -> dict[str, str]:
    """``--schema``: ``col=type,...`` or the path of a YAML/JSON mapping of columns to types."""
    from strata.core.errors import InvalidInput

    path = Path(value)
    if value.endswith((".yaml", ".yml", ".json")) or path.is_file():
        import yaml

        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidInput(
                f"--schema file {value} cannot be read: {exc}", details={"field": "schema"}
            ) from None
        if not isinstance(doc, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in doc.items()
        ):
            raise InvalidInput(
                f"--schema file {value} must map column names to type names, e.g. 'price: float'",
                details={"field": "schema"},
            )
        return dict(doc)
    out: dict[str, str] = {}
    for pair in value.split(","):
        col, sep, typ = pair.partition("=")
        if not sep or not col.strip() or not typ.strip():
            raise InvalidInput(
                f"--schema must be COL=TYPE,... or a .yaml/.json file, got {pair.strip()!r}",
                details={"field": "schema"},
            )
        out[col.strip()] = typ.strip()
    return out


def _ingest_with_progress(
    svc: DataService, source: str, name: str, options: IngestOptions
) -> IngestResult:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn(
            "{task.fields[rows]} rows  {task.fields[rows_rate]} rows/s  "
            "{task.fields[bytes]}  {task.fields[bytes_rate]}/s"
        ),
        TimeElapsedColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(
            f"ingest {name}", total=None, rows="0", rows_rate="0", bytes="0 B", bytes_rate="0 B"
        )

        def report(rows: int, nbytes: int, total: int | None) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(
                task,
                completed=nbytes,
                total=total,
                rows=f"{rows:,}",
                rows_rate=f"{rows / elapsed:,.0f}",
                bytes=_size(nbytes),
                bytes_rate=_size(nbytes / elapsed),
            )

        return svc.ingest(source, name, options, progress=report)


def _show_result(r: IngestResult) -> None:
    if not r.published:
        err_console.print(
            f"[bold red]Not published:[/bold red] the suite failed (report {r.report_id}).",
            highlight=False,
        )
        if r.validation:
            _report_table(r.validation)
        return
    verb = "Created" if r.created else "Unchanged (identical data):"
    rate = r.rows / r.seconds if r.seconds else 0
    console.print(
        f"{verb} [bold]{r.ref}[/bold]: {count(r.rows, 'row')}, {_size(r.bytes)} "
        f"in {r.seconds:.2f}s ({rate:,.0f} rows/s)",
        highlight=False,
    )
    if r.quarantined_rows:
        console.print(
            f"[yellow]{count(r.quarantined_rows, 'row')} quarantined[/yellow] in "
            f"{r.quarantine} (see `strata data quarantine {r.ref}`)",
            highlight=False,
        )
    if r.schema_changes is not None and not r.schema_changes.empty:
        console.print(
            f"Schema changes since {r.schema_changes.base}: {r.schema_changes.summary()}",
            highlight=False,
        )
    if r.validation:
        _report_table(r.validation)


@data_app.command("list")
def list_cmd(
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Text in name/description.")
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Project the dataset belongs to.")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="KEY or KEY=VALUE")] = None,
    column: Annotated[str | None, typer.Option("--column", help="Has this column.")] = None,
    pii: Annotated[bool | None, typer.Option("--pii/--no-pii", help="Has (no) PII column.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include quarantine datasets.")] = False,
    max_results: MaxResultsOpt = 1000,
    page_token: PageTokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The catalog of datasets, by name, a page at a time."""
    with _data() as svc:
        found = svc.list_datasets(
            query=query,
            project=project,
            tag=tag,
            column=column,
            pii=pii,
            include_quarantine=all_,
            max_results=max_results,
            page_token=page_token,
        )
    if json_out:
        print_json({"datasets": found.items, "next_page_token": found.next_page_token})
        return
    print_table(
        [
            d.model_dump() | {"tags": ", ".join(f"{k}={v}" for k, v in d.tags.items())}
            for d in found
        ],
        ["name", "project", "latest_version", "version_count", "owner", "tags", "description"],
        title="Datasets",
    )
    _more(found.next_page_token)


def _more(token: str | None) -> None:
    """Where the next page starts, when there is one."""
    if token:
        console.print(f"More: add --page-token {token}", highlight=False)


@data_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION]")], json_out: JsonOpt = False
) -> None:
    """A version: schema (with annotations), rows, parents, source, quarantine."""
    with _data() as svc:
        v = svc.get_version(ref)
    if json_out:
        print_json(
            v.model_dump(mode="json")
            | {
                "ref": v.ref,
                "schema": [c.model_dump() for c in v.columns],
            }
        )
        return
    console.print(
        f"[bold]{v.ref}[/bold] ({v.kind.value})  {count(v.rows, 'row')}, {_size(v.bytes)}, "
        f"{count(v.num_files, 'file')}\ncreated {v.created_at:%Y-%m-%d %H:%M:%S} by "
        f"{v.created_by}; parents: {', '.join(v.parents) or 'none'}; tags: "
        f"{', '.join(v.tags) or 'none'}\nsource: {v.source}",
        highlight=False,
    )
    if v.quarantine:
        console.print(f"quarantine: {v.quarantine} ({count(v.quarantined_rows, 'row')})")
    print_table(
        [
            {
                "column": c.name,
                "type": c.type,
                "nullable": c.nullable,
                "pii": c.annotation.pii,
                "semantic type": c.annotation.semantic_type,
                "description": c.annotation.description,
            }
            for c in v.columns
        ],
        ["column", "type", "nullable", "pii", "semantic type", "description"],
        title="Schema",
    )


@data_app.command("versions")
def versions(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    max_results: MaxResultsOpt = 1000,
    page_token: PageTokenOpt = None,
    newest_first: Annotated[
        bool, typer.Option("--newest-first", help="Newest version first.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """The versions of NAME, oldest first, a page at a time."""
    with _data() as svc:
        found = svc.list_versions(
            name, max_results=max_results, page_token=page_token, newest_first=newest_first
        )
    if json_out:
        print_json({"versions": found.items, "next_page_token": found.next_page_token})
        return
    print_table(
        [
            v.model_dump()
            | {
                "parents": ", ".join(v.parents),
                "tags": ", ".join(v.tags),
                "changes": v.schema_changes.summary() if v.schema_changes else "",
            }
            for v in found
        ],
        ["id", "created_at", "rows", "quarantined_rows", "parents", "tags", "changes"],
        title=f"Versions of {name}",
    )
    _more(found.next_page_token)


data_app.command("diff")(cli_quality.diff)
data_app.command("validate")(cli_quality.validate)
data_app.command("profile")(cli_quality.profile)
data_app.command("suggest-suite")(cli_quality.suggest_suite)


@data_app.command("lineage")
def lineage_cmd(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    direction: Annotated[str, typer.Option("--direction", help="up | down")] = "up",
    depth: Annotated[int, typer.Option("--depth", help="Version hops to follow.")] = 5,
    json_out: JsonOpt = False,
) -> None:
    """The lineage graph of a version: datasets, versions, transforms, runs (going down: also
    the runs that trained on it)."""
    from strata.client import Client

    with Client() as client:
        graph = client.lineage(ref, direction=direction, depth=depth)
    if json_out:
        print_json(graph)
        return
    console.print(_tree(graph))


def _tree(graph: LineageGraph) -> Tree:
    from rich.markup import escape
    from rich.tree import Tree

    labels = {n.id: escape(f"[{n.kind}] {n.label}") for n in graph.nodes}  # not markup
    up = graph.direction.value == "up"
    nexts: dict[str, list[str]] = {}
    for e in graph.edges:
        if e.kind == "version":
            continue
        a, b = (e.target, e.source) if up else (e.source, e.target)
        nexts.setdefault(a, []).append(b)
    root = Tree(labels.get(graph.root, graph.root))

    def grow(node: Tree, nid: str, seen: set[str]) -> None:
        for child in nexts.get(nid, []):
            if child in seen:
                continue
            grow(node.add(labels.get(child, child)), child, seen | {child})

    grow(root, graph.root, {graph.root})
    return root


data_app.command("quarantine")(cli_quality.quarantine)


@data_app.command("transform")
def transform(
    sql: Annotated[
        str,
        typer.Option(
            "--sql", help="DuckDB query; each input is a view named after its dataset (or ALIAS)."
        ),
    ],
    output: Annotated[str, typer.Option("--output", help="Dataset to write the result to.")],
    inputs: Annotated[
        list[str],
        typer.Option("--input", help="NAME[@VERSION] or ALIAS=NAME[@VERSION] (repeatable)."),
    ],
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Tracking run that produced it.")
    ] = None,
    description: Annotated[
        str, typer.Option("--description", help="Free text for the version.")
    ] = "",
    allow_breaking: Annotated[
        bool, typer.Option("--allow-breaking", help="Accept a breaking schema change.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Derive a version of OUTPUT from inputs with SQL; parents and code are recorded."""
    from strata.core.parse import parse_options
    from strata.data.models import TransformOptions

    named: dict[str, str] = {}
    for item in inputs:
        alias, sep, ref = item.partition("=")
        named[alias if sep else item.partition("@")[0]] = ref if sep else item
    options = parse_options(
        TransformOptions,
        inputs=named,
        output=output,
        sql=sql,
        run_id=run_id,
        description=description,
        allow_breaking=allow_breaking,
    )
    with _data() as svc:
        result = svc.transform(named, options)
    if json_out:
        print_json(result)
    else:
        _show_result(result)


@data_app.command("tag")
def tag(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION] to tag.")],
    name: Annotated[str, typer.Argument(help="The tag (not all hex digits, not 'latest').")],
    json_out: JsonOpt = False,
) -> None:
    """Point tag NAME at a version (usable as REF@NAME)."""
    with _data() as svc:
        v = svc.tag_version(ref, name)
    if json_out:
        print_json(v)
        return
    console.print(f"{v.dataset}@{name} → {v.ref}", highlight=False)


@data_app.command("consume")
def consume(
    source: Annotated[
        str, typer.Argument(help="kafka://HOST:PORT/TOPIC or redis://HOST:PORT/DB?stream=NAME")
    ],
    name: Annotated[str, typer.Option("--name", help="Dataset each batch is appended to.")],
    batch_size: Annotated[int, typer.Option("--batch-size", help="Most records a batch.")] = 10_000,
    batch_seconds: Annotated[
        float, typer.Option("--batch-seconds", help="Longest wait for a batch to fill.")
    ] = 5.0,
    max_batches: Annotated[
        int | None, typer.Option("--max-batches", help="Stop after this many batches.")
    ] = None,
    idle: Annotated[
        float | None, typer.Option("--stop-when-idle", help="Stop after SECONDS without records.")
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Consumer group (default strata.NAME).")
    ] = None,
    compact_after: Annotated[
        int,
        typer.Option(
            "--compact-after", help="Rewrite the version into large parts past N small ones."
        ),
    ] = 64,
    json_out: JsonOpt = False,
) -> None:
    """Append a Kafka topic or Redis stream to NAME in micro-batches (one version each);
    offsets are stored with the data, so a restart resumes exactly where it stopped."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from strata.data.models import ConsumeResult, StreamBatch

    opts: dict[str, Any] = {"batch_size": batch_size, "batch_seconds": batch_seconds}
    opts |= {"max_batches": max_batches, "idle_seconds": idle, "group": group}
    opts["compact_after"] = compact_after
    with (
        _data() as svc,
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=json_out,
        ) as bar,
    ):
        task = bar.add_task(f"consume → {name}", total=max_batches, info="waiting for records")

        def shown(b: StreamBatch, t: ConsumeResult) -> None:
            rate = t.rows / t.seconds if t.seconds else 0.0
            batches = count(t.batches, "batch", "batches")
            info = f"{batches}  {count(t.rows, 'row')}  {rate:,.0f} rows/s"
            bar.update(task, completed=t.batches, info=info + f"  {t.quarantined:,} quarantined")

        result = svc.consume(source, name, on_batch=shown, **opts)
    if json_out:
        print_json(result)
        return
    console.print(
        f"{count(result.batches, 'batch', 'batches')}, {count(result.rows, 'row')} "
        f"into [bold]{name}[/bold]"
        f"{f'@{result.version}' if result.version else ''} ({result.quarantined:,} quarantined, "
        f"{result.skipped:,} already stored) in {result.seconds:.1f}s; offsets {result.offsets}",
        highlight=False,
    )


__all__ = ["data_app"]
