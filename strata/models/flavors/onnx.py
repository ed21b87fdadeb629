"""ONNX graphs run on ONNX Runtime: the flavor ``export_onnx`` adds to a model.

An ``.onnx`` file is data (a protobuf graph of standard operators): ONNX Runtime loads no
code from it, so it needs no ``trusted``. The flavor's options say how the signature's
columns feed the graph and which outputs to read:

- ``feed``: ``matrix`` (one float32 ``[rows, n]`` input, columns in signature order),
  ``columns`` (one ``[rows, 1]`` input per column, named in ``inputs`` with its dtype) or
  ``tensor`` (the signature's one tensor, as float32);
- ``outputs``: the graph's output names for ``label``, ``probabilities`` (classifiers) or
  ``value`` (regressors);
- ``positive_column``: a bare binary booster's value is the probabilities' second column;
- ``label_index``: true when the graph's label output is a class index (LightGBM, XGBoost
  boosters) rather than the class itself (scikit-learn);
- ``quantized``: the file of the dynamically INT8-quantized graph, when one was made.

ONNX computes in float32: :func:`strata.models.export_onnx` records how far that moves the
outputs (``onnx_parity`` in ``strata-model.yaml``) and refuses an export past its tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from strata.core.errors import InvalidInput
from strata.models.flavors.base import Flavor, Predictor, dist_version, require
from strata.models.models import FlavorSpec

FILE = "model.onnx"
QUANTIZED_FILE = "model.int8.onnx"

_NUMPY = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "str": np.object_}


class OnnxPredictor(Predictor):
    """One ONNX Runtime session (single-threaded ops: serving runs one per worker)."""

    def __init__(self, path: Path, options: dict[str, Any], classes: list[Any] | None) -> None:
        ort = require("onnxruntime")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path), sess_options=so, providers=["CPUExecutionProvider"]
        )
        self.feed_kind = str(options.get("feed", "matrix"))
        if self.feed_kind in ("columns", "tensor", "text"):
            self.input_kind = "tensor" if self.feed_kind == "tensor" else "columns"
        self._text = None
        if self.feed_kind == "text":  # a sentence-transformers export: tokenized here
            from strata.models.onnx_text import TextFeed

            self._text = TextFeed(path.parent, options)
        self.inputs: list[dict[str, str]] = list(options.get("inputs", []))
        outputs: dict[str, str | None] = dict(options.get("outputs", {}))
        self._label = outputs.get("label")
        self._proba = outputs.get("probabilities")
        self._value = outputs.get("value")
        self._label_index = bool(options.get("label_index", False))
        self._positive = bool(options.get("positive_column", False))
        self.classes = np.asarray(classes) if classes is not None else None
        self._first_input = self.session.get_inputs()[0].name

    def _feed(self, x: Any) -> dict[str, np.ndarray]:
        if self.feed_kind != "columns":  # one float matrix or tensor
            return {self._first_input: np.asarray(x, dtype=np.float32)}
        feed = {}
        for spec in self.inputs:
            col = np.asarray(x[spec["column"]])
            dtype = _NUMPY[spec["dtype"]]
            if dtype is np.object_:
                col = col.astype(str).astype(object)
            feed[spec["name"]] = col.astype(dtype, copy=False).reshape(-1, 1)
        return feed

    def _run(self, names: list[str], x: Any) -> list[np.ndarray]:
        if self._text is not None:
            parts = [self.session.run(names, feed) for feed in self._text.batches(x)]
            if not parts:
                width = int(self.session.get_outputs()[0].shape[-1])
                return [np.zeros((0, width), dtype=np.float32) for _ in names]
            return [np.concatenate([p[i] for p in parts]) for i in range(len(names))]
        return list(self.session.run(names, self._feed(x)))

    def predict(self, x: Any) -> np.ndarray:
        if self._value is not None:
            (out,) = self._run([self._value], x)
            out = np.asarray(out, dtype=np.float64)
            if self._positive and out.ndim == 2 and out.shape[1] == 2:
                return out[:, 1]  # a binary booster predicts P(class 1) only
            return out.reshape(-1) if out.ndim == 2 and out.shape[1] == 1 else out
        if self._label is None:
            raise InvalidInput("The ONNX flavor names no output to predict from")
        (label,) = self._run([self._label], x)
        label = np.asarray(label).reshape(-1)
        if self._label_index and self.classes is not None:
            return np.asarray(self.classes[label.astype(np.intp)])
        if self.classes is not None and self.classes.dtype.kind in "iub":
            return label.astype(self.classes.dtype)
        return label

    def predict_proba(self, x: Any) -> np.ndarray:
        if self._proba is None or self.classes is None:
            return super().predict_proba(x)
        (proba,) = self._run([self._proba], x)
        proba = np.asarray(proba, dtype=np.float64)
        if proba.ndim == 1 or proba.shape[1] == 1:  # one column: P(positive class)
            proba = proba.reshape(-1)
            return np.column_stack([1.0 - proba, proba])
        return proba


class OnnxFlavor(Flavor):
    """Loads the ONNX files of a model (written by :func:`strata.models.export_onnx`)."""

    name = "onnx"
    packages = ("onnx", "onnxruntime")

    def handles(self, obj: Any) -> bool:
        return False  # ONNX graphs come from export_onnx, not from save()

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        trusted: bool,
        serialization: str | None,
        options: Mapping[str, Any],
    ) -> FlavorSpec:
        raise InvalidInput(
            "ONNX graphs are added to a saved model with strata.models.export_onnx(uri)",
            details={"flavor": "onnx"},
        )

    def load(self, directory: Path, spec: FlavorSpec, *, trusted: bool) -> Predictor:
        return OnnxPredictor(directory / spec.path, spec.options, spec.options.get("classes"))

    def load_quantized(self, directory: Path, spec: FlavorSpec) -> Predictor:
        """The INT8 graph, or InvalidInput when the export made none."""
        file = spec.options.get("quantized")
        if not file:
            raise InvalidInput(
                "This model's ONNX export is not quantized; export it again with "
                "quantize=True (CLI: --quantize) to use runtime='onnx-int8'",
                details={"field": "runtime"},
            )
        return OnnxPredictor(directory / str(file), spec.options, spec.options.get("classes"))


def onnx_version() -> str:
    return dist_version("onnx") or "unknown"
