"""CLI: the registry's verbs in the ``strata models`` group (attached by ``strata/cli/main.py``).

``register``, ``list``, ``show``, ``versions``, ``alias set|delete|history``,
``request-promotion``, ``requests``, ``approve``, ``reject``, ``rollback``, ``card``,
``gate``, ``settings``, ``delete``. Built on ``strata.Client()`` (remote when STRATA_URI is
set); every list and show takes ``--json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strata.core.console import console, print_json, print_table

if TYPE_CHECKING:
    from strata.client import Client
    from strata.registry.models import AliasMove, PromotionRequest

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
NameArg = Annotated[str, typer.Argument(help="The registered model's name.")]
VersionArg = Annotated[str, typer.Argument(help="A version number.")]

alias_app = typer.Typer(help="Move aliases and show their history.", no_args_is_help=True)


def _client() -> Client:
    from strata.client import Client

    return Client()


def _move_line(move: AliasMove) -> str:
    before = "-" if move.from_version is None else f"v{move.from_version}"
    after = "-" if move.to_version is None else f"v{move.to_version}"
    return f"{move.name}@{move.alias}: {before} → {after} ({move.action} by {move.actor})"


def _request_rows(items: list[PromotionRequest]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "model": r.name,
            "version": r.version,
            "alias": r.alias,
            "status": r.status.value,
            "requested_by": r.requested_by,
            "decided_by": r.decided_by,
            "gate": "" if r.gate is None else ("passed" if r.gate.passed else "FAILED"),
            "reason": r.reason,
        }
        for r in items
    ]


def register(
    name: NameArg,
    run: Annotated[str, typer.Option("--run", help="The run holding the model.")],
    path: Annotated[str, typer.Option("--path", help="The model's path in the run.")] = "model",
    description: Annotated[str, typer.Option(help="The version's description.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Register the model a run logged as the next version of NAME (creates NAME if new)."""
    with _client() as client:
        mv = client.registry.register(name, run, path, description=description)
    if as_json:
        print_json({"name": mv.name, "version": mv.version})
        return
    console.print(
        f"Registered [bold]{mv.name}[/bold] version {mv.version} ({mv.status.value}) from "
        f"{mv.source}; load it with models:/{mv.name}/{mv.version}"
    )


