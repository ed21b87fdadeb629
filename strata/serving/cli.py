"""CLI: ``strata serving ...`` — the endpoints inference servers publish and their traffic
policies, on ``strata.Client()`` (remote when STRATA_URI is set). ``strata serve`` itself
(the server) is registered by the top-level CLI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strata.core.console import console, print_json, print_table

if TYPE_CHECKING:
    from strata.client import Client

serving_app = typer.Typer(
    help="Inference endpoints (published by `strata serve`) and their traffic policies.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _client() -> Client:
    from strata.client import Client

    return Client()


@serving_app.command("endpoints")
def endpoints(as_json: JsonOpt = False) -> None:
    """List the endpoints running servers published: version served, readiness, policy."""
    items = _client().serving.list_endpoints()
    if as_json:
        print_json([i.model_dump(mode="json") for i in items])
        return
    rows = [
        {
            "endpoint": i.name,
            "model": i.model,
            "version": i.version or "-",
            "ready": "yes" if i.ready else f"no: {i.error or 'loading'}",
            "canary": ", ".join(f"{t.model}={t.weight:g}" for t in i.policy.canary) or "-",
            "shadow": i.policy.shadow.model if i.policy.shadow else "-",
            "fallback": i.policy.fallback.text() if i.policy.fallback else "-",
            "reported": i.updated_at.isoformat(timespec="seconds") if i.updated_at else "-",
        }
        for i in items
    ]
    columns = ["endpoint", "model", "version", "ready", "canary", "shadow", "fallback"]
    print_table(rows, [*columns, "reported"], title="Endpoints")


@serving_app.command("policy")
def policy(
    name: Annotated[str, typer.Argument(help="The endpoint.")],
    file: Annotated[
        Path | None,
        typer.Option("--set", help="Set the policy from a YAML/JSON file (replaces it whole)."),
    ] = None,
    canary: Annotated[
        list[str] | None,
        typer.Option(help="REF=WEIGHT, e.g. flights/4=0.1 (repeatable)."),
    ] = None,
    shadow: Annotated[
        str | None, typer.Option(help="REF[:FRACTION] mirrored asynchronously.")
    ] = None,
    fallback: Annotated[
        str | None, typer.Option(help="REF answering when the primary fails.")
    ] = None,
    fallback_cached: Annotated[
        bool,
        typer.Option(
            "--fallback-cached",
            help="When the primary fails, answer with the last good answer for the same "
            "inputs first (then --fallback, if given).",
        ),
    ] = False,
    timeout_ms: Annotated[
        float | None, typer.Option(help="Fallback after this primary latency.")
    ] = None,
    min_confidence: Annotated[
        float | None, typer.Option(help="Fallback below this top-class probability.")
    ] = None,
    cache_ttl: Annotated[
        float | None, typer.Option(help="Cache responses this many seconds (LRU).")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Reset to no policy.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show an endpoint's traffic policy, or change it (--set FILE, or the flags; audited).
    Servers apply a change at their next poll."""
    client = _client()
    fields: dict[str, Any] | None = None
    if file is not None:
        import yaml

        fields = yaml.safe_load(file.read_text()) or {}
    elif (
        clear
        or fallback_cached
        or any(v is not None for v in (canary, shadow, fallback, cache_ttl))
    ):
        fields = {}
        if canary:
            fields["canary"] = [_target(c) for c in canary]
        if shadow:
            ref, _, fraction = shadow.partition(":")
            fields["shadow"] = {"model": ref, "fraction": float(fraction or 1.0)}
        if fallback or fallback_cached:
            fields["fallback"] = {
                "model": fallback,
                "cached": fallback_cached,
                "timeout_ms": timeout_ms,
                "min_confidence": min_confidence,
            }
        if cache_ttl is not None:
            fields["cache"] = {"ttl_seconds": cache_ttl}
    if fields is not None:
        result = client.serving.set_traffic_policy(name, fields)
        if not as_json:  # --json prints the JSON alone, for a program to read
            console.print(f"Policy of {name} set; servers apply it at their next poll.")
    else:
        result = client.serving.get_traffic_policy(name)
    if as_json or fields is None:
        print_json(result.model_dump(mode="json"))


def _target(text: str) -> dict[str, Any]:
    from strata.core.errors import InvalidInput

    ref, sep, weight = text.rpartition("=")
    if not sep:
        raise InvalidInput(
            f"--canary {text!r} must be REF=WEIGHT, e.g. flights/4=0.1",
            details={"field": "canary"},
        )
    try:
        return {"model": ref, "weight": float(weight)}
    except ValueError:
        raise InvalidInput(
            f"--canary {text!r}: the weight must be a number", details={"field": "canary"}
        ) from None


jobs_app = typer.Typer(
    help="Scoring jobs run by a Strata server (batch and stream), started over its API.",
    no_args_is_help=True,
)
serving_app.add_typer(jobs_app, name="jobs")


