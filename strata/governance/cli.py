"""CLI: ``strata users|tokens|audit|connections ...`` (built on the SDK, embedded or remote)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from strata.core.console import console, print_error, print_json, print_table
from strata.core.principal import PREDICT_SCOPE

if TYPE_CHECKING:
    from strata.governance.service import GovernanceService

users_app = typer.Typer(help="Manage users and their roles (viewer, editor, approver, admin).")
tokens_app = typer.Typer(help="Create, list and revoke API tokens.")
audit_app = typer.Typer(help="Read and verify the hash-chained audit log.")
connections_app = typer.Typer(
    help="Register the SQL databases a server may ingest from (admin; URLs stored encrypted)."
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _governance() -> GovernanceService:
    """``strata.Client().governance``, imported when a command runs (fast `strata --help`)."""
    from strata.client import Client

    return Client().governance


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, . _ @ -).")],
    role: Annotated[str, typer.Option(help="viewer, editor, approver or admin.")] = "viewer",
    json_out: JsonOpt = False,
) -> None:
    """Create a user with a role."""
    user = _governance().create_user(name, role)
    if json_out:
        print_json(user)
    else:
        console.print(f"Created user [bold]{user.name}[/bold] with role {user.role.value}.")


@users_app.command("list")
def users_list(json_out: JsonOpt = False) -> None:
    """List users."""
    users = _governance().list_users()
    if json_out:
        print_json(users)
        return
    print_table(
        (u.model_dump() | {"role": u.role.value} for u in users),
        ["name", "role", "disabled", "created_at", "created_by"],
        title="Users",
    )


@users_app.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="User to disable; its tokens stop working.")],
    json_out: JsonOpt = False,
) -> None:
    """Disable a user (its tokens stop working at once)."""
    user = _governance().disable_user(name)
    if json_out:
        print_json(user)
    else:
        console.print(f"Disabled user [bold]{user.name}[/bold].")


@users_app.command("enable")
def users_enable(
    name: Annotated[str, typer.Argument(help="User to enable; its live tokens work again.")],
    json_out: JsonOpt = False,
) -> None:
    """Enable a disabled user again."""
    user = _governance().update_user(name, disabled=False)
    if json_out:
        print_json(user)
    else:
        console.print(f"Enabled user [bold]{user.name}[/bold].")


@users_app.command("set-role")
def users_set_role(
    name: Annotated[str, typer.Argument(help="User whose role changes.")],
    role: Annotated[str, typer.Argument(help="viewer, editor, approver or admin.")],
    json_out: JsonOpt = False,
) -> None:
    """Change a user's role."""
    user = _governance().update_user(name, role=role)
    if json_out:
        print_json(user)
    else:
        console.print(f"User [bold]{user.name}[/bold] now has role {user.role.value}.")


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Option("--user", help="Owner of the token.")],
    name: Annotated[str, typer.Option(help="A label to recognise the token by.")] = "",
    expires_in_days: Annotated[
        float | None, typer.Option("--expires-in-days", help="Expiry; none by default.")
    ] = None,
    predict_only: Annotated[
        bool,
        typer.Option(
            "--predict-only",
            help="A service token: it may only call models on inference servers (strata "
            "serve), whatever the user's role. For an application that calls a model.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create an API token and print it once; only its digest is stored."""
    new = _governance().create_token(
        user,
        name=name,
        expires_in_days=expires_in_days,
        scope=PREDICT_SCOPE if predict_only else None,
    )
    if json_out:
        print_json(new)
        return
    typer.echo(new.secret)
    what = "A service token (it may only predict)" if new.info.scope else "Token"
    note = f"{what} {new.info.id} for {new.info.user}. It is shown only now; store it."
    typer.echo(note, err=True)


@tokens_app.command("list")
def tokens_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's tokens.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List tokens (never their secrets)."""
    tokens = _governance().list_tokens(user)
    if json_out:
        print_json(tokens)
        return
    print_table(
        (t.model_dump() | {"active": t.active, "scope": t.scope or "role"} for t in tokens),
        [
            "id",
            "user",
            "name",
            "prefix",
            "scope",
            "created_at",
            "expires_at",
            "revoked_at",
            "active",
        ],
        title="Tokens",
    )


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="Id of the token (see `strata tokens list`).")],
    json_out: JsonOpt = False,
) -> None:
    """Revoke a token by id (see `strata tokens list`)."""
    info = _governance().revoke_token(token_id)
    if json_out:
        print_json(info)
    else:
        console.print(f"Revoked token {info.id} of {info.user}.")


