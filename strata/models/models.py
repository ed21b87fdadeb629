"""The model format's domain objects: what ``strata-model.yaml`` holds (pure pydantic, no I/O).

A saved model is a directory::

    strata-model.yaml      this file: format version, flavors, signature, environment, digests
    input_example.json     the input example (when one was given)
    <flavor files>         e.g. model.skops, model.txt (LightGBM), model.ubj (XGBoost)

``files`` lists the sha256 and size of every file beside the yaml; loading refuses a
directory where one is missing, one is extra or one changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
"""The version of the layout this Strata writes and reads."""

SPEC_FILE = "strata-model.yaml"
EXAMPLE_FILE = "input_example.json"

Label = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileDigest(_Strict):
    """The sha256 (hex) and size (bytes) of one file of the model directory."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class FlavorSpec(_Strict):
    """How to load one flavor: its files (relative paths) and flavor-specific options.

    ``serialization`` names the on-disk format (``skops``, ``pickle``, ``joblib``,
    ``lightgbm-text``, ``xgboost-ubj``); ``pickle`` and ``joblib`` run code when read, so
    loading them needs ``trusted=True``.
    """

    path: str
    serialization: str
    library_version: str
    options: dict[str, Any] = Field(default_factory=dict)


class TensorSpec(_Strict):
    """One input or output: a column (``shape`` None: one value per row) or a tensor
    (``shape`` with ``-1`` for a free dimension, the first one being the rows).

    ``dtype`` is a numpy dtype name (``float64``, ``int64``, ``bool``) or ``str``.
    """

    name: str
    dtype: str
    shape: list[int] | None = None


class Signature(_Strict):
    """The inputs a model takes and the outputs it returns.

    ``inputs`` are columns (every ``shape`` None) or one tensor. For a classifier,
    ``outputs`` holds ``label`` and ``probabilities`` (``[-1, len(labels)]``) and ``labels``
    the classes in the order of the probability columns.
    """

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: list[Label] | None = None

    @property
    def is_tensor(self) -> bool:
        """True when the input is one tensor rather than named columns."""
        return len(self.inputs) == 1 and self.inputs[0].shape is not None

    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]


class QuantizedParity(_Strict):
    """How far the dynamically INT8-quantized ONNX graph moves the model's outputs.

    ``metric_delta`` is quantized minus native ``metric`` (``accuracy`` for a classifier,
    ``mean_absolute_error`` otherwise) on the rows of the dataset version whose target column
    was given; None without one.
    """

    path: str
    rows: int
    max_abs_diff: float
    label_agreement: float | None = None
    quantized_nodes: int
    metric: str | None = None
    metric_delta: float | None = None


class OnnxParity(_Strict):
    """How closely the ONNX export reproduces the original flavor on the same rows.

    Compared are the probabilities of a classifier, the predictions otherwise; a row passes
    when ``|onnx - native| <= tolerance * max(1, |native|)`` (``max_scaled_diff`` is the
    largest left side over that scale). ``rows`` counts the input example and the rows of
    ``dataset_version`` when one was given.
    """

    rows: int
    max_abs_diff: float
    max_scaled_diff: float | None = None
    label_agreement: float | None = None
    tolerance: float
    min_agreement: float | None = None
    dataset_version: str | None = None
    quantized: QuantizedParity | None = None


class ModelSpec(_Strict):
    """The content of ``strata-model.yaml``."""

    format_version: Literal[1] = 1
    created_at: datetime
    flavors: dict[str, FlavorSpec]
    signature: Signature | None = None
    input_example: str | None = None
    python_version: str
    requirements: list[str]
    files: dict[str, FileDigest]
    run_id: str | None = None
    dataset_versions: list[str] = Field(default_factory=list)
    onnx_parity: OnnxParity | None = None

    @property
    def flavor(self) -> str:
        """The flavor predictions use by default: the first one listed."""
        return next(iter(self.flavors))


class RunModel(_Strict):
    """A model logged by a run: where it is and what its ``strata-model.yaml`` says.

    ``spec`` is None and ``error`` says why when the yaml cannot be read (missing, too large,
    not valid); the model is listed all the same, so a broken upload is visible.
    """

    model_id: str
    name: str
    artifact_path: str
    model_uri: str
    status: str
    spec: ModelSpec | None = None
    error: str | None = None
