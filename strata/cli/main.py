"""The ``strata`` command: assembles every layer's commands."""

from __future__ import annotations

import gc as pygc
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from strata.cli.helpfmt import conventional_help
from strata.cli.lazy import lazy_command
from strata.cli.serve import serve_command
from strata.core.console import console, print_error, print_json, strata_command
from strata.core.errors import StrataError
from strata.data.cli import data_app
from strata.features.cli import features_app
from strata.governance.cli import audit_app, connections_app, tokens_app, users_app
from strata.models.cli import models_app
from strata.monitoring.cli import monitor_app
from strata.registry.cli import add_registry_commands
from strata.serving.batch_cli import predict_app
from strata.serving.cli import serving_app
from strata.serving.deploy_cli import deploy_app
from strata.tracking.cli import experiments_app, runs_app
from strata.training.cli import (
    automl_command,
    evaluate_command,
    reproduce_command,
    train_command,
    tune_command,
)

if TYPE_CHECKING:
    from strata.core.staging import Swept

conventional_help()
app = typer.Typer(
    name="strata",
    help="Strata: the whole ML lifecycle in one package. Embedded by default (STRATA_HOME); "
    "set STRATA_URI and STRATA_TOKEN to work against a server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show the effective configuration.")
db_app = typer.Typer(help="Metadata database migrations.")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(audit_app, name="audit")
app.add_typer(connections_app, name="connections")
app.add_typer(experiments_app, name="experiments")
app.add_typer(runs_app, name="runs")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
add_registry_commands(models_app)  # the registry's verbs join the same group
app.add_typer(models_app, name="models")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("tune")(tune_command)
app.command("automl")(automl_command)
runs_app.command("reproduce")(reproduce_command)
app.add_typer(deploy_app, name="deploy")
app.add_typer(monitor_app, name="monitor")
app.command("serve")(serve_command)
app.add_typer(serving_app, name="serving")
app.add_typer(predict_app, name="predict")


