"""``strata serve``: the inference server (docs/serving.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strata.core.console import console


def serve_command(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            help="Models to serve: NAME@ALIAS (follows the alias), NAME/VERSION or "
            "runs:/RUN_ID/PATH.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="An endpoint YAML file (endpoints, batching, policies)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind; auth is mandatory off loopback.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="Worker processes; each loads every model.", min=1, max=64)
    ] = 1,
    threads: Annotated[
        int, typer.Option(help="Threads per predict (OpenMP/BLAS pools) per worker.", min=1)
    ] = 1,
    batching: Annotated[
        bool,
        typer.Option(
            "--batching/--no-batching",
            help="Adaptive batching for models given as arguments (on by default: requests "
            "gather only while the model is busy).",
        ),
    ] = True,
    no_prediction_log: Annotated[
        bool, typer.Option("--no-prediction-log", help="Do not record predictions.")
    ] = False,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Disable auth (loopback only).")
    ] = False,
) -> None:
    """Serve models over the Open Inference Protocol v2 (/v2), the MLflow scoring protocol
    (/invocations) and Strata JSON (/v1/models/NAME/predict), with /metrics."""
    from strata.core.config import load_settings
    from strata.core.errors import InvalidInput
    from strata.server.logs import configure_logging
    from strata.server.run import check_auth_binding
    from strata.server.serving import serve_models
    from strata.serving.models import ServeConfig, load_config

    if bool(models) == bool(config):
        raise InvalidInput(
            "Give the models to serve (e.g. strata serve flights@production) or --config "
            "FILE, not both",
            details={"field": "models"},
        )
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    check_auth_binding(host, not no_auth)
    if config is not None:
        serve_config = load_config(config)
    else:
        serve_config = ServeConfig.model_validate(
            {
                "endpoints": [
                    {"model": m, "batching": {"enabled": batching}} for m in models or []
                ],
                "threads": threads,
            }
        )
    if no_prediction_log:
        serve_config.prediction_log.enabled = False
    base = f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    def announce() -> None:
        names = ", ".join(ep.endpoint for ep in serve_config.endpoints)
        console.print(
            f"Strata inference server on [bold]{base}[/bold]  (auth {'off' if no_auth else 'on'}"
            f", {workers} worker(s))\n  models    {names}\n"
            f"  OIP v2    {base}/v2/models/NAME/infer\n  MLflow    {base}/invocations\n"
            f"  Strata    {base}/v1/models/NAME/predict\n  ready     {base}/v2/health/ready\n"
            f"  metrics   {base}/metrics",
            highlight=False,
        )

    serve_models(
        serve_config,
        settings,
        host=host,
        port=port,
        workers=workers,
        auth=not no_auth,
        on_started=announce,
    )
