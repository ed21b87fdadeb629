"""Strata's model format: flavors, signatures, digests (``docs/models.md``).

    import strata.models as sm
    sm.save(pipeline, "model", input_example=X.head())
    sm.export_onnx("model")           # adds an ONNX flavor, proven by a parity check
    model = sm.load("model")          # or "runs:/RUN_ID/model"; every sha256 checked first
    model.predict(df)                 # pandas, Arrow, polars, numpy, dicts, records
    model.predict_arrays({"x": arr})  # the serving path, no pandas

Names load on first use (PEP 562), so ``strata models --help`` does not import numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strata.models.flavors.python_function import PythonModel, PythonModelContext
    from strata.models.mlflow_interop import export_mlflow, import_mlflow
    from strata.models.model import Model
    from strata.models.models import (
        FileDigest,
        FlavorSpec,
        ModelSpec,
        OnnxParity,
        QuantizedParity,
        RunModel,
        Signature,
        TensorSpec,
    )
    from strata.models.onnx_export import export_onnx
    from strata.models.runs import run_models
    from strata.models.signature import infer_signature
    from strata.models.store import clear_cache, save, verify
    from strata.models.tracked import ModelInfo, load, log_model, register_resolver

_HOMES: dict[str, str] = {
    "export_mlflow": "strata.models.mlflow_interop",
    "import_mlflow": "strata.models.mlflow_interop",
    "Model": "strata.models.model",
    "PythonModel": "strata.models.flavors.python_function",
    "PythonModelContext": "strata.models.flavors.python_function",
    **dict.fromkeys(
        (
            "FileDigest",
            "FlavorSpec",
            "ModelSpec",
            "OnnxParity",
            "QuantizedParity",
            "Signature",
            "TensorSpec",
        ),
        "strata.models.models",
    ),
    "export_onnx": "strata.models.onnx_export",
    "run_models": "strata.models.runs",
    "RunModel": "strata.models.models",
    "infer_signature": "strata.models.signature",
    **dict.fromkeys(("clear_cache", "save", "verify"), "strata.models.store"),
    **dict.fromkeys(
        ("ModelInfo", "load", "log_model", "register_resolver"), "strata.models.tracked"
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'strata.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "FileDigest",
    "FlavorSpec",
    "Model",
    "ModelInfo",
    "ModelSpec",
    "OnnxParity",
    "PythonModel",
    "PythonModelContext",
    "QuantizedParity",
    "RunModel",
    "Signature",
    "TensorSpec",
    "clear_cache",
    "export_mlflow",
    "export_onnx",
    "import_mlflow",
    "infer_signature",
    "load",
    "log_model",
    "register_resolver",
    "run_models",
    "save",
    "verify",
]
