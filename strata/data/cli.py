"""CLI: ``strata data ingest|list|show|versions|diff|validate|profile|suggest-suite|lineage|
quarantine|tag|consume`` (embedded, or remote when ``STRATA_URI`` is set; ``consume`` is
embedded only: it commits stream offsets in the metadata DB's transaction).

``--json`` prints exactly one JSON object on stdout; progress bars and tables go elsewhere
(progress to stderr). Exit codes: 0 ok, 1 a failed suite (validate, or a gated ingest), 2 bad
input (printed as ``Error: ...`` by the ``strata`` entry point).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strata.core.console import console, count, err_console, print_json, print_table

if TYPE_CHECKING:  # imported when a command runs, so `strata --help` starts fast
    from rich.tree import Tree

    from strata.data.models import IngestOptions, IngestResult, LineageGraph
    from strata.data.service import DataService

data_app = typer.Typer(
    help="Datasets: ingest, versions, validation, profiles, lineage, quarantine.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _working(message: str) -> Any:
    """A spinner on stderr while a long computation runs (stdout stays clean for --json)."""
    return err_console.status(message, spinner="dots")


@contextmanager
def _data() -> Iterator[DataService]:
    """The data service of ``strata.Client()``: remote when ``STRATA_URI`` is set."""
    from strata.client import Client

    with Client() as client:
        yield client.data


def _size(n: float) -> str:
    """Bytes in binary units (1 MiB = 1,048,576 bytes), as the numbers are computed."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


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


def _report_table(report: dict[str, Any]) -> None:
    rows = []
    for res in report.get("results", []):
        observed = res.get("observed_value")
        rows.append(
            {
                "expectation": res.get("expectation_type"),
                "column": res.get("kwargs", {}).get("column", ""),
                "success": "yes" if res.get("success") else "NO",
                "observed": observed if not isinstance(observed, float) else f"{observed:.4g}",
                "unexpected": res.get("unexpected_count"),
                "unexpected %": res.get("unexpected_percent"),
                "error": res.get("error") or "",
            }
        )
    print_table(
        rows,
        ["expectation", "column", "success", "observed", "unexpected", "unexpected %", "error"],
        title=f"Suite {report.get('suite_name')}",
    )


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
    json_out: JsonOpt = False,
) -> None:
    """The catalog of datasets."""
    with _data() as svc:
        found = svc.list_datasets(
            query=query, project=project, tag=tag, column=column, pii=pii, include_quarantine=all_
        )
    if json_out:
        print_json({"datasets": found})
        return
    print_table(
        [
            d.model_dump() | {"tags": ", ".join(f"{k}={v}" for k, v in d.tags.items())}
            for d in found
        ],
        ["name", "project", "latest_version", "version_count", "owner", "tags", "description"],
        title="Datasets",
    )


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
    name: Annotated[str, typer.Argument(help="Dataset name.")], json_out: JsonOpt = False
) -> None:
    """Every version of NAME, oldest first."""
    with _data() as svc:
        found = svc.list_versions(name)
    if json_out:
        print_json({"versions": found})
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


@data_app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="The older version: NAME@VERSION.")],
    b: Annotated[str, typer.Argument(help="The newer version: NAME[@VERSION].")],
    json_out: JsonOpt = False,
) -> None:
    """What changed from version A to version B: schema, rows, column statistics."""
    with _data() as svc, _working(f"Comparing {a} and {b}..."):
        d = svc.diff(a, b)
    if json_out:
        print_json(d.model_dump(mode="json") | {"rows_delta": d.rows_delta})
        return
    console.print(
        f"{d.a} → {d.b}: rows {d.rows_a:,} → {d.rows_b:,} ({d.rows_delta:+,}); "
        f"schema: {d.schema_changes.summary()}"
        f"{'; identical content' if d.same_content else ''}",
        highlight=False,
    )
    cols = [c for c in d.columns.get("columns", []) if isinstance(c, dict)]
    print_table(
        cols,
        [
            "name",
            "status",
            "type_a",
            "type_b",
            "null_fraction_a",
            "null_fraction_b",
            "mean_a",
            "mean_b",
            "psi",
            "js_distance",
        ],
        title="Columns",
    )


@data_app.command("validate")
def validate(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    suite: Annotated[Path, typer.Option("--suite", help="Expectation suite (YAML/JSON).")],
    json_out: JsonOpt = False,
) -> None:
    """Run a suite over a version; exit code 1 when it fails. The report is stored."""
    with _data() as svc, _working(f"Validating {ref}..."):
        report = svc.validate(ref, suite)
    if json_out:
        print_json(report)
    else:
        _report_table(report.model_dump(mode="json"))
    if not report.success:
        raise typer.Exit(1)


@data_app.command("profile")
def profile(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")], json_out: JsonOpt = False
) -> None:
    """Per-column statistics of a version (stored with it; computed on first use)."""
    with _data() as svc, _working(f"Profiling {ref}..."):
        prof = svc.profile(ref)
    from pydantic_core import to_jsonable_python

    data = to_jsonable_python(prof)
    if json_out:
        print_json(data)
        return
    print_table(
        [
            {
                k: c.get(k)
                for k in ("name", "type", "count", "nulls", "distinct", "min", "max", "mean", "std")
            }
            for c in data.get("columns", [])
        ],
        ["name", "type", "count", "nulls", "distinct", "min", "max", "mean", "std"],
        title=f"Profile of {ref} ({count(data.get('row_count', 0), 'row')})",
    )


def suite_yaml(suite: Any) -> str:
    """A suite in the YAML form suites are written in (``- expect_x: {kwargs}``)."""
    import yaml

    doc = {
        "name": suite.name,
        "expectations": [{e.type: dict(e.kwargs)} for e in suite.expectations],
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@data_app.command("suggest-suite")
def suggest_suite(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write YAML here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Propose an expectation suite from a version's profile, to edit and use."""
    with _data() as svc, _working(f"Profiling {ref} to suggest a suite..."):
        suite = svc.suggest_suite(ref)
    if json_out:
        print_json(suite)
        return
    text = suite_yaml(suite)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"Wrote {len(suite.expectations)} expectations to {output}")
    else:
        sys.stdout.write(text)


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


@data_app.command("quarantine")
def quarantine(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION]: the rows set aside by its ingest")],
    limit: Annotated[int, typer.Option("--limit", help="Rows to show.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """The quarantined rows of a version's ingest, with line numbers and reasons."""
    with _data() as svc:
        q = svc.quarantine(ref)
        sample: list[dict[str, Any]] = []
        if q is not None and limit > 0:
            rel = svc.duckdb(q.ref)
            sample = [
                dict(zip(rel.columns, row, strict=True)) for row in rel.limit(limit).fetchall()
            ]
    if json_out:
        print_json({"ref": ref, "quarantine": q, "rows": q.rows if q else 0, "sample": sample})
        return
    if q is None:
        console.print(f"{ref}: nothing was quarantined.")
        return
    console.print(f"{q.ref}: {count(q.rows, 'quarantined row')}", highlight=False)
    print_table(sample, ["_line", "_row", "_reason", "_raw", "_source"], title="Quarantined rows")


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
    named: dict[str, str] = {}
    for item in inputs:
        alias, sep, ref = item.partition("=")
        named[alias if sep else item.partition("@")[0]] = ref if sep else item
    with _data() as svc:
        result = svc.transform(
            named,
            output=output,
            sql=sql,
            run_id=run_id,
            description=description,
            allow_breaking=allow_breaking,
        )
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


__all__ = ["data_app", "suite_yaml"]
