"""CLI: ``strata predict batch`` (and the ``predict`` group ``stream`` joins). Libraries load
inside the commands, so ``strata --help`` stays fast. ``--json`` prints one JSON object on
stdout; the progress bar goes to stderr."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from strata.core.console import console, err_console, print_json

predict_app = typer.Typer(
    help="Score data with a model: a dataset version in batch, or a stream as it arrives.",
    no_args_is_help=True,
)

ModelArg = Annotated[
    str,
    typer.Argument(
        help="NAME@ALIAS, NAME/VERSION, NAME (latest), runs:/RUN_ID/PATH or a model directory."
    ),
]


@predict_app.command("batch")
def batch_command(
    model: ModelArg,
    input_ref: Annotated[
        str, typer.Option("--input", "-i", help="Dataset version: NAME or NAME@VERSION.")
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="Dataset to write into.")],
    chunk_rows: Annotated[
        int, typer.Option(help="Rows per chunk (the unit of work and of resuming).")
    ] = 50_000,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: the CPU count).")
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            help="local (spawned processes), ray or inline (default: ray when "
            "STRATA_EXECUTOR_URI starts with ray, else local from 2M rows, inline below)."
        ),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: ray.init's own).")
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="Input column to copy into the output (repeatable)."),
    ] = None,
    proba: Annotated[
        bool, typer.Option("--proba", help="Add probability_<label> columns (classifiers).")
    ] = False,
    runtime: Annotated[str, typer.Option(help="native, onnx or onnx-int8.")] = "native",
    threads: Annotated[
        int | None, typer.Option(help="Native threads per worker (default CPUs / workers).")
    ] = None,
    trusted: Annotated[
        bool, typer.Option("--trusted", help="Allow model formats that run code when loaded.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score every row of a dataset version into a new version of --output, in chunks across
    processes; rerun after a crash to finish only the chunks left. The output has `_row`
    (the input row's position), the --keep columns and `prediction` (+ probabilities), with
    lineage to the model version and the input version."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from strata.client import Client
    from strata.serving.batch import score_batch

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[done]}/{task.fields[rows]} rows  {task.fields[rate]} rows/s"),
        TimeElapsedColumn(),
    )
    started = time.monotonic()
    with (
        Client() as client,
        Progress(*columns, console=err_console, transient=True) as bar,
    ):
        task = bar.add_task(f"score {input_ref}", total=None, done="0", rows="?", rate="0")

        def report(done: int, total: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(
                task,
                completed=done,
                total=total,
                done=f"{done:,}",
                rows=f"{total:,}",
                rate=f"{done / elapsed:,.0f}",
            )

        result = score_batch(
            model,
            input_ref,
            output,
            client=client,
            progress=report,
            chunk_rows=chunk_rows,
            workers=workers,
            executor=executor,
            ray_address=ray_address,
            keep=keep or [],
            proba=proba,
            runtime=runtime,
            threads=threads,
            trusted=trusted,
        )
    if json_out:
        print_json(result.model_dump(mode="json"))
        return
    resumed = f", {result.resumed_chunks} resumed" if result.resumed_chunks else ""
    console.print(
        f"Scored {result.rows:,} rows of {result.input} with {model} into [bold]"
        f"{result.output}[/bold] ({result.chunks} chunks{resumed}; {result.executor} x"
        f"{result.workers}; {result.seconds:.1f} s, {result.rows_per_second:,.0f} rows/s)",
        highlight=False,
    )


def _add_stream() -> None:
    from strata.serving.stream_cli import stream_command

    predict_app.command("stream")(stream_command)


_add_stream()
