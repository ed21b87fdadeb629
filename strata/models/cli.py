"""CLI: ``strata models inspect|verify|predict|export-onnx|import-mlflow|export-mlflow`` (one
group; the registry adds its verbs here). A URI is a model directory or ``runs:/RUN_ID/PATH``
(through ``strata.Client()``: remote when ``STRATA_URI`` is set). Libraries load inside the
commands, so ``strata --help`` stays fast."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from strata.core.console import console, print_json, print_table
from strata.core.errors import InvalidInput

if TYPE_CHECKING:
    from strata.models.model import Model

models_app = typer.Typer(
    help="Inspect, verify and run saved models; move them to and from MLflow.",
    no_args_is_help=True,
)

UriArg = Annotated[str, typer.Argument(help="A model directory or runs:/RUN_ID/PATH.")]
TrustedOpt = Annotated[
    bool,
    typer.Option(
        "--trusted", help="Allow formats that run code when loaded (pickle, foreign types)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@contextmanager
def _loaded(uri: str, trusted: bool) -> Iterator[Model]:
    import strata.models as sm
    from strata.client import Client

    with Client() as client:
        yield sm.load(uri, trusted=trusted, tracking=client.tracking)


@models_app.command("inspect")
def inspect(uri: UriArg, trusted: TrustedOpt = False, as_json: JsonOpt = False) -> None:
    """Show a model's flavors, signature, requirements and file digests (verified)."""
    with _loaded(uri, trusted) as model:
        spec = model.spec
        if as_json:
            print_json(spec.model_dump(mode="json"))
            return
        console.print(
            f"[bold]{model.path}[/bold]  format {spec.format_version}, flavors "
            f"{', '.join(spec.flavors)}, python {spec.python_version}, run {spec.run_id or '-'}"
        )
        if spec.signature is not None:
            print_table(
                [
                    {"side": side, "name": s.name, "dtype": s.dtype, "shape": s.shape or ""}
                    for side, specs in (
                        ("input", spec.signature.inputs),
                        ("output", spec.signature.outputs),
                    )
                    for s in specs
                ],
                ["side", "name", "dtype", "shape"],
                title="signature",
            )
            if spec.signature.labels is not None:
                console.print(f"labels: {spec.signature.labels}")
        console.print("requirements: " + ", ".join(spec.requirements))
        if spec.onnx_parity is not None:
            _print_parity(spec.onnx_parity)
        print_table(
            [{"file": f, "size": d.size, "sha256": d.sha256} for f, d in spec.files.items()],
            ["file", "size", "sha256"],
            title="files",
        )


@models_app.command("verify")
def verify(uri: UriArg, trusted: TrustedOpt = False) -> None:
    """Check every file against its digest and load the model; exit 1 if anything is wrong."""
    with _loaded(uri, trusted) as model:
        console.print(f"ok: {len(model.spec.files)} files verified, {model.flavor} model loads")


def _read(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".json", ".jsonl"):
        return pd.read_json(path, lines=suffix == ".jsonl")
    raise InvalidInput(
        f"Cannot read {path.name}: predict reads .csv, .parquet, .json or .jsonl files",
        details={"field": "input"},
    )


@models_app.command("predict")
def predict(
    uri: UriArg,
    input_path: Annotated[Path, typer.Option("--input", "-i", help="CSV, Parquet or JSON rows.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write .csv, .parquet or .json (default: stdout JSON)."
        ),
    ] = None,
    drop_unknown: Annotated[
        bool, typer.Option("--drop-unknown", help="Ignore columns the signature does not name.")
    ] = False,
    trusted: TrustedOpt = False,
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime", help="native (the model's flavor), onnx or onnx-int8 (its ONNX export)."
        ),
    ] = "native",
) -> None:
    """Predict every row of a file; classifiers also get one probability column per label."""

    from strata.models.model import RUNTIMES

    if runtime not in RUNTIMES:
        raise InvalidInput(
            f"Unknown --runtime {runtime!r}; expected one of: {', '.join(RUNTIMES)}",
            details={"field": "runtime"},
        )
    rt: Any = runtime
    if not input_path.is_file():
        raise InvalidInput(f"No input file {input_path}", details={"field": "input"})
    frame = _read(input_path)
    with _loaded(uri, trusted) as model:
        on_unknown: Literal["error", "drop"] = "drop" if drop_unknown else "error"
        predicted = model.predict(frame, on_unknown=on_unknown, runtime=rt)
        csv = output is not None and output.suffix.lower() == ".csv"
        out = _predictions(predicted, csv)
        if model.labels is not None:
            proba = model.predict_proba(frame, on_unknown=on_unknown, runtime=rt)
            for i, label in enumerate(model.labels):
                out[f"probability_{label}"] = proba[:, i]
    if output is None:
        print_json(out.to_dict("records"))
        return
    suffix = output.suffix.lower()
    if suffix == ".csv":
        out.to_csv(output, index=False)
    elif suffix == ".parquet":
        out.to_parquet(output, index=False)
    elif suffix == ".json":
        out.to_json(output, orient="records")
    else:
        raise InvalidInput(
            f"Cannot write {output.name}: use .csv, .parquet or .json", details={"field": "output"}
        )
    console.print(f"{len(out):,} predictions written to {output}")


