"""A loaded model: predictions through its signature, on any of the accepted inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from strata.models.flavors.base import Predictor
from strata.models.models import ModelSpec, Signature
from strata.models.signature import Columns, OnUnknown, enforce


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

    def predict(self, data: Any, *, on_unknown: OnUnknown = "error") -> np.ndarray:
        """One prediction per input row (class labels for a classifier).

        Raises InvalidInput naming the column for a missing column, an unknown one (unless
        ``on_unknown="drop"``) or a dtype that cannot be cast safely.
        """
        return self.predictor.predict(self._feed(data, on_unknown))

    def predict_proba(self, data: Any, *, on_unknown: OnUnknown = "error") -> np.ndarray:
        """Class probabilities, one column per label in ``labels`` order (classifiers)."""
        return self.predictor.predict_proba(self._feed(data, on_unknown))

    def predict_arrays(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Predictions from named 1-D arrays (or the one input tensor by name), checked like
        :meth:`predict`; no pandas unless the flavor itself needs a DataFrame."""
        return self.predictor.predict(self._feed(arrays, "error"))

    def input_example(self) -> Columns | np.ndarray | None:
        """The input example saved with the model, as columns (or the tensor)."""
        if self.spec.input_example is None:
            return None
        return read_example(self.path / self.spec.input_example)

    def _feed(self, data: Any, on_unknown: OnUnknown) -> Any:
        signature = self.spec.signature
        if signature is None:
            return data
        return to_flavor_input(
            self.predictor, signature, enforce(signature, data, on_unknown=on_unknown)
        )


def to_flavor_input(predictor: Predictor, signature: Signature, cols: Columns) -> Any:
    """Checked columns as the flavor wants them: a matrix in signature order, a pandas
    DataFrame, or the tensor."""
    kind = predictor.input_kind
    if kind == "tensor" or signature.is_tensor:
        (tensor,) = cols.values()
        return tensor
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
