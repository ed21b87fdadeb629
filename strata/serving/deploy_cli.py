"""CLI: ``strata deploy build MODEL_REF --out DIR`` (libraries load inside the command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strata.core.console import console, print_json
from strata.serving.batch_cli import ModelArg

deploy_app = typer.Typer(
    help="Package a model for deployment: a Docker build context and Kubernetes manifests.",
    no_args_is_help=True,
)


@deploy_app.command("build")
def build_command(
    ref: ModelArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory to write (must not exist or be empty).")
    ],
    image: Annotated[
        str | None,
        typer.Option(help="Image the Deployment runs (default strata-<model>:<version>)."),
    ] = None,
    base_image: Annotated[
        str | None, typer.Option(help="Base image (default python:<model's Python>-slim).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port the server listens on.")] = 8080,
    workers: Annotated[int, typer.Option(help="Server worker processes per pod.")] = 1,
    replicas: Annotated[int, typer.Option(help="Pods to start with (HPA minimum).")] = 2,
    max_replicas: Annotated[int, typer.Option(help="HPA maximum pods.")] = 10,
    cpu_target: Annotated[int, typer.Option(help="HPA target CPU utilisation (%).")] = 70,
    cpu_request: Annotated[str, typer.Option(help="CPU request per pod.")] = "500m",
    memory_request: Annotated[str, typer.Option(help="Memory request per pod.")] = "512Mi",
    cpu_limit: Annotated[str, typer.Option(help="CPU limit per pod.")] = "2",
    memory_limit: Annotated[str, typer.Option(help="Memory limit per pod.")] = "2Gi",
    namespace: Annotated[str | None, typer.Option(help="Namespace of the manifests.")] = None,
    fetch: Annotated[
        bool,
        typer.Option(
            "--fetch",
            help="Load the ref from a Strata server at start (follows its alias) instead of "
            "copying the pinned version into the image.",
        ),
    ] = False,
    server_uri: Annotated[
        str | None, typer.Option(help="With --fetch: the Strata server (STRATA_URI).")
    ] = None,
    wheel: Annotated[
        Path | None, typer.Option(help="A local strata-ml wheel to install in the image.")
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the files this command writes in a non-empty --out."),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write a Dockerfile (strata-ml with the extras the model needs, the model, `strata
    serve`) and Kubernetes manifests (ConfigMap, Deployment with /v2/health probes, Service,
    HorizontalPodAutoscaler) into --out."""
    from strata.client import Client
    from strata.serving.deploy import build

    with Client() as client:
        result = build(
            ref,
            out,
            client=client,
            image=image,
            base_image=base_image,
            port=port,
            workers=workers,
            replicas=replicas,
            max_replicas=max_replicas,
            cpu_target=cpu_target,
            cpu_request=cpu_request,
            memory_request=memory_request,
            cpu_limit=cpu_limit,
            memory_limit=memory_limit,
            namespace=namespace,
            fetch=fetch,
            server_uri=server_uri,
            wheel=wheel,
            force=force,
        )
    if json_out:
        print_json(
            {
                "out": str(result.out),
                "files": result.files,
                "app": result.app,
                "image": result.image,
                "model": result.model,
            }
        )
        return
    model = result.model
    what = f"{model['name']} v{model['version']}" if model["name"] else model["uri"]
    console.print(
        f"Wrote {len(result.files)} files for [bold]{what}[/bold] to {result.out}\n"
        f"  build   docker build -t {result.image} {result.out}\n"
        f"  deploy  kubectl apply -f {result.out / 'k8s'}\n"
        f"  auth    kubectl create secret generic {result.app}-auth "
        "--from-literal=STRATA_ADMIN_TOKEN=<token>",
        highlight=False,
    )