def _predictions(predicted: Any, csv: bool) -> Any:
    """The ``prediction`` column; a model predicting a vector per row (embeddings, several
    outputs) gets one list per row, or ``prediction_0``... columns in a CSV (no lists)."""
    import numpy as np
    import pandas as pd

    values = np.asarray(predicted)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim == 1:
        return pd.DataFrame({"prediction": values})
    flat = values.reshape(len(values), -1)
    if csv:
        return pd.DataFrame(flat, columns=[f"prediction_{i}" for i in range(flat.shape[1])])
    return pd.DataFrame({"prediction": list(flat)})


def _print_parity(parity: Any) -> None:
    rows = [
        {
            "graph": "onnx",
            "rows": parity.rows,
            "max_abs_diff": f"{parity.max_abs_diff:.3g}",
            "label_agreement": ""
            if parity.label_agreement is None
            else f"{parity.label_agreement:.4%}",
            "note": f"tolerance {parity.tolerance:g}"
            + (f", on {parity.dataset_version}" if parity.dataset_version else ""),
        }
    ]
    q = parity.quantized
    if q is not None:
        delta = "" if q.metric is None else f"{q.metric} delta {q.metric_delta:+.4g}"
        rows.append(
            {
                "graph": "onnx-int8",
                "rows": q.rows,
                "max_abs_diff": f"{q.max_abs_diff:.3g}",
                "label_agreement": "" if q.label_agreement is None else f"{q.label_agreement:.4%}",
                "note": f"{q.quantized_nodes} quantized nodes" + (f", {delta}" if delta else ""),
            }
        )
    print_table(
        rows, ["graph", "rows", "max_abs_diff", "label_agreement", "note"], title="ONNX parity"
    )


@models_app.command("export-onnx")
def export_onnx(
    uri: UriArg,
    data: Annotated[
        str | None,
        typer.Option("--data", help="Also check parity on a dataset version (NAME@VERSION)."),
    ] = None,
    quantize: Annotated[
        bool, typer.Option("--quantize", help="Also write a dynamic INT8 graph (onnx-int8).")
    ] = False,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance", help="Largest |onnx - native| / max(1, |native|) accepted per output."
        ),
    ] = 1e-4,
    min_agreement: Annotated[
        float, typer.Option("--min-agreement", help="Smallest share of equal labels accepted.")
    ] = 0.999,
    target: Annotated[
        str | None,
        typer.Option("--target", help="The truth column of --data (quantized accuracy delta)."),
    ] = None,
    trusted: TrustedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert a model to ONNX (stored as its onnx flavor) after a parity check; refused,
    and the model left unchanged, when parity misses the tolerance."""
    import strata.models as sm
    from strata.client import Client

    with Client() as client, console.status("converting to ONNX and checking parity"):
        spec = sm.export_onnx(
            uri,
            data=data,
            quantize=quantize,
            tolerance=tolerance,
            min_agreement=min_agreement,
            target=target,
            trusted=trusted,
            tracking=client.tracking,
            data_service=client.data if data is not None else None,
        )
    assert spec.onnx_parity is not None
    if as_json:
        print_json(
            {
                "flavor": spec.flavors["onnx"].model_dump(mode="json"),
                "onnx_parity": spec.onnx_parity.model_dump(mode="json"),
            }
        )
        return
    console.print(f"ONNX export added to {uri} (flavors: {', '.join(spec.flavors)})")
    _print_parity(spec.onnx_parity)


@models_app.command("import-mlflow")
def import_mlflow(
    path: Annotated[Path, typer.Argument(help="An MLflow model directory (with MLmodel).")],
    dest: Annotated[Path, typer.Argument(help="Where to write the Strata model.")],
    trusted: TrustedOpt = False,
) -> None:
    """Convert an MLflow sklearn, lightgbm or xgboost model to the Strata format."""
    import strata.models as sm

    spec = sm.import_mlflow(path, dest, trusted=trusted)
    console.print(f"imported {spec.flavor} model to {dest}")


@models_app.command("export-mlflow")
def export_mlflow(
    uri: UriArg,
    dest: Annotated[Path, typer.Argument(help="Where to write the MLflow model.")],
    trusted: TrustedOpt = False,
) -> None:
    """Write a Strata model as an MLflow model directory that mlflow.pyfunc loads."""
    import strata.models as sm
    from strata.client import Client

    with Client() as client:
        from strata.models.tracked import release, resolve

        local = resolve(uri, client.tracking)
        try:
            sm.export_mlflow(local, dest, trusted=trusted)
        finally:
            release(local)
    console.print(f"exported to {dest}")
