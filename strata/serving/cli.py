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
            "fallback": i.policy.fallback.model if i.policy.fallback else "-",
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
    elif clear or any(v is not None for v in (canary, shadow, fallback, cache_ttl)):
        fields = {}
        if canary:
            fields["canary"] = [_target(c) for c in canary]
        if shadow:
            ref, _, fraction = shadow.partition(":")
            fields["shadow"] = {"model": ref, "fraction": float(fraction or 1.0)}
        if fallback:
            fields["fallback"] = {
                "model": fallback,
                "timeout_ms": timeout_ms,
                "min_confidence": min_confidence,
            }
        if cache_ttl is not None:
            fields["cache"] = {"ttl_seconds": cache_ttl}
    if fields is not None:
        result = client.serving.set_traffic_policy(name, fields)
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