def _version(value: bool) -> None:
    if value:
        from strata import __version__

        typer.echo(f"strata {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Strata: the whole ML lifecycle in one package. Embedded by default (STRATA_HOME); set
    STRATA_URI and STRATA_TOKEN to work against a server."""


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Address to bind; auth is mandatory off loopback.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Disable auth (loopback only).")
    ] = False,
    serve_file: Annotated[
        Path | None,
        typer.Option(
            "--serve",
            help="An endpoint YAML file: also serve these models (as `strata serve`).",
        ),
    ] = None,
) -> None:
    """Serve the web UI (/) and the REST API (docs at /docs, /healthz, /readyz, /metrics)."""
    from strata.backends.context import Backends
    from strata.core.config import load_settings
    from strata.core.staging import sweep
    from strata.governance.embedded import EmbeddedGovernance
    from strata.server.logs import configure_logging
    from strata.server.run import check_auth_binding, serve

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    check_auth_binding(host, not no_auth)
    if serve_file is not None:
        import os

        from strata.server.serving import CONFIG_ENV, pin_threads
        from strata.serving.models import load_config

        endpoints = load_config(serve_file)
        pin_threads(endpoints.threads)
        os.environ[CONFIG_ENV] = endpoints.model_dump_json()
    backends = Backends(settings)
    with console.status("Migrating the metadata database..."):
        backends.db.upgrade()
    _report_sweep(sweep(settings.home / "tmp"))
    if not no_auth:
        secret = settings.admin_token.get_secret_value() if settings.admin_token else None
        governance = EmbeddedGovernance(backends)
        new = governance.bootstrap_admin(secret=secret)
        if new is not None:
            console.print("[bold]First start:[/bold] created user 'admin' (role admin).")
            if secret is None:
                console.print("Its API token, shown only now:", highlight=False)
                typer.echo(new.secret)
        else:
            users = governance.list_users()
            admins = [u.name for u in users if u.role.value == "admin" and not u.disabled]
            name = "admin" if "admin" in admins or not admins else admins[0]
            console.print(
                f"An admin exists already. A new API token: [bold]{strata_command()} tokens "
                f"create --user {name}[/bold] (with this server's STRATA_HOME/STRATA_DB_URI).",
                highlight=False,
            )
    backends.close()
    base = f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    def announce() -> None:
        console.print(
            f"Strata serving on [bold]{base}[/bold]  (auth {'off' if no_auth else 'on'})\n"
            f"  web UI    {base}/\n"
            f"  API docs  {base}/docs\n  health    {base}/healthz\n  ready     {base}/readyz\n"
            f"  metrics   {base}/metrics",
            highlight=False,
        )

    serve(settings, host=host, port=port, workers=workers, auth=not no_auth, on_started=announce)


def _report_sweep(swept: Swept) -> None:
    if swept.names:
        console.print(
            f"Removed {len(swept.names)} staging area(s) left by killed processes "
            f"({swept.bytes / 1e6:,.1f} MB): {', '.join(swept.names)}",
            highlight=False,
        )


@app.command()
def gc(
    scoring_days: Annotated[
        float,
        typer.Option(
            "--scoring-days",
            min=0,
            help="Also remove batch scoring jobs left unfinished (killed, never rerun) that "
            "nothing was written to for this many days; 0 removes every one not running. "
            "A rerun of such a job would have resumed from its finished chunks.",
        ),
    ] = 7,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Remove staging areas under STRATA_HOME/tmp left by ingests and uploads whose process
    died (killed, crashed), and unfinished batch scoring jobs under STRATA_HOME/scoring older
    than --scoring-days. What running processes use is kept. Staging areas are also swept on
    server start."""
    from strata.core.config import load_settings
    from strata.core.staging import sweep
    from strata.serving.batch import sweep_abandoned

    home = load_settings().home
    swept = sweep(home / "tmp")
    jobs = sweep_abandoned(home / "scoring", scoring_days * 86400)
    if json_out:
        print_json(
            {
                "removed": swept.names,
                "bytes": swept.bytes,
                "scoring_jobs": {"removed": jobs.names, "bytes": jobs.bytes},
            }
        )
        return
    _report_sweep(swept)
    if jobs.names:
        console.print(
            f"Removed {len(jobs.names)} unfinished batch scoring job(s) untouched for "
            f"{scoring_days:g} day(s) or more ({jobs.bytes / 1e6:,.1f} MB): "
            f"{', '.join(jobs.names)}",
            highlight=False,
        )
    if not swept.names and not jobs.names:
        console.print(
            "Nothing to remove: no staging areas of dead processes, no unfinished scoring "
            f"jobs older than {scoring_days:g} day(s)."
        )


@config_app.command("show")
def config_show(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the effective settings (secrets and URI passwords masked)."""
    from strata.core.config import config_file_path, load_settings

    settings = load_settings()
    data = settings.masked()
    source = config_file_path()
    if json_out:
        print_json(data | {"config_file": str(source) if source else None})
        return
    from rich.table import Table

    table = Table(title="Strata settings", header_style="bold")
    table.add_column("setting")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key, "" if value is None else str(value))
    console.print(table)
    console.print(f"[dim]config file: {source or 'none'}; environment prefix STRATA_[/dim]")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations to the metadata database."""
    from strata.backends.db import Database
    from strata.core.config import load_settings

    db = Database(load_settings().db_uri)
    before = db.current()
    head = db.upgrade()
    console.print(f"Database at revision {head} (was {before or 'empty'}).")


@db_app.command("current")
def db_current(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the database's migration revision and the newest one known."""
    from strata.backends.db import Database
    from strata.core.config import load_settings

    db = Database(load_settings().db_uri)
    current, head = db.current(), db.head()
    if json_out:
        print_json({"current": current, "head": head, "up_to_date": current == head})
        return
    state = "up to date" if current == head else "needs `strata db upgrade`"
    console.print(f"current: {current or 'none'}\nhead:    {head}\n({state})")


def main() -> None:
    """Console entry point: errors are printed for a person, never as a traceback."""
    try:
        lazy_command(app)()
    except StrataError as exc:
        print_error(exc.message)
        sys.exit(2 if exc.http_status in (400, 413) else 1)
    except KeyboardInterrupt:
        print_error("Interrupted.")
        sys.exit(130)
    finally:
        # The process is about to exit: spare the interpreter's last garbage collections a
        # walk over every object the imports made (~0.1 s of CPU per command, about a fifth
        # of `strata data list`). Memory goes back to the OS with the process either way.
        pygc.freeze()


if __name__ == "__main__":
    main()
