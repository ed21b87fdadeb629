"""A loaded model: predictions through its signature, on any of the accepted inputs."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from strata.core.errors import InvalidInput
from strata.models.flavors.base import Predictor
from strata.models.models import ModelSpec, Signature
from strata.models.signature import Columns, OnUnknown, enforce

Runtime = Literal["native", "onnx", "onnx-int8"]
RUNTIMES = ("native", "onnx", "onnx-int8")


class Model:
    """A model read from its directory with every digest verified.

    ``predict`` accepts pandas, Arrow, polars, numpy, a dict of arrays and a list of records
    and checks them against the signature (see :mod:`strata.models.signature`);
    ``predict_arrays`` is the serving path: a ``dict[str, np.ndarray]`` straight to the
    flavor, with no pandas for matrix flavors (LightGBM, XGBoost). Instances are shared
    between loads of the same digests (``strata.models.load`` caches them): do not mutate.
    """

    def __init__(self, path: Path, spec: ModelSpec, predictor: Predictor) -> None:
        self.path = path
        self.spec = spec
        self.predictor = predictor
        self._runtimes: dict[str, Predictor] = {"native": predictor}
        self._lock = threading.Lock()

    @property
    def signature(self) -> Signature | None:
        return self.spec.signature

    @property
    def flavor(self) -> str:
        return self.spec.flavor

    @property
    def labels(self) -> list[Any] | None:
        """The classes of a classifier, in the order of ``predict_proba``'s columns."""
        return None if self.spec.signature is None else self.spec.signature.labels

    def __repr__(self) -> str:
        return f"<strata Model {self.flavor} at {self.path}>"

    def runtime(self, name: Runtime = "native") -> Predictor:
        """The predictor of a runtime: ``native`` (the model's own flavor), ``onnx`` (its
        ONNX export on ONNX Runtime) or ``onnx-int8`` (the quantized export). The ONNX
        session is created on first use (its file was verified when the model loaded).
        InvalidInput when the model has no such export."""
        predictor = self._runtimes.get(name)
        if predictor is not None:
            return predictor
        if name not in RUNTIMES:
            raise InvalidInput(
                f"Unknown runtime {name!r}; expected one of: {', '.join(RUNTIMES)}",
                details={"field": "runtime", "received": str(name)},
            )
        spec = self.spec.flavors.get("onnx")
        if spec is None:
            raise InvalidInput(
                f"The model at {self.path} has no ONNX export; run "
                f"strata.models.export_onnx(uri) (CLI: strata models export-onnx URI) first",
                details={"field": "runtime"},
            )
        from strata.models.flavors.onnx import OnnxFlavor

        with self._lock:
            predictor = self._runtimes.get(name)
            if predictor is None:
                flavor = OnnxFlavor()
                predictor = (
                    flavor.load(self.path, spec, trusted=False)
                    if name == "onnx"
                    else flavor.load_quantized(self.path, spec)
                )
                self._runtimes[name] = predictor
        return predictor

    def predict(
        self, data: Any, *, on_unknown: OnUnknown = "error", runtime: Runtime = "native"
    ) -> np.ndarray:
        """One prediction per input row (class labels for a classifier).

        Raises InvalidInput naming the column for a missing column, an unknown one (unless
        ``on_unknown="drop"``) or a dtype that cannot be cast safely. ``runtime="onnx"``
        predicts with the ONNX export (float32: see ``spec.onnx_parity`` for how close).
        """
        predictor = self.runtime(runtime)
        return self._conform(predictor.predict(self._feed(data, on_unknown, predictor)), runtime)

    def predict_proba(
        self, data: Any, *, on_unknown: OnUnknown = "error", runtime: Runtime = "native"
    ) -> np.ndarray:
        """Class probabilities, one column per label in ``labels`` order (classifiers)."""
        predictor = self.runtime(runtime)
        return predictor.predict_proba(self._feed(data, on_unknown, predictor))

    def predict_arrays(
        self, arrays: dict[str, np.ndarray], *, runtime: Runtime = "native"
    ) -> np.ndarray:
        """Predictions from named 1-D arrays (or the one input tensor by name), checked like
        :meth:`predict`; no pandas unless the flavor itself needs a DataFrame."""
        predictor = self.runtime(runtime)
        return self._conform(predictor.predict(self._feed(arrays, "error", predictor)), runtime)

    def _conform(self, out: np.ndarray, runtime: Runtime) -> np.ndarray:
        """An ONNX runtime's predictions in the native flavor's shape and dtype, as the
        signature's ``prediction`` output records them (a PyTorch regressor's ``[-1, 1]``
        float32, say), so switching runtimes changes the values' last digits only."""
        signature = self.spec.signature
        if runtime == "native" or signature is None or signature.labels is not None:
            return out
        if len(signature.outputs) != 1 or signature.outputs[0].name != "prediction":
            return out
        expected = signature.outputs[0]
        if expected.shape is not None and len(expected.shape) > 1:
            out = out.reshape(-1, *expected.shape[1:])
        if expected.dtype in ("float32", "float64") and out.dtype != expected.dtype:
            out = out.astype(expected.dtype)
        return out

    def input_example(self) -> Columns | np.ndarray | None:
        """The input example saved with the model, as columns (or the tensor)."""
        if self.spec.input_example is None:
            return None
        return read_example(self.path / self.spec.input_example)

    def _feed(self, data: Any, on_unknown: OnUnknown, predictor: Predictor) -> Any:
        signature = self.spec.signature
        if signature is None:
            return data
        return to_flavor_input(
            predictor, signature, enforce(signature, data, on_unknown=on_unknown)
        )


def to_flavor_input(predictor: Predictor, signature: Signature, cols: Columns) -> Any:
    """Checked columns as the flavor wants them: a matrix in signature order, a pandas
    DataFrame, the columns themselves, or the tensor."""
    kind = predictor.input_kind
    if kind == "tensor" or signature.is_tensor:
        (tensor,) = cols.values()
        return tensor
    if kind == "columns":
        return cols
    if kind == "frame":
        import pandas as pd

        return pd.DataFrame(cols, copy=False)
    matrix = np.column_stack(list(cols.values()))
    return matrix if matrix.dtype.kind == "f" else matrix.astype(np.float64)


def write_example(path: Path, example: Columns | np.ndarray) -> None:
    """The input example as JSON: columns with their dtypes, or one tensor."""
    if isinstance(example, np.ndarray):
        doc: dict[str, Any] = {
            "type": "tensor",
            "dtype": example.dtype.name if example.dtype.kind not in "OUS" else "str",
            "data": example.tolist(),
        }
    else:
        doc = {
            "type": "columns",
            "dtypes": {
                n: (a.dtype.name if a.dtype.kind not in "OUS" else "object")
                for n, a in example.items()
            },
            "columns": {n: a.tolist() for n, a in example.items()},
        }
    path.write_text(json.dumps(doc, default=str))


def read_example(path: Path) -> Columns | np.ndarray:
    doc = json.loads(path.read_text())
    if doc.get("type") == "tensor":
        dtype = None if doc["dtype"] == "str" else doc["dtype"]
        return np.asarray(doc["data"], dtype=dtype)
    return {
        n: np.asarray(values, dtype=doc["dtypes"].get(n)) for n, values in doc["columns"].items()
    }
