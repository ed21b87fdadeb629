"""CLI: ``strata predict stream MODEL_REF --from URI --to URI`` (registered on the
``predict`` group of :mod:`strata.serving.batch_cli`). Libraries load inside the command."""

from __future__ import annotations

import signal
import threading
import time
from typing import Annotated

import typer

from strata.core.console import console, err_console, print_json


def stream_command(
    model: Annotated[
        str,
        typer.Argument(
            help="NAME@ALIAS, NAME/VERSION, NAME (latest), runs:/RUN_ID/PATH or a model directory."
        ),
    ],
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="Input: kafka://HOST:PORT/TOPIC or redis://HOST:PORT/DB?stream=NAME.",
        ),
    ],
    sink: Annotated[str, typer.Option("--to", help="Output: a Kafka topic or Redis stream URI.")],
    group: Annotated[
        str | None,
        typer.Option(help="Input consumer group (default strata-predict-<model name>)."),
    ] = None,
    id_field: Annotated[str, typer.Option(help="JSON field holding each input's id.")] = "id",
    batch_size: Annotated[int, typer.Option(help="Most records per micro-batch.")] = 1000,
    batch_seconds: Annotated[
        float, typer.Option(help="Longest wait, in seconds, for a batch to fill.")
    ] = 1.0,
    max_batches: Annotated[int | None, typer.Option(help="Stop after this many batches.")] = None,
    stop_when_idle: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds without a record (default: never)."),
    ] = None,
    proba: Annotated[
        bool, typer.Option("--proba", help="Add class probabilities to each output.")
    ] = False,
    runtime: Annotated[str, typer.Option(help="native, onnx or onnx-int8.")] = "native",
    trusted: Annotated[
        bool, typer.Option("--trusted", help="Allow model formats that run code when loaded.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Score a stream as it arrives, in micro-batches, into another stream: one JSON output
    per input, keyed by its id. Input positions are committed only after the outputs are
    durable (at least once: after a crash some outputs may repeat, none is lost). SIGTERM
    stops after the batch in flight."""
    from strata.client import Client
    from strata.serving.stream import StreamResult, score_stream

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    try:
        with Client() as client, err_console.status("starting...") as status:

            def report(n: int, r: StreamResult) -> None:
                rate = r.records / max(time.monotonic() - started, 1e-6)
                status.update(
                    f"{r.batches:,} batches  {r.records:,} records ({rate:,.0f}/s)  "
                    f"{r.errors:,} errors"
                )

            result = score_stream(
                model,
                source,
                sink,
                client=client,
                stop=stop,
                on_batch=report,
                group=group,
                id_field=id_field,
                batch_size=batch_size,
                batch_seconds=batch_seconds,
                max_batches=max_batches,
                idle_seconds=stop_when_idle,
                proba=proba,
                runtime=runtime,
                trusted=trusted,
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    if json_out:
        print_json(result.model_dump(mode="json"))
        return
    console.print(
        f"Scored {result.records:,} records from {result.source} into {result.sink} "
        f"({result.batches} batches, {result.errors} errors; stopped: {result.stopped})",
        highlight=False,
    )
