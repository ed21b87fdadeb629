"""Strata's model format: flavors, signatures, digests (``docs/models.md``).

import strata.models as sm
sm.save(pipeline, "model", input_example=X.head())
model = sm.load("model")          # every file's sha256 checked first
model.predict(df)                 # pandas, Arrow, polars, numpy, dicts, records
model.predict_arrays({"x": arr})  # the serving path, no pandas
"""

from __future__ import annotations

from strata.models.mlflow_interop import export_mlflow, import_mlflow
from strata.models.model import Model
from strata.models.models import FileDigest, FlavorSpec, ModelSpec, Signature, TensorSpec
from strata.models.signature import infer_signature
from strata.models.store import clear_cache, save, verify
from strata.models.tracked import ModelInfo, load, log_model, register_resolver

__all__ = [
    "FileDigest",
    "FlavorSpec",
    "Model",
    "ModelInfo",
    "ModelSpec",
    "Signature",
    "TensorSpec",
    "clear_cache",
    "export_mlflow",
    "import_mlflow",
    "infer_signature",
    "load",
    "log_model",
    "register_resolver",
    "save",
    "verify",
]
