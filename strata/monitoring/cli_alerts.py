"""CLI: ``strata monitor alerts ...`` — rules from YAML, their state and firing history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from strata.core.console import console, print_json, print_table

alerts_app = typer.Typer(
    help="Alert rules over monitored series, and their firings.", no_args_is_help=True
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _client() -> Any:  # a strata.Client: only cli.py may import strata.client
    from strata.monitoring.cli import _client as client

    return client()


def load_rules(path: Path) -> list[dict[str, Any]]:
    """One rule or ``rules: [...]`` from YAML; a retrain action's ``config`` naming a file is
    read here (relative to the rules file) and sent inline."""
    import yaml

    from strata.core.errors import InvalidInput

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(
            f"cannot read rules from {path}: {exc}", details={"field": "file"}
        ) from None
    items = doc.get("rules", [doc]) if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidInput(f"{path} must hold a rule or rules: [...]", details={"field": "file"})
    for rule in items:
        for action in rule.get("actions") or []:
            if isinstance(action, dict) and isinstance(action.get("config"), str):
                cfg = (path.parent / action["config"]).resolve()
                try:
                    action["config"] = yaml.safe_load(cfg.read_text(encoding="utf-8"))
                except (OSError, yaml.YAMLError) as exc:
                    raise InvalidInput(
                        f"rule {rule.get('name')!r}: cannot read training config {cfg}: {exc}",
                        details={"field": "config"},
                    ) from None
    return items


@alerts_app.command("save")
def save(
    file: Annotated[Path, typer.Argument(help="A YAML file with a rule or rules: [...].")],
    as_json: JsonOpt = False,
) -> None:
    """Create or replace rules (admin). Unknown series are refused with the known ones."""
    rules = load_rules(file)
    with _client() as client:
        saved = [client.monitoring.save_rule(r) for r in rules]
    if as_json:
        print_json(saved)
        return
    for s in saved:
        console.print(f"Saved rule [bold]{s.rule.name}[/bold] on {s.rule.model}: {s.rule.expr}")


@alerts_app.command("list")
def list_rules(
    model: Annotated[str | None, typer.Option(help="Only this model's rules.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rules with their state."""
    with _client() as client:
        items = client.monitoring.list_rules(model)
    if as_json:
        print_json(items)
        return
    rows = [
        {
            "name": s.rule.name,
            "model": s.rule.model,
            "expr": s.rule.expr,
            "actions": ", ".join(a.type for a in s.rule.actions),
            "enabled": s.rule.enabled,
            "firing": "FIRING" if s.firing else "",
            "last fired": s.last_fired_at,
        }
        for s in items
    ]
    cols = ["name", "model", "expr", "actions", "enabled", "firing", "last fired"]
    print_table(rows, cols, "Rules")


@alerts_app.command("show")
def show(name: Annotated[str, typer.Argument(help="The rule.")], as_json: JsonOpt = False) -> None:
    """One rule and its last firings."""
    with _client() as client:
        state = client.monitoring.get_rule(name)
        events = client.monitoring.list_alert_events(name, limit=20)
    if as_json:
        print_json({"rule": state, "events": events})
        return
    firing = " FIRING" if state.firing else ""
    rule = state.rule
    console.print(f"[bold]{name}[/bold] on {rule.model}: {rule.expr} ({rule.cooldown_s} s){firing}")
    _events(events)


def _word(action: dict[str, Any]) -> str:
    from strata.monitoring.rules import outcome

    word = outcome(action)
    return word.upper() if word == "failed" else word


def _events(events: list[Any]) -> None:
    rows = [
        {
            "id": e.id,
            "rule": e.rule,
            "fired": e.fired_at,
            "value": e.value,
            "actions": ", ".join(f"{a['type']}={_word(a)}" for a in e.detail.get("actions", [])),
        }
        for e in events
    ]
    print_table(rows, ["id", "rule", "fired", "value", "actions"], "Firings")


@alerts_app.command("events")
def events(
    rule: Annotated[str | None, typer.Option(help="Only this rule's firings.")] = None,
    limit: Annotated[int, typer.Option(help="The latest firings to show.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Firings, newest first, with each action's result."""
    with _client() as client:
        items = client.monitoring.list_alert_events(rule, limit)
    if as_json:
        print_json(items)
        return
    _events(items)


@alerts_app.command("delete")
def delete(name: Annotated[str, typer.Argument(help="The rule.")]) -> None:
    """Delete a rule (its firings stay)."""
    with _client() as client:
        client.monitoring.delete_rule(name)
    console.print(f"Deleted rule {name}")


@alerts_app.command("evaluate")
def evaluate(
    as_json: JsonOpt = False,
    wait: Annotated[
        bool | None,
        typer.Option(
            "--wait/--no-wait",
            help="Wait for the retraining jobs a firing starts (default: wait when embedded, "
            "where this process runs them; a server runs them in the background).",
        ),
    ] = None,
) -> None:
    """Evaluate every rule now (the server also does it every STRATA_ALERT_INTERVAL s)."""
    with console.status("Evaluating rules (and running their actions)..."), _client() as client:
        fired = client.monitoring.evaluate_rules(
            wait=not client.is_remote if wait is None else wait
        )
    if as_json:
        print_json(fired)
        return
    if not fired:
        console.print("No rule fired.")
        return
    _events(fired)