def _show_job(job: Any, as_json: bool) -> None:
    if as_json:
        print_json(job.model_dump(mode="json"))
        return
    outcome = job.error or (job.result or {}).get("output") or "-"
    progress = ", ".join(f"{k} {v:,.0f}" for k, v in job.progress.items()) or "-"
    console.print(
        f"{job.id}  {job.kind}  [bold]{job.state}[/bold]  {job.spec.get('model')}  "
        f"progress: {progress}  outcome: {outcome}",
        highlight=False,
    )


def _wait(client: Any, job: Any, as_json: bool) -> None:
    import time

    from strata.core.console import err_console

    with err_console.status(f"job {job.id} running...") as status:
        while job.state == "running":
            time.sleep(0.5)
            job = client.serving.get_job(job.id)
            progress = ", ".join(f"{k} {v:,.0f}" for k, v in job.progress.items())
            status.update(f"job {job.id} running: {progress}")
    _show_job(job, as_json)
    if job.state != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list(
    max_results: Annotated[
        int, typer.Option("--max-results", help="At most this many jobs, newest (1-1000).")
    ] = 100,
    page_token: Annotated[
        str | None, typer.Option("--page-token", help="Where the next page starts (printed).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Scoring jobs, newest first, with their state and progress."""
    found = _client().serving.list_jobs(max_results=max_results, page_token=page_token)
    items = found.items
    if as_json:
        print_json(
            {
                "jobs": [j.model_dump(mode="json") for j in items],
                "next_page_token": found.next_page_token,
            }
        )
        return
    rows = [
        {
            "job": j.id,
            "kind": j.kind,
            "state": j.state,
            "model": j.spec.get("model"),
            "from": j.spec.get("input") or j.spec.get("source"),
            "into": j.spec.get("output") or j.spec.get("sink"),
            "by": j.created_by or "-",
            "started": j.created_at.isoformat(timespec="seconds"),
        }
        for j in items
    ]
    print_table(
        rows,
        ["job", "kind", "state", "model", "from", "into", "by", "started"],
        empty=(
            "No scoring jobs on this page."
            if page_token
            else "No scoring jobs yet. Start one with: strata serving jobs batch MODEL_REF "
            "--input DATASET --output NAME, or strata serving jobs stream MODEL_REF "
            "--from URI --to URI"
        ),
    )
    if found.next_page_token:
        console.print(f"More: add --page-token {found.next_page_token}", highlight=False)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="The job id.")], as_json: JsonOpt = False
) -> None:
    """One job: state, progress, result or error."""
    _show_job(_client().serving.get_job(job_id), as_json)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="The job id.")], as_json: JsonOpt = False
) -> None:
    """Ask a running job to stop (a batch job resumes when started again)."""
    _show_job(_client().serving.cancel_job(job_id), as_json)


@jobs_app.command("delete")
def jobs_delete(job_id: Annotated[str, typer.Argument(help="The job id.")]) -> None:
    """Remove a finished job's record (what it wrote stays); a running one: cancel it first."""
    _client().serving.delete_job(job_id)
    console.print(f"Deleted scoring job {job_id}.")


@jobs_app.command("batch")
def jobs_batch(
    model: Annotated[str, typer.Argument(help="A registered model: NAME@ALIAS, NAME/VERSION.")],
    input_ref: Annotated[str, typer.Option("--input", "-i", help="Dataset: NAME[@VERSION].")],
    output: Annotated[str, typer.Option("--output", "-o", help="Dataset to write into.")],
    chunk_rows: Annotated[int, typer.Option(help="Rows per chunk.")] = 50_000,
    keep: Annotated[
        list[str] | None, typer.Option("--keep", help="Input column to copy (repeatable).")
    ] = None,
    proba: Annotated[bool, typer.Option("--proba", help="Add probability columns.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start a batch scoring job on the server (see `strata predict batch` to run one here)."""
    client = _client()
    spec = {"model": model, "input": input_ref, "output": output, "chunk_rows": chunk_rows}
    job = client.serving.start_batch_job({**spec, "keep": keep or [], "proba": proba})
    if wait:
        _wait(client, job, as_json)
    else:
        _show_job(job, as_json)


@jobs_app.command("stream")
def jobs_stream(
    model: Annotated[str, typer.Argument(help="A registered model: NAME@ALIAS, NAME/VERSION.")],
    source: Annotated[str, typer.Option("--from", help="kafka://HOST:PORT/TOPIC or redis://.")],
    sink: Annotated[str, typer.Option("--to", help="Output stream URI.")],
    max_batches: Annotated[int | None, typer.Option(help="Stop after this many batches.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a stream scorer on the server (on the brokers it is configured with)."""
    spec = {"model": model, "source": source, "sink": sink, "max_batches": max_batches}
    _show_job(_client().serving.start_stream_job(spec), as_json)
