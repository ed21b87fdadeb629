"""``export_onnx``: add an ONNX flavor to a saved model, proven by a parity check.

The converters are the field's own: skl2onnx for scikit-learn, onnxmltools for LightGBM and
XGBoost, ``torch.onnx`` for PyTorch. The graph is run on ONNX Runtime against the model's
own flavor on the input example and, when given, on rows of a dataset version; the largest
difference of the compared outputs (probabilities for a classifier, values otherwise) and
the share of equal labels are recorded as ``onnx_parity`` in ``strata-model.yaml``. An
export whose outputs miss the tolerance is refused and the model is left untouched.

The model directory is rebuilt beside itself with the new files and digests and swapped in
by two renames; a failed export removes the copy. For ``runs:/`` models the new files are
uploaded to the run's artifacts with ``strata-model.yaml`` last.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strata.core.errors import Conflict, InvalidInput, NotFound, StrataError
from strata.models.flavors.base import Predictor, dist_version, require
from strata.models.flavors.onnx import FILE, QUANTIZED_FILE, OnnxPredictor, onnx_version
from strata.models.model import Model, to_flavor_input
from strata.models.models import (
    SPEC_FILE,
    FlavorSpec,
    ModelSpec,
    OnnxParity,
    QuantizedParity,
    Signature,
)
from strata.models.signature import Columns, enforce
from strata.models.store import digest_files, write_spec
from strata.models.store import load as load_path
from strata.models.tracked import release, resolve

DEFAULT_TOLERANCE = 1e-4
DEFAULT_MIN_AGREEMENT = 0.999
DEFAULT_MAX_ROWS = 100_000
OPSET = 17
TREE_OPSET = 15  # the highest onnxmltools converts to

_QUANTIZABLE = frozenset({"MatMul", "Gemm", "Conv", "Attention", "LSTM", "GRU"})
_CONVERTERS = (
    "scikit-learn (skl2onnx), LightGBM and XGBoost (onnxmltools), PyTorch and "
    "sentence-transformers (torch.onnx)"
)


@dataclass
class _Graph:
    proto: Any  # onnx.ModelProto
    options: dict[str, Any]


def export_onnx(
    uri: str | os.PathLike[str],
    *,
    data: str | None = None,
    quantize: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    max_rows: int = DEFAULT_MAX_ROWS,
    target: str | None = None,
    trusted: bool = False,
    tracking: Any = None,
    data_service: Any = None,
) -> ModelSpec:
    """Convert the model at ``uri`` to ONNX and store it as its ``onnx`` flavor.

    Parity runs on the input example and, with ``data`` (a dataset version reference such
    as ``flights@v3``), on its first ``max_rows`` rows. An output passes when
    ``|onnx - native| <= tolerance * max(1, |native|)`` for every row and the labels agree
    on at least ``min_agreement`` of the rows. ``quantize=True`` also writes a dynamically
    INT8-quantized graph and records how much it moves the outputs (with ``target``, a
    column of ``data`` holding the truth: the accuracy, or mean absolute error, delta).

    Raises InvalidInput (no signature, no rows to check, a flavor or estimator the
    converters do not cover, a graph with nothing to quantize), Conflict (parity missed:
    the message gives the figures) and the errors of ``load``; on any error the model is
    unchanged. Returns the new spec.
    """
    if not 0 < tolerance < 1:
        raise InvalidInput(
            f"tolerance must be between 0 and 1, got {tolerance}", details={"field": "tolerance"}
        )
    if not 0 <= min_agreement <= 1:
        raise InvalidInput(
            f"min_agreement must be between 0 and 1, got {min_agreement}",
            details={"field": "min_agreement"},
        )
    if max_rows < 1:
        raise InvalidInput(
            f"max_rows must be positive, got {max_rows}", details={"field": "max_rows"}
        )
    if target is not None and data is None:
        raise InvalidInput(
            "target names a column of the data: pass data= too", details={"field": "target"}
        )
    text = os.fspath(uri)
    directory = resolve(text, tracking)
    try:
        return _export(
            text,
            directory,
            data,
            quantize,
            tolerance,
            min_agreement,
            max_rows,
            target,
            trusted,
            tracking,
            data_service,
        )
    finally:
        release(directory)  # a runs:/ download, once uploaded back


def _export(
    text: str,
    directory: Path,
    data: str | None,
    quantize: bool,
    tolerance: float,
    min_agreement: float,
    max_rows: int,
    target: str | None,
    trusted: bool,
    tracking: Any,
    data_service: Any,
) -> ModelSpec:
    model = load_path(directory, trusted=trusted)
    spec = model.spec
    if spec.signature is None:
        raise InvalidInput(
            f"The model at {text} has no signature (it was saved without an input example); "
            f"ONNX needs the input columns and their types: save it again with input_example=",
            details={"field": "signature"},
        )
    native = model.predictor
    rows = _parity_rows(model, data, target, max_rows, data_service, tracking)
    graph = _convert(model.flavor, native, spec.signature, directory, spec)
    graph.options["classes"] = spec.signature.labels
    work = directory.parent / f".{directory.name}.onnx-{uuid.uuid4().hex}"
    try:
        shutil.copytree(directory, work, ignore=_old_onnx(spec))
        _save_proto(graph.proto, work / FILE)
        onnx_rt = OnnxPredictor(work / FILE, graph.options, spec.signature.labels)
        parity = _parity(native, onnx_rt, spec.signature, rows, tolerance, min_agreement, data)
        if quantize:
            parity.quantized = _quantize(work, native, graph, spec.signature, rows)
            graph.options["quantized"] = QUANTIZED_FILE
        flavors = {k: v for k, v in spec.flavors.items() if k != "onnx"}
        flavors["onnx"] = FlavorSpec(
            path=FILE, serialization="onnx", library_version=onnx_version(), options=graph.options
        )
        runtime_packages = ("onnx", "onnxruntime", "tokenizers")  # tokenizers: text feeds
        needed = runtime_packages if graph.options.get("feed") == "text" else runtime_packages[:2]
        pins = [f"{p}=={v}" for p in needed if (v := dist_version(p)) is not None]
        new = spec.model_copy(
            update={
                "flavors": flavors,
                "requirements": [
                    *(r for r in spec.requirements if r.split("==")[0] not in runtime_packages),
                    *pins,
                ],
                "files": digest_files(work),
                "onnx_parity": parity,
            }
        )
        write_spec(work, new)
        _swap(work, directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if text.startswith("runs:/"):
        _upload(text, directory, spec, new, tracking)
    return new


def _old_onnx(spec: ModelSpec) -> Any:
    old = spec.flavors.get("onnx")
    names = set() if old is None else {old.path, str(old.options.get("quantized") or "")}
    return lambda _dir, entries: [e for e in entries if e in names]


def _swap(work: Path, directory: Path) -> None:
    backup = directory.parent / f".{directory.name}.replaced-{uuid.uuid4().hex}"
    os.rename(directory, backup)
    try:
        os.rename(work, directory)
    except BaseException:
        os.rename(backup, directory)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _upload(uri: str, directory: Path, old: ModelSpec, spec: ModelSpec, tracking: Any) -> None:
    """The new ONNX files, then the yaml, into the run's artifacts and into the artifact
    root of each MLflow LoggedModel recorded for this ``runs:/`` URI (what
    ``mlflow.search_logged_models`` / ``download_artifacts`` hand out); then the files of an
    earlier export the new yaml no longer lists (an INT8 graph not made again) are deleted.
    A reader meanwhile sees the old yaml and refuses the unlisted file (or, after the yaml,
    the stale one) rather than loading a mix: it can retry."""
    from strata.models.runs import logged_models

    if tracking is None:
        from strata.tracking.fluent_services import default_tracking

        tracking = default_tracking()
    run_id, _, path = uri.removeprefix("runs:/").partition("/")
    path = path.strip("/")
    names = [n for n in _onnx_files(spec) if n]
    stale = [n for n in _onnx_files(old) if n and n not in spec.files]
    targets: list[tuple[Any, Any]] = [
        (
            lambda rel, fh: tracking.log_artifact_stream(run_id, f"{path}/{rel}", fh),
            lambda rel: tracking.delete_artifact(run_id, f"{path}/{rel}"),
        )
    ]
    for logged in logged_models(tracking, run_id):
        if logged.model_uri.rstrip("/") != f"runs:/{run_id}/{path}":
            continue
        model_id = logged.model_id
        targets.append(
            (
                lambda rel, fh, m=model_id: tracking.log_model_artifact_stream(m, rel, fh),
                lambda rel, m=model_id: tracking.delete_model_artifact(m, rel),
            )
        )
    for put, delete in targets:
        for name in [*names, SPEC_FILE]:
            with (directory / name).open("rb") as fh:
                put(name, fh)
        for name in stale:
            try:
                delete(name)
            except NotFound:  # a copy an older Strata never refreshed: nothing to remove
                continue


def _onnx_files(spec: ModelSpec) -> list[str]:
    flavor = spec.flavors.get("onnx")
    if flavor is None:
        return []
    return [flavor.path, str(flavor.options.get("quantized") or "")]


# -- parity rows ------------------------------------------------------------------------------


def _parity_rows(
    model: Model,
    data: str | None,
    target: str | None,
    max_rows: int,
    data_service: Any,
    tracking: Any,
) -> list[tuple[str, Columns, np.ndarray | None]]:
    signature = model.spec.signature
    assert signature is not None
    out: list[tuple[str, Columns, np.ndarray | None]] = []
    example = model.input_example()
    if example is not None:
        out.append(("input_example", enforce(signature, example), None))
    if data is not None:
        service = data_service
        if service is None:
            from strata.tracking.fluent_services import data_beside, default_client

            service = (data_beside(tracking) if tracking is not None else None) or (
                default_client().data
            )
        names = signature.input_names()
        columns = [*names, target] if target is not None and target not in names else names
        table = service.read_arrow(data, columns=columns).slice(0, max_rows)
        if table.num_rows == 0:
            raise InvalidInput(
                f"Dataset version {data!r} has no rows to check ONNX parity on",
                details={"field": "data"},
            )
        truth = None if target is None else table.column(target).to_numpy(zero_copy_only=False)
        inputs = table.select(names)
        out.append((data, enforce(signature, inputs), truth))
    if not out:
        raise InvalidInput(
            "ONNX parity needs rows: the model has no input example; pass data= a dataset "
            "version reference (CLI: --data NAME@VERSION)",
            details={"field": "data"},
        )
    return out


# -- conversion -------------------------------------------------------------------------------


def _convert(
    flavor: str, predictor: Predictor, signature: Signature, root: Path, spec: ModelSpec
) -> _Graph:
    if flavor == "python_function":
        raise InvalidInput(
            "A python_function model is Python code (its predict can do anything), which no "
            "converter can turn into an ONNX graph. Export the model it wraps instead: save "
            "that estimator or module with its own flavor and export_onnx it",
            details={"flavor": flavor},
        )
    try:
        if flavor == "sentence_transformers":
            from strata.models import onnx_text

            proto, options = onnx_text.export(
                predictor, signature, root, spec.flavors[flavor].path, OPSET
            )
            return _Graph(proto, options)
        if flavor == "lightgbm":
            return _lightgbm(predictor, signature)
        if flavor == "xgboost":
            return _xgboost(predictor, signature)
        if flavor == "sklearn":
            return _sklearn(predictor, signature)
        if flavor == "pytorch":
            return _pytorch(predictor, signature)
    except StrataError:
        raise
    except Exception as exc:  # the converters raise their own classes for what they lack
        raise InvalidInput(
            f"Cannot convert this {flavor} model to ONNX: {type(exc).__name__}: {str(exc)[:500]}",
            details={"flavor": flavor},
        ) from exc
    raise InvalidInput(
        f"ONNX export covers {_CONVERTERS}; this model's flavor is {flavor!r}",
        details={"flavor": flavor},
    )


def _n_features(signature: Signature) -> int:
    if signature.is_tensor:
        shape = signature.inputs[0].shape or [-1, 1]
        return int(np.prod([d for d in shape[1:]])) if len(shape) > 1 else 1
    return len(signature.inputs)


def _tree_outputs(proto: Any, classifier: bool) -> dict[str, Any]:
    names = [o.name for o in proto.graph.output]
    if classifier:
        return {"outputs": {"label": names[0], "probabilities": names[1]}, "label_index": True}
    if len(names) >= 2:
        # a bare booster with a classification objective: the converter emits label and
        # probabilities, the booster itself predicts the probabilities (binary: of class 1)
        return {"outputs": {"value": names[1]}, "positive_column": True}
    return {"outputs": {"value": names[0]}}


def _lightgbm(predictor: Any, signature: Signature) -> _Graph:
    onnxmltools = require("onnxmltools")
    from onnxmltools.convert.common.data_types import FloatTensorType

    proto = onnxmltools.convert_lightgbm(
        predictor.booster,
        initial_types=[("input", FloatTensorType([None, _n_features(signature)]))],
        target_opset=TREE_OPSET,
        zipmap=False,
    )
    classifier = predictor.classes is not None
    return _Graph(proto, {"feed": "matrix", **_tree_outputs(proto, classifier)})


def _xgboost(predictor: Any, signature: Signature) -> _Graph:
    onnxmltools = require("onnxmltools")
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = predictor.booster.copy()
    booster.feature_names = None  # the converter reads features as f0, f1, ...
    booster.feature_types = None
    proto = onnxmltools.convert_xgboost(
        booster,
        initial_types=[("input", FloatTensorType([None, _n_features(signature)]))],
        target_opset=TREE_OPSET,
    )
    classifier = predictor.classes is not None
    return _Graph(proto, {"feed": "matrix", **_tree_outputs(proto, classifier)})


def _sklearn_type(dtype: str) -> tuple[Any, str]:
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    if dtype == "str":
        return StringTensorType([None, 1]), "str"
    if dtype.startswith(("int", "uint")) or dtype == "bool":
        return Int64TensorType([None, 1]), "int64"
    return FloatTensorType([None, 1]), "float32"


def _sklearn(predictor: Any, signature: Signature) -> _Graph:
    require("skl2onnx")
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    estimator = predictor.estimator
    classifier = predictor.classes is not None
    options = {"zipmap": False} if classifier else None
    numeric = all(s.dtype != "str" for s in signature.inputs)
    proto = None
    feed: dict[str, Any] = {"feed": "matrix"}
    if numeric or predictor.input_kind != "frame":
        # one float matrix: what a bare estimator takes; a pipeline selecting columns by
        # name fails here and gets one input per column below
        initial = [("input", FloatTensorType([None, _n_features(signature)]))]
        try:
            proto = to_onnx(estimator, initial_types=initial, target_opset=OPSET, options=options)
        except Exception:
            if predictor.input_kind != "frame":
                raise
    if proto is None:
        initial, inputs = [], []
        for spec in signature.inputs:
            kind, dtype = _sklearn_type(spec.dtype)
            initial.append((spec.name, kind))
            inputs.append({"name": spec.name, "column": spec.name, "dtype": dtype})
        proto = to_onnx(estimator, initial_types=initial, target_opset=OPSET, options=options)
        graph_inputs = [i.name for i in proto.graph.input]
        for entry, name in zip(inputs, graph_inputs, strict=True):
            entry["name"] = name
        feed = {"feed": "columns", "inputs": inputs}
    names = [o.name for o in proto.graph.output]
    outputs = {"label": names[0], "probabilities": names[1]} if classifier else {"value": names[0]}
    return _Graph(proto, {**feed, "outputs": outputs, "label_index": False})


def _pytorch(predictor: Any, signature: Signature) -> _Graph:
    from strata.models.flavors.pytorch import to_onnx as torch_to_onnx

    proto = torch_to_onnx(predictor, signature, OPSET)
    names = [o.name for o in proto.graph.output]
    return _Graph(proto, {"feed": "matrix", "outputs": {"value": names[0]}})


def _save_proto(proto: Any, path: Path) -> None:
    path.write_bytes(proto.SerializeToString())


# -- parity -----------------------------------------------------------------------------------


@dataclass
class _Outputs:
    values: np.ndarray  # probabilities (classifiers) or predictions
    labels: np.ndarray | None


def _outputs(predictor: Predictor, signature: Signature, cols: Columns) -> _Outputs:
    x = to_flavor_input(predictor, signature, cols)
    if signature.labels is not None:
        return _Outputs(predictor.predict_proba(x), np.asarray(predictor.predict(x)))
    return _Outputs(np.asarray(predictor.predict(x), dtype=np.float64), None)


def _compare(a: _Outputs, b: _Outputs) -> tuple[float, float, float | None]:
    """(max abs diff, max scaled diff, label agreement) of ``b`` against ``a``."""
    va = np.asarray(a.values, dtype=np.float64)
    vb = np.asarray(b.values, dtype=np.float64).reshape(va.shape)
    diff = np.abs(vb - va)
    scaled = diff / np.maximum(1.0, np.abs(va))
    agreement = None
    if a.labels is not None and b.labels is not None:
        agreement = float(np.mean(a.labels.astype(str) == b.labels.astype(str)))
    return float(diff.max(initial=0.0)), float(scaled.max(initial=0.0)), agreement


def _parity(
    native: Predictor,
    onnx_rt: Predictor,
    signature: Signature,
    rows: list[tuple[str, Columns, np.ndarray | None]],
    tolerance: float,
    min_agreement: float,
    data: str | None,
) -> OnnxParity:
    n = 0
    worst_abs, worst_scaled, agree_sum, agree_rows = 0.0, 0.0, 0.0, 0
    for source, cols, _truth in rows:
        a = _outputs(native, signature, cols)
        b = _outputs(onnx_rt, signature, cols)
        abs_diff, scaled, agreement = _compare(a, b)
        count = len(a.values)
        n += count
        worst_abs, worst_scaled = max(worst_abs, abs_diff), max(worst_scaled, scaled)
        if agreement is not None:
            agree_sum += agreement * count
            agree_rows += count
        if scaled > tolerance or (agreement is not None and agreement < min_agreement):
            what = "probabilities" if signature.labels is not None else "predictions"
            labels = "" if agreement is None else f", labels agree on {agreement:.4%}"
            raise Conflict(
                f"ONNX export refused: on {source} ({count} rows) the ONNX {what} differ "
                f"from the model's by up to {abs_diff:.3g} (scaled {scaled:.3g}, tolerance "
                f"{tolerance:g}){labels} (minimum {min_agreement:.4%}). The model is "
                f"unchanged; raise the tolerance if the difference is acceptable",
                details={
                    "source": source,
                    "rows": count,
                    "max_abs_diff": abs_diff,
                    "label_agreement": agreement,
                    "tolerance": tolerance,
                },
            )
    return OnnxParity(
        rows=n,
        max_abs_diff=worst_abs,
        max_scaled_diff=worst_scaled,
        label_agreement=None if agree_rows == 0 else agree_sum / agree_rows,
        tolerance=tolerance,
        min_agreement=min_agreement,
        dataset_version=data,
    )


def _quantize(
    work: Path,
    native: Predictor,
    graph: _Graph,
    signature: Signature,
    rows: list[tuple[str, Columns, np.ndarray | None]],
) -> QuantizedParity:
    require("onnxruntime")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weights = [n for n in onnx.load(str(work / FILE)).graph.node if n.op_type in _QUANTIZABLE]
    if not weights:
        raise InvalidInput(
            "Nothing to quantize: dynamic INT8 quantization rewrites MatMul/Gemm weights and "
            "this graph has none (tree ensembles and linear models are kept as ONNX-ML "
            "operators); export without quantize",
            details={"field": "quantize"},
        )
    try:
        quantize_dynamic(str(work / FILE), str(work / QUANTIZED_FILE), weight_type=QuantType.QInt8)
    except (ValueError, RuntimeError) as exc:
        raise InvalidInput(
            f"ONNX Runtime could not quantize this graph: {str(exc)[:300]}",
            details={"field": "quantize"},
        ) from exc
    proto = onnx.load(str(work / QUANTIZED_FILE))
    quantized_nodes = sum(
        1
        for node in proto.graph.node
        if "Integer" in node.op_type or node.op_type.startswith("DynamicQuantize")
    )
    int8 = OnnxPredictor(work / QUANTIZED_FILE, graph.options, signature.labels)
    n, worst, agree_sum, agree_rows = 0, 0.0, 0.0, 0
    metric_native, metric_int8, truth_rows = 0.0, 0.0, 0
    for _source, cols, truth in rows:
        a = _outputs(native, signature, cols)
        b = _outputs(int8, signature, cols)
        abs_diff, _scaled, agreement = _compare(a, b)
        n += len(a.values)
        worst = max(worst, abs_diff)
        if agreement is not None:
            agree_sum += agreement * len(a.values)
            agree_rows += len(a.values)
        if truth is not None:
            metric_native += _metric(a, truth) * len(truth)
            metric_int8 += _metric(b, truth) * len(truth)
            truth_rows += len(truth)
    metric = None
    delta = None
    if truth_rows:
        metric = "accuracy" if signature.labels is not None else "mean_absolute_error"
        delta = (metric_int8 - metric_native) / truth_rows
    return QuantizedParity(
        path=QUANTIZED_FILE,
        rows=n,
        max_abs_diff=worst,
        label_agreement=None if agree_rows == 0 else agree_sum / agree_rows,
        quantized_nodes=quantized_nodes,
        metric=metric,
        metric_delta=delta,
    )


def _metric(out: _Outputs, truth: np.ndarray) -> float:
    if out.labels is not None:
        return float(np.mean(out.labels.astype(str) == np.asarray(truth).astype(str)))
    values = np.asarray(out.values, dtype=np.float64).reshape(len(truth), -1)[:, 0]
    return float(np.mean(np.abs(values - np.asarray(truth, dtype=np.float64))))