def list_models(
    filter: Annotated[
        str | None,
        typer.Option("--filter", help="e.g. \"name LIKE 'fl%' AND alias = 'production'\""),
    ] = None,
    max_results: Annotated[
        int, typer.Option("--max-results", help="At most this many models (1-1000).")
    ] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List registered models."""
    with _client() as client:
        page = client.registry.search_models(filter, max_results=max_results)
    if as_json:
        print_json(page)
        return
    rows = [
        {
            "name": m.name,
            "latest": m.latest_version,
            "aliases": ", ".join(f"{a}=v{v}" for a, v in m.aliases.items()),
            "owner": m.owner,
            "tags": ", ".join(f"{k}={v}" for k, v in m.tags.items()),
            "updated": m.updated_at,
        }
        for m in page.items
    ]
    print_table(rows, ["name", "latest", "aliases", "owner", "tags", "updated"], "Models")


def show(
    name: NameArg,
    version: Annotated[
        str | None, typer.Argument(help="Show this version instead of the model.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one registered model, or one of its versions."""
    if version is not None:
        _show_version(name, version, as_json)
        return
    with _client() as client:
        model = client.registry.get_model(name)
    if as_json:
        print_json(model)
        return
    console.print(f"[bold]{model.name}[/bold]  owner {model.owner}  latest v{model.latest_version}")
    if model.description:
        console.print(model.description)
    print_table(
        [{"alias": a, "version": v} for a, v in model.aliases.items()],
        ["alias", "version"],
        "Aliases",
    )
    if model.gate is not None:
        g = model.gate
        console.print(
            f"Gate: {g.metric} on {g.dataset} (target {g.target}), threshold {g.threshold}, "
            f"{'higher' if g.higher_is_better else 'lower'} is better"
        )


def _show_version(name: str, version: str, as_json: bool) -> None:
    with _client() as client:
        mv = client.registry.get_version(name, version)
    if as_json:
        print_json(mv)
        return
    console.print(
        f"[bold]{mv.name}[/bold] v{mv.version}  {mv.status.value}  "
        f"aliases {', '.join(mv.aliases) or '-'}  by {mv.created_by} at {mv.created_at}"
    )
    if mv.status_message:
        console.print(mv.status_message)
    console.print(f"source {mv.source}  flavor {mv.flavor}  digest {mv.digest}")
    if mv.lineage.git_commit:
        console.print(f"commit {mv.lineage.git_commit}")
    print_table(
        [{"metric": k, "value": v} for k, v in sorted(mv.metrics.items())],
        ["metric", "value"],
        "Metrics",
    )


def versions(name: NameArg, as_json: JsonOpt = False) -> None:
    """List a model's versions, newest first."""
    from strata.registry.models import check_name

    check_name(name)
    with _client() as client:
        page = client.registry.search_versions(f"name = '{name}'", max_results=1000)
    if as_json:
        print_json(page)
        return
    rows = [
        {
            "version": v.version,
            "status": v.status.value,
            "aliases": ", ".join(v.aliases),
            "run": v.run_id,
            "flavor": v.flavor,
            "created_by": v.created_by,
            "created": v.created_at,
        }
        for v in page.items
    ]
    print_table(
        rows, ["version", "status", "aliases", "run", "flavor", "created_by", "created"], "Versions"
    )


def delete(
    name: NameArg,
    version: Annotated[str | None, typer.Argument(help="Delete only this version.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a model (with every version) or one version."""
    what = f"version {version} of {name!r}" if version else f"model {name!r} and all its versions"
    if not yes:
        typer.confirm(f"Delete {what}?", abort=True)
    with _client() as client:
        if version:
            client.registry.delete_version(name, version)
        else:
            client.registry.delete_model(name)
    console.print(f"Deleted {what}")


def alias_set(
    name: NameArg,
    alias: Annotated[str, typer.Argument(help="The alias (production needs a request).")],
    version: VersionArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the history).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Point ALIAS of NAME at VERSION."""
    with _client() as client:
        move = client.registry.set_alias(name, alias, version, reason=reason)
    if as_json:
        print_json(move)
        return
    console.print(_move_line(move))


def alias_delete(
    name: NameArg,
    alias: Annotated[str, typer.Argument(help="The alias to remove.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the history).")] = "",
) -> None:
    """Remove an alias (kept in the history)."""
    with _client() as client:
        move = client.registry.delete_alias(name, alias, reason=reason)
    console.print(_move_line(move))


def alias_history(
    name: NameArg,
    alias: Annotated[str, typer.Argument(help="The alias whose moves to show.")],
    as_json: JsonOpt = False,
) -> None:
    """Every move of ALIAS, newest first: who, when, from, to, why."""
    with _client() as client:
        page = client.registry.alias_history(name, alias, max_results=1000)
    if as_json:
        print_json(page)
        return
    rows = [
        {
            "seq": m.seq,
            "at": m.at,
            "from": m.from_version,
            "to": m.to_version,
            "action": m.action,
            "actor": m.actor,
            "reason": m.reason,
            "request": m.request_id,
        }
        for m in page.items
    ]
    print_table(
        rows, ["seq", "at", "from", "to", "action", "actor", "reason", "request"], f"{name}@{alias}"
    )


def request_promotion(
    name: NameArg,
    version: VersionArg,
    alias: Annotated[str, typer.Option("--alias", help="The alias to move.")],
    reason: Annotated[str, typer.Option("--reason", help="Why this version.")],
    as_json: JsonOpt = False,
) -> None:
    """Ask for ALIAS to move to VERSION (runs the model's gate when it has one)."""
    with _client() as client:
        req = client.registry.request_promotion(name, version, alias=alias, reason=reason)
    if as_json:
        print_json(req)
        return
    console.print(f"Request [bold]{req.id}[/bold]: {name} v{req.version} → {req.alias} (pending)")
    if req.gate is not None:
        console.print(f"Gate: {req.gate.message}")


def list_requests(
    name: Annotated[str | None, typer.Option("--model", help="Only this model's.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="pending, approved, rejected")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List promotion requests, newest first."""
    with _client() as client:
        page = client.registry.list_requests(name=name, status=status, max_results=1000)
    if as_json:
        print_json(page)
        return
    print_table(
        _request_rows(page.items),
        [
            "id",
            "model",
            "version",
            "alias",
            "status",
            "requested_by",
            "decided_by",
            "gate",
            "reason",
        ],
        "Requests",
    )


def _decide(request_id: str, comment: str, approve: bool) -> None:
    with _client() as client:
        svc = client.registry
        req = (
            svc.approve(request_id, comment=comment)
            if approve
            else svc.reject(request_id, comment=comment)
        )
    console.print(
        f"Request {req.id} {req.status.value} by {req.decided_by}: "
        f"{req.name} v{req.version} → {req.alias}"
    )


def approve(
    request_id: Annotated[str, typer.Argument(help="The request's id (see `requests`).")],
    comment: Annotated[str, typer.Option("--comment", help="Kept with the decision.")] = "",
) -> None:
    """Approve a promotion request (approver or admin; not your own)."""
    _decide(request_id, comment, True)


def reject(
    request_id: Annotated[str, typer.Argument(help="The request's id (see `requests`).")],
    comment: Annotated[str, typer.Option("--comment", help="Kept with the decision.")] = "",
) -> None:
    """Reject a promotion request."""
    _decide(request_id, comment, False)


def rollback(
    name: NameArg,
    alias: Annotated[str, typer.Option("--alias", help="The alias to move back.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the history).")] = "",
) -> None:
    """Move ALIAS back to the version it pointed at before its latest move."""
    with _client() as client:
        move = client.registry.rollback(name, alias, reason=reason)
    console.print(_move_line(move))


def card(
    name: NameArg,
    version: VersionArg,
    html: Annotated[
        bool, typer.Option("--html", help="Self-contained HTML instead of Markdown.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file.")
    ] = None,
    intended_use: Annotated[
        str | None, typer.Option("--intended-use", help="Edit: intended use.")
    ] = None,
    limitations: Annotated[
        str | None, typer.Option("--limitations", help="Edit: limitations.")
    ] = None,
    notes: Annotated[str | None, typer.Option("--notes", help="Edit: notes.")] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print JSON: the editable sections and the card (Markdown or HTML)."
        ),
    ] = False,
) -> None:
    """Print (or write) a version's model card; the owner edits its sections with the options."""
    fmt = "html" if html else "markdown"
    with _client() as client:
        if intended_use is not None or limitations is not None or notes is not None:
            client.registry.update_card(
                name,
                version,
                {"intended_use": intended_use, "limitations": limitations, "notes": notes},
            )
        text = client.registry.card(name, version, format=fmt)
        if as_json:
            mv = client.registry.get_version(name, version)
            doc = {"name": mv.name, "version": mv.version, "sections": mv.card}
            text = json.dumps({**doc, "format": fmt, "card": text}, indent=2)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        console.print(f"Wrote {output}")
    else:
        typer.echo(text)


def gate(
    name: NameArg,
    metric: Annotated[str | None, typer.Option("--metric", help="e.g. roc_auc")] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Holdout version, NAME@VERSION.")
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="Its label column.")] = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Allowed shortfall vs production (metric units).")
    ] = 0.0,
    lower_is_better: Annotated[
        bool, typer.Option("--lower-is-better", help="The metric is a loss (smaller wins).")
    ] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the gate.")] = False,
) -> None:
    """Set (or --remove) NAME's promotion gate."""
    with _client() as client:
        if remove:
            client.registry.set_gate(name, None)
            console.print(f"Removed the gate of {name}")
            return
        spec = {
            "metric": metric,
            "dataset": dataset,
            "target": target,
            "threshold": threshold,
            "higher_is_better": not lower_is_better,
        }
        model = client.registry.set_gate(name, spec)
    console.print(f"Gate of {model.name}: {model.gate}")


def settings(
    allow_self_approval: Annotated[
        bool | None,
        typer.Option(
            "--allow-self-approval/--no-self-approval",
            help="Admin: may requesters approve their own?",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show (or, as admin, change) the registry settings."""
    with _client() as client:
        current = client.registry.get_settings()
        if allow_self_approval is not None:
            current = client.registry.update_settings({"allow_self_approval": allow_self_approval})
    if as_json:
        print_json(current)
        return
    console.print(f"allow_self_approval: {current.allow_self_approval}")


def add_registry_commands(models_app: typer.Typer) -> None:
    """Attach the registry's verbs to the ``strata models`` group."""
    models_app.command("register")(register)
    models_app.command("list")(list_models)
    models_app.command("show")(show)
    models_app.command("versions")(versions)
    models_app.command("delete")(delete)
    models_app.command("request-promotion")(request_promotion)
    models_app.command("requests")(list_requests)
    models_app.command("approve")(approve)
    models_app.command("reject")(reject)
    models_app.command("rollback")(rollback)
    models_app.command("card")(card)
    models_app.command("gate")(gate)
    models_app.command("settings")(settings)
    alias_app.command("set")(alias_set)
    alias_app.command("delete")(alias_delete)
    alias_app.command("history")(alias_history)
    models_app.add_typer(alias_app, name="alias")