@audit_app.command("list")
def audit_list(
    actor: Annotated[str | None, typer.Option(help="Only records by this user.")] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action, e.g. user.create or 'run.*'.")
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Only records at or after this time (UTC).")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Only records at or before this time (UTC).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many records.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """List audit records, oldest first."""
    from datetime import UTC

    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    records = (
        _governance()
        .list_audit(actor=actor, action=action, since=since, until=until, limit=limit)
        .items
    )
    if json_out:
        print_json(records)
        return
    print_table(
        (r.model_dump() for r in records),
        ["seq", "ts", "actor", "action", "resource_type", "resource_id", "outcome", "request_id"],
        title="Audit records",
    )


@audit_app.command("checkpoint")
def audit_checkpoint(json_out: JsonOpt = False) -> None:
    """Sign the audit chain's head into the artifact store (verify checks against it)."""
    done = _governance().checkpoint_audit()
    if json_out:
        print_json(None if done is None else done.model_dump())
    elif done is None:
        console.print("The audit log is empty: nothing to checkpoint.")
    else:
        console.print(f"Checkpoint at record {done.seq} written ({done.path}).")


@audit_app.command("rotate-key")
def audit_rotate_key(json_out: JsonOpt = False) -> None:
    """Hand the audit chain over to a fresh key (on the server's machine, server stopped).

    Appends a record naming the new key's id, signed by the old key; installs the new key in
    STRATA_HOME/audit.key and keeps the old one in STRATA_HOME/audit-keys/ so `strata audit
    verify` still checks the older records; then writes a checkpoint signed by the new key.
    """
    from strata.governance import audit
    from strata.governance.embedded import EmbeddedGovernance

    gov = _governance()
    if not isinstance(gov, EmbeddedGovernance):
        print_error(
            "Rotating the audit key needs the server's STRATA_HOME: run it on the server's "
            "machine without STRATA_URI (the server stopped)"
        )
        raise typer.Exit(2)
    done = audit.rotate_key(gov.db)
    if json_out:
        print_json(done)
        return
    console.print(
        f"Audit key rotated at record {done['seq']}: key {done['previous_key_id']} → "
        f"{done['key_id']} (the old key is kept in audit-keys/ for verifying older records)."
    )


@audit_app.command("rebuild-keys")
def audit_rebuild_keys(json_out: JsonOpt = False) -> None:
    """Copy the audit records' lookup keys again from the records (admin).

    The repair for what `strata audit verify` reports about the keys table (gov_audit_keys),
    which filtered listings read and the hash chain does not cover. The records and their
    chain are not touched; the rebuild is itself audited.
    """
    done = _governance().rebuild_audit_keys()
    if json_out:
        print_json(done)
        return
    from strata.governance.audit_keys import KEYS_EVERY

    if done.copied_through_seq == 0:
        console.print(
            f"Audit lookup keys rebuilt: none to copy yet (keys are copied every {KEYS_EVERY} "
            "records; listings read the newer records themselves)."
        )
    else:
        console.print(
            f"Audit lookup keys rebuilt: records 1-{done.copied_through_seq} copied again from "
            f"the records ({done.keys_copied} keys); listings read the newer records themselves "
            f"until the next copy, every {KEYS_EVERY} records."
        )


@audit_app.command("verify")
def audit_verify(json_out: JsonOpt = False) -> None:
    """Check the audit hash chain; exit 1 naming the first broken record if any."""
    result = _governance().verify_audit()
    if json_out:
        print_json(result)
    elif result.ok:
        console.print(f"[green]Audit chain intact[/green]: {result.checked} records verified.")
        if result.reason:
            console.print(f"Note: {result.reason}")
    else:
        print_error(
            f"Audit chain broken at record {result.first_broken_seq}: {result.reason}",
            f"{result.checked} records before it verified.",
        )
    if not result.ok:
        raise typer.Exit(1)


@connections_app.command("add")
def connections_add(
    name: Annotated[str, typer.Argument(help="Name that ingestion refers to.")],
    url: Annotated[
        str, typer.Argument(help="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db.")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Register a SQL connection (the password is stored encrypted and never shown)."""
    made = _governance().create_connection(name, url)
    if json_out:
        print_json(made)
    else:
        console.print(f"Registered connection {made.name} ({made.url}).")


@connections_app.command("list")
def connections_list(json_out: JsonOpt = False) -> None:
    """List registered connections (URLs with passwords masked)."""
    found = _governance().list_connections()
    if json_out:
        print_json(found)
        return
    print_table(
        (c.model_dump() for c in found),
        ["name", "driver", "url", "created_by", "created_at"],
        title="Connections",
    )


@connections_app.command("remove")
def connections_remove(
    name: Annotated[str, typer.Argument(help="Connection to remove.")],
) -> None:
    """Remove a registered connection."""
    _governance().delete_connection(name)
    console.print(f"Removed connection {name}.")
