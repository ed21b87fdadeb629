"""The data quality commands: ``strata data diff|validate|profile|suggest-suite|quarantine``
(registered on ``data_app`` by :mod:`strata.data.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from strata.core.console import console, count, err_console, print_json, print_table
from strata.data.cli_common import JsonOpt
from strata.data.cli_common import data_service as _data
from strata.data.cli_common import report_table as _report_table
from strata.data.cli_common import working as _working


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
